//! Platform operations: plans and tenants. Admin token only.

use async_graphql::connection::Connection;
use async_graphql::{Context, Enum, ID, InputObject, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};

use crate::domain::plans::{self, Plan};
use crate::domain::users::User;
use crate::error::AppError;
use crate::graphql::context::ContextExt as _;
use crate::graphql::pagination::{self, Cursor, connection, page_size};
use crate::tenancy::fleet;
use crate::tenancy::lifecycle::{self, Action};
use crate::tenancy::provision::{self, CreateTenant};
use crate::tenancy::tenants::{self, Tenant};

/// Whether a tenant is serving requests.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum TenantStatus {
    /// Serving requests.
    Active,
    /// Its API answers `TENANT_SUSPENDED`.
    Suspended,
    /// Soft-deleted.
    Deleted,
}

#[Object]
impl Plan {
    /// Stable code: `free`, `professional`, `enterprise`, `research`.
    async fn code(&self) -> &str {
        &self.code
    }
    /// Display name.
    async fn name(&self) -> &str {
        &self.name
    }
    /// Monthly price in US cents.
    async fn price_cents(&self) -> i32 {
        self.price_cents
    }
    /// Most users a tenant may have; null: unlimited.
    async fn max_seats(&self) -> Option<i32> {
        self.max_seats
    }
    /// Most projects a tenant may have; null: unlimited.
    async fn max_projects(&self) -> Option<i32> {
        self.max_projects
    }
    /// API calls included per month.
    async fn api_calls_per_month(&self) -> i64 {
        self.api_calls_per_month
    }
    /// Storage included, in GB.
    async fn storage_gb(&self) -> i32 {
        self.storage_gb
    }
    /// Whether the plan covers HIPAA workloads.
    async fn hipaa(&self) -> bool {
        self.hipaa
    }
}

#[Object]
impl Tenant {
    /// Lifecycle changes, newest first.
    async fn events(&self, ctx: &Context<'_>) -> Result<Vec<TenantEventRecord>> {
        let req = ctx.req()?;
        req.require_admin()?;
        let mut conn = req.app.pool.get().await.map_err(AppError::from)?;
        Ok(lifecycle::events_of(&mut conn, self.id)
            .await
            .map_err(AppError::from)?
            .into_iter()
            .map(|e| TenantEventRecord {
                action: e.action,
                actor: e.actor,
                reason: e.reason,
                at: e.at,
            })
            .collect())
    }
    /// When it was soft-deleted; null unless deleted.
    async fn deleted_at(&self) -> Option<DateTime<Utc>> {
        self.deleted_at
    }
    /// Tenant id.
    async fn id(&self) -> ID {
        ID(self.id.to_string())
    }
    /// Slug: names the tenant in `X-Tenant` and subdomains.
    async fn slug(&self) -> &str {
        &self.slug
    }
    /// Display name.
    async fn name(&self) -> &str {
        &self.name
    }
    /// Whether the tenant is serving requests.
    async fn status(&self) -> TenantStatus {
        match self.status.as_str() {
            tenants::status::ACTIVE => TenantStatus::Active,
            tenants::status::SUSPENDED => TenantStatus::Suspended,
            _ => TenantStatus::Deleted,
        }
    }
    /// The tenant's plan.
    async fn plan(&self, ctx: &Context<'_>) -> Result<Plan> {
        Ok(ctx.req()?.plan(&self.plan_code).await?)
    }
    /// PostgreSQL schema holding the tenant's data.
    async fn schema_name(&self) -> &str {
        &self.schema_name
    }
    /// How many tenant-template migrations the schema has had.
    async fn template_version(&self) -> i32 {
        self.template_version
    }
    /// When the tenant was created.
    async fn created_at(&self) -> DateTime<Utc> {
        self.created_at
    }
}

/// The owner created with a tenant.
#[derive(InputObject, Debug)]
pub struct OwnerInput {
    /// Sign-in email, unique within the tenant.
    pub email: String,
    /// At least 8 characters; stored as an argon2id hash.
    pub password: String,
    /// Name shown in the dashboard.
    pub display_name: String,
}

/// A new tenant.
#[derive(InputObject, Debug)]
pub struct CreateTenantInput {
    /// Lowercase letter first, then lowercase letters, digits or `_`; 2 to 40 characters.
    pub slug: String,
    /// Display name.
    pub name: String,
    /// Plan code (see `plans`).
    pub plan: String,
    /// The tenant's first user, its owner.
    pub owner: OwnerInput,
}

/// The tenant and its owner.
#[derive(SimpleObject)]
pub struct CreateTenantPayload {
    /// The new tenant.
    pub tenant: Tenant,
    /// Its owner.
    pub owner: TenantOwner,
}

/// A new tenant's first user, who holds the `owner` role. (Answered outside
/// the tenant's context; sign in to the tenant to see its `User`.)
pub struct TenantOwner(User);

#[Object]
impl TenantOwner {
    /// User id.
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// Sign-in email.
    async fn email(&self) -> &str {
        &self.0.email
    }
    /// Name shown in the dashboard.
    async fn display_name(&self) -> &str {
        &self.0.display_name
    }
    /// Always `owner`.
    async fn role(&self) -> &'static str {
        crate::domain::roles::builtin::OWNER
    }
}

/// A lifecycle change to a tenant.
#[derive(InputObject)]
pub struct TenantChangeInput {
    /// The tenant.
    pub slug: String,
    /// Why (recorded with who and when).
    pub reason: String,
}

/// Dropping a deleted tenant for good.
#[derive(InputObject)]
pub struct PurgeTenantInput {
    /// The tenant (it must be deleted first).
    pub slug: String,
    /// The slug again, to confirm.
    pub confirm_slug: String,
    /// Why (recorded with who and when).
    pub reason: String,
}

/// The tenant after a lifecycle change.
#[derive(SimpleObject)]
pub struct TenantPayload {
    /// The tenant as it is now.
    pub tenant: Tenant,
}

/// A copy of a tenant, made inside the database.
#[derive(InputObject)]
pub struct CloneTenantInput {
    /// The tenant to copy (not deleted).
    pub from: String,
    /// The new tenant's slug.
    pub to: String,
    /// The new tenant's name; unset: the source's.
    pub name: Option<String>,
}

/// The new tenant and what it got.
#[derive(SimpleObject)]
pub struct CloneTenantPayload {
    /// The new tenant, at the latest template version.
    pub tenant: Tenant,
    /// Rows copied, over all tables.
    pub rows_copied: i64,
}

/// A purged tenant.
#[derive(SimpleObject)]
pub struct PurgeTenantPayload {
    /// Its slug (free to use again).
    pub purged_slug: String,
}

/// One recorded lifecycle change.
#[derive(SimpleObject)]
pub struct TenantEventRecord {
    /// `suspended`, `resumed`, `deleted`, `restored`, `purged`,
    /// `exported` (its data was written to a file or cloned), `imported`
    /// (made from an export file) or `cloned` (made as a copy of a tenant).
    pub action: String,
    /// Who: `admin` (the admin token) or `cli`.
    pub actor: String,
    /// Why.
    pub reason: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// Where the fleet stands against this server's tenant template.
#[derive(SimpleObject)]
pub struct TemplateStatus {
    /// The newest template version built into this server.
    pub latest_version: i32,
    /// How many tenants are at each version, lowest first.
    pub versions: Vec<VersionCount>,
    /// Tenants below `latestVersion` (answered `TENANT_MIGRATION_PENDING`
    /// until `strata tenants migrate` brings them up).
    pub behind: i64,
    /// The last failure of each tenant still behind, newest first.
    pub failures: Vec<MigrationFailure>,
}

/// Tenants at one template version.
#[derive(SimpleObject)]
pub struct VersionCount {
    /// Template version.
    pub version: i32,
    /// Tenants at it.
    pub tenants: i64,
}

/// A tenant whose migration failed and rolled back.
#[derive(SimpleObject)]
pub struct MigrationFailure {
    /// The tenant.
    pub slug: String,
    /// Its version (unchanged by the failed run).
    pub from_version: i32,
    /// Where the run was taking it.
    pub to_version: i32,
    /// The template step that failed.
    pub failed_version: i32,
    /// PostgreSQL's error, for the operator.
    pub error: String,
    /// When.
    pub failed_at: DateTime<Utc>,
}

/// Plans and tenants.
#[derive(Default)]
pub struct TenantsQuery;

#[Object]
impl TenantsQuery {
    /// Every plan, cheapest first. Admin token only.
    async fn plans(&self, ctx: &Context<'_>) -> Result<Vec<Plan>> {
        let req = ctx.req()?;
        req.require_admin()?;
        let mut conn = req.app.pool.get().await.map_err(AppError::from)?;
        Ok(plans::list(&mut conn).await.map_err(AppError::from)?)
    }

    /// Every tenant, in slug order. Admin token only.
    #[graphql(complexity = "first.unwrap_or(20).max(0) as usize * child_complexity")]
    async fn tenants(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Connection<Cursor<String>, Tenant, TenantConnectionFields>> {
        let req = ctx.req()?;
        req.require_admin()?;
        let first = page_size(first)?;
        let after = after
            .as_deref()
            .map(pagination::decode_cursor)
            .transpose()?;
        if after.as_deref().is_some_and(|a| a.contains('\0')) {
            return Err(AppError::bad_input("after", "not a cursor from this API").into());
        }
        let mut conn = req.app.pool.get().await.map_err(AppError::from)?;
        let (rows, more) = tenants::list(&mut conn, first, after.as_deref())
            .await
            .map_err(AppError::from)?;
        Ok(connection(
            rows,
            more,
            after.is_some(),
            |t| t.slug.clone(),
            TenantConnectionFields,
        ))
    }

    /// Tenants per template version and the last migration failures.
    /// Admin token only.
    async fn template_status(&self, ctx: &Context<'_>) -> Result<TemplateStatus> {
        let req = ctx.req()?;
        req.require_admin()?;
        let latest = crate::tenancy::template::latest_version(req.app.template);
        let mut conn = req.app.pool.get().await.map_err(AppError::from)?;
        let counts = fleet::versions(&mut conn).await.map_err(AppError::from)?;
        let failures = fleet::open_failures(&mut conn, latest, 100)
            .await
            .map_err(AppError::from)?;
        Ok(TemplateStatus {
            latest_version: latest,
            behind: counts
                .iter()
                .filter(|(v, _)| *v < latest)
                .map(|(_, n)| n)
                .sum(),
            versions: counts
                .into_iter()
                .map(|(version, tenants)| VersionCount { version, tenants })
                .collect(),
            failures: failures
                .into_iter()
                .map(|f| MigrationFailure {
                    slug: f.slug,
                    from_version: f.from_version,
                    to_version: f.to_version,
                    failed_version: f.failed_version,
                    error: f.error,
                    failed_at: f.failed_at,
                })
                .collect(),
        })
    }

    /// One tenant by slug, whatever its status. Admin token only.
    async fn tenant(&self, ctx: &Context<'_>, slug: String) -> Result<Option<Tenant>> {
        let req = ctx.req()?;
        req.require_admin()?;
        if crate::tenancy::TenantSlug::parse(&slug).is_err() {
            return Ok(None);
        }
        let mut conn = req.app.pool.get().await.map_err(AppError::from)?;
        Ok(tenants::find_by_slug(&mut conn, &slug)
            .await
            .map_err(AppError::from)?)
    }
}

/// Extra fields of `TenantConnection`.
pub struct TenantConnectionFields;

#[Object]
impl TenantConnectionFields {
    /// How many tenants there are in all.
    async fn total_count(&self, ctx: &Context<'_>) -> Result<i64> {
        let mut conn = ctx.req()?.app.pool.get().await.map_err(AppError::from)?;
        Ok(tenants::count(&mut conn).await.map_err(AppError::from)?)
    }
}

/// Creating tenants.
#[derive(Default)]
pub struct TenantsMutation;

#[Object]
impl TenantsMutation {
    /// Suspends a tenant: its API answers `TENANT_SUSPENDED` (within a
    /// second on every server); the admin API still works. Admin token only.
    async fn suspend_tenant(
        &self,
        ctx: &Context<'_>,
        input: TenantChangeInput,
    ) -> Result<TenantPayload> {
        change(ctx, input, Action::Suspend).await
    }

    /// Resumes a suspended tenant. Admin token only.
    async fn resume_tenant(
        &self,
        ctx: &Context<'_>,
        input: TenantChangeInput,
    ) -> Result<TenantPayload> {
        change(ctx, input, Action::Resume).await
    }

    /// Soft-deletes a tenant: its API answers `TENANT_NOT_FOUND`, its data
    /// stays, and it can be restored during the retention period
    /// (`STRATA_TENANT_RETENTION_DAYS`). Admin token only.
    async fn delete_tenant(
        &self,
        ctx: &Context<'_>,
        input: TenantChangeInput,
    ) -> Result<TenantPayload> {
        change(ctx, input, Action::Delete).await
    }

    /// Creates tenant `to` as a copy of tenant `from`: schema, data and
    /// users (who sign in with their passwords), from one consistent
    /// snapshot, in one transaction, with a database role of its own.
    /// Sessions, API keys and open invitations are not carried over: they
    /// are revoked in the copy. Recorded on both tenants. Admin token only.
    async fn clone_tenant(
        &self,
        ctx: &Context<'_>,
        input: CloneTenantInput,
    ) -> Result<CloneTenantPayload> {
        let req = ctx.req()?;
        req.require_admin()?;
        let moved = crate::tenancy::transfer::clone_tenant(
            &req.app.pool,
            req.app.template,
            &input.from,
            &input.to,
            input.name.as_deref(),
            "admin",
        )
        .await?;
        req.app.tenants.clear();
        Ok(CloneTenantPayload {
            rows_copied: moved.rows.iter().map(|(_, n)| *n as i64).sum(),
            tenant: moved.tenant,
        })
    }

    /// Restores a deleted tenant within the retention period. Admin token only.
    async fn restore_tenant(
        &self,
        ctx: &Context<'_>,
        input: TenantChangeInput,
    ) -> Result<TenantPayload> {
        change(ctx, input, Action::Restore).await
    }

    /// Drops a deleted tenant for good: schema, data, database role and row.
    /// `confirmSlug` must repeat the slug. Admin token only.
    async fn purge_tenant(
        &self,
        ctx: &Context<'_>,
        input: PurgeTenantInput,
    ) -> Result<PurgeTenantPayload> {
        let req = ctx.req()?;
        req.require_admin()?;
        lifecycle::purge(
            &req.app.pool,
            &input.slug,
            &input.confirm_slug,
            "admin",
            &input.reason,
        )
        .await?;
        req.app.tenants.clear();
        Ok(PurgeTenantPayload {
            purged_slug: input.slug,
        })
    }

    /// Creates a tenant: its schema, the whole tenant template and its owner,
    /// all or nothing. A taken slug is `CONFLICT`. Admin token only.
    async fn create_tenant(
        &self,
        ctx: &Context<'_>,
        input: CreateTenantInput,
    ) -> Result<CreateTenantPayload> {
        let req = ctx.req()?;
        req.require_admin()?;
        let app = &req.app;
        let made = provision::create_tenant(
            &app.pool,
            app.template,
            CreateTenant {
                slug: input.slug,
                name: input.name,
                plan: input.plan,
                owner_email: input.owner.email,
                owner_password: input.owner.password,
                owner_display_name: input.owner.display_name,
            },
        )
        .await?;
        // A cached "no such tenant" must not outlive the tenant's creation.
        app.tenants.clear();
        app.schema_pool_wake.notify_one();
        Ok(CreateTenantPayload {
            tenant: made.tenant,
            owner: TenantOwner(made.owner),
        })
    }
}

async fn change(
    ctx: &Context<'_>,
    input: TenantChangeInput,
    action: Action,
) -> Result<TenantPayload> {
    let req = ctx.req()?;
    req.require_admin()?;
    let tenant = lifecycle::change(
        &req.app.pool,
        &input.slug,
        action,
        "admin",
        &input.reason,
        req.app.config.tenant_retention(),
    )
    .await?;
    req.app.tenants.clear();
    Ok(TenantPayload { tenant })
}
