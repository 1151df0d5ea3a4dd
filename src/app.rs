//! The state every request shares.

use std::sync::Arc;

use crate::auth::TokenKeys;
use crate::config::{Config, Secrets};
use crate::db::{Pool, QueryStats};
use crate::domain::permissions::GrantCache;
use crate::graphql::StrataSchema;
use crate::graphql::parsed::ParsedQueries;
use crate::telemetry::Telemetry;
use crate::tenancy::resolver::TenantCache;
use crate::tenancy::template::{TEMPLATE, TemplateStep};

/// Shared server state, behind an `Arc`.
pub struct App {
    /// Pool of connections to the one database holding every schema.
    pub pool: Pool,
    /// What the pool's connections have sent.
    pub query_stats: Arc<QueryStats>,
    /// Settings the server was started with.
    pub config: Config,
    /// Admin token and token-signing key.
    pub secrets: Secrets,
    /// Signs and checks tenant users' tokens.
    pub keys: TokenKeys,
    /// Cache of tenant lookups, kept current by the change feed
    /// ([`crate::tenancy::changes`]) when one runs.
    pub tenants: Arc<TenantCache>,
    /// Users' effective permissions, reused while their tenant's access
    /// version is unchanged.
    pub grants: Arc<GrantCache>,
    /// Migrations every tenant schema gets; tests swap in broken ones.
    pub template: &'static [TemplateStep],
    /// The GraphQL schema (built once).
    pub schema: StrataSchema,
    /// Newest management migration built in, for `/readyz`.
    pub latest_migration: String,
    /// Wakes the task keeping the warm schema pool filled (a tenant was
    /// just provisioned, likely from the pool).
    pub schema_pool_wake: Arc<tokio::sync::Notify>,
    /// Task pages answered from memory rather than by the GraphQL executor
    /// ([`crate::graphql::task_page`]).
    pub pages_from_memory: std::sync::atomic::AtomicU64,
    /// Query texts already parsed, with their documents.
    pub parsed: ParsedQueries,
    /// What `GET /metrics` shows.
    pub telemetry: Telemetry,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").finish_non_exhaustive()
    }
}

impl App {
    /// Builds the state around a pool (from [`crate::db::build_pool`]), with
    /// the built-in tenant template.
    pub fn new(
        config: Config,
        secrets: Secrets,
        (pool, query_stats): (Pool, Arc<QueryStats>),
    ) -> anyhow::Result<Arc<Self>> {
        Self::with_template(config, secrets, (pool, query_stats), TEMPLATE)
    }

    /// Like [`App::new`], with another tenant template.
    pub fn with_template(
        config: Config,
        secrets: Secrets,
        (pool, query_stats): (Pool, Arc<QueryStats>),
        template: &'static [TemplateStep],
    ) -> anyhow::Result<Arc<Self>> {
        Ok(Arc::new(Self {
            keys: TokenKeys::new(&secrets.token_secret, config.token_ttl_secs),
            pool,
            query_stats,
            config,
            secrets,
            tenants: Arc::default(),
            grants: Arc::default(),
            template,
            schema: crate::graphql::schema(),
            latest_migration: crate::db::latest_migration_version()?,
            schema_pool_wake: Arc::default(),
            pages_from_memory: Default::default(),
            parsed: ParsedQueries::default(),
            telemetry: Telemetry::new(),
        }))
    }
}
