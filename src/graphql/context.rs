//! Per-request context: who is asking, and (resolved on first use) for
//! which tenant.

use std::sync::Arc;

use async_graphql::dataloader::DataLoader;
use tokio::sync::OnceCell;
use uuid::Uuid;

use crate::app::App;
use crate::auth::{self, Principal};
use crate::domain::permissions::{self, PermissionSet};
use crate::domain::plans::{self, Plan};
use crate::domain::tasks::Task;
use crate::error::{AppError, AppResult};
use crate::graphql::loaders::{
    PollBatches, PrefetchedUsers, ProjectTaskCountKey, ProjectTasksKey, TenantLoader,
};
use crate::in_scope;
use crate::tenancy::conn::{SharedTx, TenantBinding, TenantWork};
use crate::tenancy::resolver::{self, TenantSources};
use crate::tenancy::template::latest_version;
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
    /// What the credentials may do in that tenant, once checked.
    access: OnceCell<Access>,
    /// Every plan, read at most once per request (a tenants page asks per row).
    plans: OnceCell<Vec<Plan>>,
    /// The transaction a query's tenant reads share; none for a mutation.
    shared: Option<Arc<SharedTx>>,
    /// Whether executing the request's document may merge objects
    /// (`graphql::parsed::merges_objects`): then no task page is written
    /// as JSON in advance.
    pub merges_objects: bool,
}

/// A resolved, active tenant and the request's loaders for it.
pub struct TenantScope {
    /// The tenant's management row.
    pub tenant: Tenant,
    /// Its schema and database role, for tenant-bound transactions.
    pub bind: TenantBinding,
    /// Where the request's work in the tenant runs.
    pub work: TenantWork,
    /// Batches per-row lookups into one query per kind.
    pub loader: DataLoader<TenantLoader>,
    /// Users the loader fetched along with task pages (their assignees).
    pub users: Arc<PrefetchedUsers>,
    /// Projects' task pages, batched per poll rather than by the loader's
    /// timer (a dashboard's main wait otherwise).
    pub task_pages: PollBatches<ProjectTasksKey, Vec<Task>>,
    /// Projects' task counts, likewise.
    pub task_counts: PollBatches<ProjectTaskCountKey, i64>,
}

/// Who is acting on tenant data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// The platform admin.
    Admin,
    /// A user of the tenant.
    User(Uuid),
}

/// What the request's credentials may do in its tenant, checked once per
/// request against the tenant's own tables (so a revoked session or key, a
/// disabled user or an expired role stops working on the next request).
#[derive(Debug, Clone)]
pub struct Access {
    /// Who is acting.
    pub actor: Actor,
    /// What they may do.
    pub permissions: PermissionSet,
    /// The part of `permissions` held without an end date: only this may be
    /// passed on (granted to others, or used over users holding it), so
    /// temporary access cannot be made permanent.
    pub permanent: PermissionSet,
    /// The session of a user's access token.
    pub session: Option<Uuid>,
    /// The API key used, if any.
    pub api_key: Option<Uuid>,
}

impl Access {
    /// The acting user signed in with a session (not an API key, not the
    /// platform admin): for self-service on one's own account.
    pub fn signed_in_user(&self) -> AppResult<Uuid> {
        if self.api_key.is_some() {
            return Err(AppError::Forbidden(
                "an API key cannot do this; sign in as the user".into(),
            ));
        }
        self.user()
    }

    /// The acting user, or `FORBIDDEN` for the platform admin (for
    /// operations that only make sense for a user, like listing one's keys).
    pub fn user(&self) -> AppResult<Uuid> {
        match self.actor {
            Actor::User(id) => Ok(id),
            Actor::Admin => Err(AppError::Forbidden(
                "this operation is for a signed-in user, not the platform admin".into(),
            )),
        }
    }

    /// Who is acting, for the audit trail.
    pub fn who(&self) -> crate::domain::audit::Who {
        use crate::domain::audit::Who;
        match (self.actor, self.api_key) {
            (Actor::Admin, _) => Who {
                kind: "admin",
                user: None,
            },
            (Actor::User(id), Some(_)) => Who {
                kind: "api_key",
                user: Some(id),
            },
            (Actor::User(id), None) => Who {
                kind: "user",
                user: Some(id),
            },
        }
    }

    /// Succeeds when the actor holds every permission `user` holds: nobody
    /// changes, disables or hands roles to someone with more rights than
    /// their own. The platform admin may act on anyone.
    pub async fn require_covers_user(
        &self,
        conn: &mut diesel_async::AsyncPgConnection,
        user: Uuid,
    ) -> AppResult<()> {
        if self.actor == Actor::Admin {
            return Ok(());
        }
        let theirs = permissions::of_user(conn, user).await?;
        if self.permanent.covers(&theirs) {
            Ok(())
        } else {
            Err(AppError::Forbidden(
                "this user has permissions you do not have".into(),
            ))
        }
    }

    /// Succeeds when the actor holds every permission in `wanted` without
    /// an end date (what may be granted to others).
    pub fn require_all(&self, wanted: &PermissionSet) -> AppResult<()> {
        if self.permanent.covers(wanted) {
            Ok(())
        } else {
            Err(AppError::Forbidden(
                "you cannot grant permissions you do not hold (permanently)".into(),
            ))
        }
    }

    /// Succeeds when the actor holds `permission`.
    pub fn require(&self, permission: &str) -> AppResult<()> {
        if self.permissions.has(permission) {
            Ok(())
        } else {
            Err(AppError::Forbidden(format!(
                "this needs the '{permission}' permission"
            )))
        }
    }
}
impl RequestCtx {
    /// Context for one request. `shared` is the transaction its tenant
    /// reads share when the request only reads (a query), else `None`.
    pub fn new(
        app: Arc<App>,
        principal: AppResult<Principal>,
        mut sources: TenantSources,
        shared: Option<Arc<SharedTx>>,
        merges_objects: bool,
    ) -> Self {
        match &principal {
            Ok(Principal::User(claims)) => {
                sources.token = Some((Some(claims.tid), claims.ten.clone()));
            }
            Ok(Principal::ApiKey(key)) => sources.token = Some((None, key.slug.clone())),
            _ => {}
        }
        Self {
            app,
            principal: principal.map_err(|e| e.to_string()),
            sources,
            scope: OnceCell::new(),
            access: OnceCell::new(),
            plans: OnceCell::new(),
            shared,
            merges_objects,
        }
    }

    /// Whether the request only reads (a query): nothing it does changes
    /// what its earlier fields fetched, so they may be reused.
    pub fn reads_only(&self) -> bool {
        self.shared.is_some()
    }

    /// The plan with `code`, from one read of the (seeded, small) plans table per request.
    pub async fn plan(&self, code: &str) -> AppResult<Plan> {
        let all = self
            .plans
            .get_or_try_init(|| async {
                // A query's shared transaction may hold a pooled connection,
                // bound to the tenant's role, which cannot read plans. Taking
                // a second one could wait on a pool that requests like this
                // one hold (a pool of one never serves it), so the shared
                // transaction ends here and its connection goes back first;
                // the query's next read begins another (read committed: no
                // snapshot is lost).
                if let Some(shared) = &self.shared {
                    shared.commit().await;
                }
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
            Ok(Principal::User(_) | Principal::ApiKey(_)) => Err(AppError::Forbidden(
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
                // The rollout rule: this server's code expects the schema of
                // its whole template. A tenant behind it is refused (clearly,
                // and retryably) until migrated; a tenant ahead of it (a newer
                // server migrated it first) is served, because template
                // steps only ever add.
                let latest = latest_version(self.app.template);
                if tenant.template_version < latest {
                    return Err(AppError::TenantMigrationPending(format!(
                        "tenant '{}' is at template version {} and this server needs {latest}; \
                         it is served again once `strata tenants migrate` has run",
                        tenant.slug, tenant.template_version
                    )));
                }
                let bind = TenantBinding::of(&tenant.slug, tenant.db_role.as_deref())?;
                let work =
                    TenantWork::new(self.app.pool.clone(), bind.clone(), self.shared.clone());
                let users = Arc::new(PrefetchedUsers::default());
                // A batch gathers the keys asked until its fetch starts: those
                // of one list's fields are all asked before the request's task
                // yields, so the wait only has to outlast that. Tokio's timer
                // rounds it up to its next millisecond tick; the default 1 ms
                // became 1-2 ms, a millisecond on every request (BENCHMARKS.md,
                // "Parsing, timers, cursors"). The dashboard's own batches,
                // task pages and counts, wait on no timer (`PollBatches`).
                let loader =
                    DataLoader::new(TenantLoader::new(work.clone(), users.clone()), tokio::spawn)
                        .delay(std::time::Duration::from_micros(100));
                Ok(TenantScope {
                    tenant,
                    bind,
                    work,
                    loader,
                    users,
                    task_pages: PollBatches::default(),
                    task_counts: PollBatches::default(),
                })
            })
            .await
    }

    /// The request's tenant and what its credentials may do there: a user
    /// of that tenant (whose token or key is refused for any other tenant)
    /// or the platform admin (every permission).
    pub async fn access(&self) -> AppResult<(&TenantScope, &Access)> {
        let principal = match &self.principal {
            Ok(Principal::Anonymous) => {
                return Err(AppError::Unauthenticated(
                    "sign in first: send 'Authorization: Bearer <token>' from login, or an API key"
                        .into(),
                ));
            }
            Ok(p) => p,
            Err(msg) => return Err(AppError::Unauthenticated(msg.clone())),
        };
        let scope = self.tenant().await?;
        let access = self
            .access
            .get_or_try_init(|| self.check_access(scope, principal))
            .await?;
        Ok((scope, access))
    }

    /// `access`, then `permission`.
    pub async fn require(&self, permission: &str) -> AppResult<(&TenantScope, &Access)> {
        let (scope, access) = self.access().await?;
        access.require(permission)?;
        Ok((scope, access))
    }

    async fn check_access(&self, scope: &TenantScope, principal: &Principal) -> AppResult<Access> {
        let pool = &self.app.pool;
        match principal {
            Principal::Admin => Ok(Access {
                actor: Actor::Admin,
                permissions: PermissionSet::all(),
                permanent: PermissionSet::all(),
                session: None,
                api_key: None,
            }),
            Principal::User(claims) => {
                let (user, sid) = (claims.sub, claims.sid);
                let slug = &scope.bind.slug;
                let found = if self.shared.is_some() {
                    // A query: the check opens the request's transaction,
                    // which its reads then use. Its first statement goes
                    // with the binding; a second follows when the user's
                    // roles must be walked again.
                    let (mut step, state) = scope
                        .work
                        .begin_with(async |conn| {
                            permissions::session_state_bound(conn, user, sid).await
                        })
                        .await?;
                    let found = async {
                        let grants = &self.app.grants;
                        Ok(permissions::for_session_bound(
                            step.conn(),
                            grants,
                            scope.tenant.id,
                            user,
                            state?,
                        )
                        .await?)
                    }
                    .await;
                    step.finish(found).await?
                } else {
                    // A mutation: one statement on its own (two when the
                    // roles are walked again), outside any transaction (the
                    // tables named with the tenant's schema), on the tenant's
                    // lane, whose caches know those tables.
                    let mut conn = pool.get_for(slug.as_str()).await?;
                    permissions::for_session(
                        &mut conn,
                        &self.app.grants,
                        (scope.tenant.id, slug),
                        user,
                        sid,
                    )
                    .await?
                };
                if !found.enabled {
                    return Err(AppError::Unauthenticated(
                        "this user is disabled or no longer exists".into(),
                    ));
                }
                if !found.session_live {
                    return Err(AppError::Unauthenticated(
                        "this session has ended; sign in again".into(),
                    ));
                }
                Ok(Access {
                    actor: Actor::User(user),
                    permissions: found.permissions,
                    permanent: found.permanent,
                    session: Some(sid),
                    api_key: None,
                })
            }
            Principal::ApiKey(key) => {
                let found = in_scope!(scope.work, |conn| {
                    let found = permissions::for_api_key(conn, &key.prefix).await?;
                    if let Some(k) = &found
                        && k.live
                        && auth::secret_matches(&key.secret, &k.secret_hash)
                    {
                        crate::domain::api_keys::touch(conn, k.key_id).await?;
                    }
                    Ok(found)
                })?;
                let invalid = || AppError::Unauthenticated("invalid API key".into());
                let found = found.ok_or_else(invalid)?;
                if !auth::secret_matches(&key.secret, &found.secret_hash) {
                    return Err(invalid());
                }
                if !found.live {
                    return Err(AppError::Unauthenticated(
                        "this API key has been revoked or has expired".into(),
                    ));
                }
                if !found.owner_enabled {
                    return Err(AppError::Unauthenticated(
                        "this API key's owner is disabled".into(),
                    ));
                }
                Ok(Access {
                    actor: Actor::User(found.owner),
                    permissions: found.permissions,
                    permanent: found.permanent,
                    session: None,
                    api_key: Some(found.key_id),
                })
            }
            Principal::Anonymous => Err(AppError::Unauthenticated("sign in first".into())),
        }
    }
}

/// Reaching the request context from a resolver.
pub trait ContextExt {
    /// The request context (always present on requests the server builds).
    fn req(&self) -> AppResult<&RequestCtx>;
}

impl<T> ContextExt for async_graphql::ContextBase<'_, T> {
    fn req(&self) -> AppResult<&RequestCtx> {
        self.data::<RequestCtx>()
            .map_err(|_| AppError::internal(anyhow::anyhow!("request context missing")))
    }
}
