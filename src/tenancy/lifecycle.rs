//! A tenant's life: suspend, resume, soft-delete, restore, purge. Every
//! change is recorded in `management.tenant_events` with who, when and why,
//! in the same transaction as the change.
//!
//! | from | action | to |
//! | --- | --- | --- |
//! | active | suspend | suspended (its API answers `TENANT_SUSPENDED`) |
//! | suspended | resume | active |
//! | active, suspended | delete | deleted (answers `TENANT_NOT_FOUND`; data kept) |
//! | deleted, within the retention period | restore | active |
//! | deleted | purge | gone: schema, role and row dropped for good |

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel_async::TransactionManager as _;
use diesel_async::{
    AnsiTransactionManager, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection as _,
};
use uuid::Uuid;

use crate::db::Pool;
use crate::db::schema::management::{tenant_events as events, tenants};
use crate::error::{AppError, AppResult};
use crate::tenancy::db_role::DbRole;
use crate::tenancy::tenants::{Tenant, status};

/// A lifecycle change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Suspend,
    Resume,
    Delete,
    Restore,
}

impl Action {
    /// The event recorded for it.
    fn event(self) -> &'static str {
        match self {
            Self::Suspend => "suspended",
            Self::Resume => "resumed",
            Self::Delete => "deleted",
            Self::Restore => "restored",
        }
    }
}

/// One recorded change.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = events)]
pub struct TenantEvent {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub slug: String,
    pub action: String,
    pub actor: String,
    pub reason: String,
    pub at: DateTime<Utc>,
}

/// Checks a reason: 1 to 1000 characters.
pub fn parse_reason(raw: &str) -> AppResult<String> {
    let reason = raw.trim();
    if reason.is_empty() || reason.chars().count() > 1000 || reason.contains('\0') {
        return Err(AppError::bad_input(
            "reason",
            "give a reason of 1 to 1000 characters",
        ));
    }
    Ok(reason.to_owned())
}

async fn locked(conn: &mut AsyncPgConnection, slug: &str) -> AppResult<Tenant> {
    tenants::table
        .filter(tenants::slug.eq(slug))
        .select(Tenant::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()?
        .ok_or_else(|| AppError::not_found(Some("slug"), format!("no tenant '{slug}'")))
}

/// Records a change to `tenant` in `management.tenant_events`.
pub(crate) async fn record(
    conn: &mut AsyncPgConnection,
    tenant: &Tenant,
    action: &str,
    actor: &str,
    reason: &str,
) -> QueryResult<()> {
    diesel::insert_into(events::table)
        .values((
            events::id.eq(Uuid::now_v7()),
            events::tenant_id.eq(tenant.id),
            events::slug.eq(&tenant.slug),
            events::action.eq(action),
            events::actor.eq(actor),
            events::reason.eq(reason),
        ))
        .execute(conn)
        .await
        .map(drop)
}

/// Applies `action` to the tenant `slug` (row locked, so changes take turns).
pub async fn change(
    pool: &Pool,
    slug: &str,
    action: Action,
    actor: &str,
    reason: &str,
    retention: Duration,
) -> AppResult<Tenant> {
    let reason = parse_reason(reason)?;
    let mut conn = pool.get().await?;
    AnsiTransactionManager::begin_transaction(&mut *conn).await?;
    let result = change_in_tx(&mut conn, slug, action, actor, &reason, retention).await;
    finish(&mut conn, result).await
}

async fn change_in_tx(
    conn: &mut AsyncPgConnection,
    slug: &str,
    action: Action,
    actor: &str,
    reason: &str,
    retention: Duration,
) -> AppResult<Tenant> {
    let tenant = locked(conn, slug).await?;
    let from = tenant.status.as_str();
    let to = match action {
        Action::Suspend => status::SUSPENDED,
        Action::Delete => status::DELETED,
        Action::Resume | Action::Restore => status::ACTIVE,
    };
    let allowed = match action {
        Action::Suspend => from == status::ACTIVE,
        Action::Resume => from == status::SUSPENDED,
        Action::Delete => from != status::DELETED,
        Action::Restore => from == status::DELETED,
    };
    if !allowed {
        return Err(AppError::conflict(
            "slug",
            format!("tenant '{slug}' is {from}: it cannot be {}", action.event()),
        ));
    }
    if action == Action::Restore
        && tenant
            .deleted_at
            .is_some_and(|at| at + retention < Utc::now())
    {
        return Err(AppError::conflict(
            "slug",
            format!("tenant '{slug}' was deleted longer ago than the retention period"),
        ));
    }
    let deleted_at = match action {
        Action::Delete => Some(Utc::now()),
        Action::Restore => None,
        _ => tenant.deleted_at,
    };
    let updated: Tenant = diesel::update(tenants::table.find(tenant.id))
        .set((
            tenants::status.eq(to),
            tenants::deleted_at.eq(deleted_at),
            tenants::updated_at.eq(Utc::now()),
        ))
        .returning(Tenant::as_returning())
        .get_result(conn)
        .await?;
    record(conn, &updated, action.event(), actor, reason).await?;
    Ok(updated)
}

/// Commits on `Ok`, rolls back otherwise.
pub(crate) async fn finish<T>(conn: &mut AsyncPgConnection, result: AppResult<T>) -> AppResult<T> {
    match result {
        Ok(v) => {
            AnsiTransactionManager::commit_transaction(conn).await?;
            Ok(v)
        }
        Err(e) => {
            let _ = AnsiTransactionManager::rollback_transaction(conn).await;
            Err(e)
        }
    }
}

/// Drops a soft-deleted tenant for good: its schema (with all data), its
/// database role and its row. `confirm` must repeat the slug. The event is
/// kept.
pub async fn purge(
    pool: &Pool,
    slug: &str,
    confirm: &str,
    actor: &str,
    reason: &str,
) -> AppResult<()> {
    let reason = parse_reason(reason)?;
    if confirm != slug {
        return Err(AppError::bad_input(
            "confirmSlug",
            "repeat the tenant's slug to confirm that its data is dropped for good",
        ));
    }
    let mut conn = pool.get().await?;
    AnsiTransactionManager::begin_transaction(&mut *conn).await?;
    let result = purge_in_tx(&mut conn, slug, actor, &reason).await;
    finish(&mut conn, result).await
}

async fn purge_in_tx(
    conn: &mut AsyncPgConnection,
    slug: &str,
    actor: &str,
    reason: &str,
) -> AppResult<()> {
    let tenant = locked(conn, slug).await?;
    if tenant.status != status::DELETED {
        return Err(AppError::conflict(
            "slug",
            format!(
                "tenant '{slug}' is {}: delete it before purging",
                tenant.status
            ),
        ));
    }
    let schema = tenant.parsed_slug()?.quoted_schema();
    conn.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .await?;
    if let Some(role) = tenant.db_role.as_deref().and_then(DbRole::parse) {
        let role = role.quoted();
        conn.batch_execute(&format!("DROP OWNED BY {role}; DROP ROLE IF EXISTS {role}"))
            .await?;
    }
    diesel::delete(tenants::table.find(tenant.id))
        .execute(conn)
        .await?;
    record(conn, &tenant, "purged", actor, reason).await?;
    Ok(())
}

/// A tenant's recorded changes, newest first.
pub async fn events_of(
    conn: &mut AsyncPgConnection,
    tenant: Uuid,
) -> QueryResult<Vec<TenantEvent>> {
    events::table
        .filter(events::tenant_id.eq(tenant))
        .select(TenantEvent::as_select())
        .order(events::id.desc())
        .load(conn)
        .await
}
