//! The state every request shares.

use std::sync::Arc;

use crate::auth::TokenKeys;
use crate::config::{Config, Secrets};
use crate::db::Pool;
use crate::graphql::StrataSchema;
use crate::tenancy::resolver::TenantCache;
use crate::tenancy::template::{TEMPLATE, TemplateStep};

/// Shared server state, behind an `Arc`.
pub struct App {
    /// Pool of connections to the one database holding every schema.
    pub pool: Pool,
    /// Settings the server was started with.
    pub config: Config,
    /// Admin token and token-signing key.
    pub secrets: Secrets,
    /// Signs and checks tenant users' tokens.
    pub keys: TokenKeys,
    /// Short-lived cache of tenant lookups.
    pub tenants: TenantCache,
    /// Migrations every tenant schema gets; tests swap in broken ones.
    pub template: &'static [TemplateStep],
    /// The GraphQL schema (built once).
    pub schema: StrataSchema,
    /// Newest management migration built in, for `/readyz`.
    pub latest_migration: String,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").finish_non_exhaustive()
    }
}

impl App {
    /// Builds the state around a pool, with the built-in tenant template.
    pub fn new(config: Config, secrets: Secrets, pool: Pool) -> anyhow::Result<Arc<Self>> {
        Self::with_template(config, secrets, pool, TEMPLATE)
    }

    /// Like [`App::new`], with another tenant template.
    pub fn with_template(
        config: Config,
        secrets: Secrets,
        pool: Pool,
        template: &'static [TemplateStep],
    ) -> anyhow::Result<Arc<Self>> {
        Ok(Arc::new(Self {
            keys: TokenKeys::new(&secrets.token_secret, config.token_ttl_secs),
            pool,
            config,
            secrets,
            tenants: TenantCache::default(),
            template,
            schema: crate::graphql::schema(),
            latest_migration: crate::db::latest_migration_version()?,
        }))
    }
}
