//! Per-request context: who is asking, and (resolved on first use) for
//! which tenant.

use std::sync::Arc;

use async_graphql::dataloader::DataLoader;
use tokio::sync::OnceCell;
use uuid::Uuid;

use crate::app::App;
use crate::auth::Principal;
use crate::domain::plans::{self, Plan};
use crate::error::{AppError, AppResult};
use crate::graphql::loaders::TenantLoader;
use crate::tenancy::TenantSlug;
use crate::tenancy::resolver::{self, TenantSources};
use crate::tenancy::tenants::Tenant;

/// What one request knows about itself.
pub struct RequestCtx {
    /// Shared server state.
    pub app: Arc<App>,
    /// Who the request is from; an error if it carried a bad token.
    principal: Result<Principal, String>,
    /// What the request says about its tenant.
    sources: TenantSources,
    /// The tenant, once resolved.
    scope: OnceCell<TenantScope>,
    /// Every plan, read at most once per request (a tenants page asks per row).
    plans: OnceCell<Vec<Plan>>,
}

/// A resolved, active tenant and the request's loaders for it.
pub struct TenantScope {
    /// The tenant's management row.
    pub tenant: Tenant,
    /// Its validated slug.
    pub slug: TenantSlug,
    /// Batches per-row lookups into one query per kind.
    pub loader: DataLoader<TenantLoader>,
}

/// Who is acting on tenant data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// The platform admin.
    Admin,
    /// A user of the tenant.
    User(Uuid),
}

impl RequestCtx {
    /// Context for one request.
    pub fn new(app: Arc<App>, principal: AppResult<Principal>, mut sources: TenantSources) -> Self {
        if let Ok(Principal::User(claims)) = &principal {
            sources.token = Some((claims.tid, claims.ten.clone()));
        }
        Self {
            app,
            principal: principal.map_err(|e| e.to_string()),
            sources,
            scope: OnceCell::new(),
            plans: OnceCell::new(),
        }
    }

    /// The plan with `code`, from one read of the (seeded, small) plans table per request.
    pub async fn plan(&self, code: &str) -> AppResult<Plan> {
        let all = self
            .plans
            .get_or_try_init(|| async {
                let mut conn = self.app.pool.get().await?;
                Ok::<_, AppError>(plans::list(&mut conn).await?)
            })
            .await?;
        all.iter()
            .find(|p| p.code == code)
            .cloned()
            .ok_or_else(|| AppError::internal(anyhow::anyhow!("plan {code} missing")))
    }

    /// Succeeds for the platform admin only.
    pub fn require_admin(&self) -> AppResult<()> {
        match &self.principal {
            Ok(Principal::Admin) => Ok(()),
            Ok(Principal::User(_)) => Err(AppError::Forbidden(
                "this operation needs the platform admin token".into(),
            )),
            Ok(Principal::Anonymous) => Err(AppError::Unauthenticated(
                "this operation needs the platform admin token".into(),
            )),
            Err(msg) => Err(AppError::Unauthenticated(msg.clone())),
        }
    }

    /// The request's tenant, whatever the credentials (for `login`). A bad
    /// token is ignored here, so a stale token never blocks signing in.
    pub async fn tenant(&self) -> AppResult<&TenantScope> {
        self.scope
            .get_or_try_init(|| async {
                let tenant =
                    resolver::resolve(&self.app.pool, &self.app.tenants, &self.sources).await?;
                let slug = TenantSlug::parse(&tenant.slug).map_err(|e| {
                    AppError::internal(anyhow::anyhow!(
                        "stored slug {:?} is invalid: {e}",
                        tenant.slug
                    ))
                })?;
                let loader = DataLoader::new(
                    TenantLoader::new(self.app.pool.clone(), slug.clone()),
                    tokio::spawn,
                );
                Ok(TenantScope {
                    tenant,
                    slug,
                    loader,
                })
            })
            .await
    }

    /// The request's tenant and who is acting in it: a user of that tenant
    /// (their token is refused for any other tenant) or the platform admin.
    pub async fn tenant_actor(&self) -> AppResult<(&TenantScope, Actor)> {
        let actor = match &self.principal {
            Ok(Principal::Admin) => Actor::Admin,
            Ok(Principal::User(claims)) => Actor::User(claims.sub),
            Ok(Principal::Anonymous) => {
                return Err(AppError::Unauthenticated(
                    "sign in first: send 'Authorization: Bearer <token>' from login".into(),
                ));
            }
            Err(msg) => return Err(AppError::Unauthenticated(msg.clone())),
        };
        Ok((self.tenant().await?, actor))
    }
}

/// Reaching the request context from a resolver.
pub trait ContextExt {
    /// The request context (always present on requests the server builds).
    fn req(&self) -> AppResult<&RequestCtx>;
}

impl ContextExt for async_graphql::Context<'_> {
    fn req(&self) -> AppResult<&RequestCtx> {
        self.data::<RequestCtx>()
            .map_err(|_| AppError::internal(anyhow::anyhow!("request context missing")))
    }
}
