//! The `management.tenants` and `management.tenant_domains` rows.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::db::schema::management::{tenant_domains, tenants};

/// Tenant status values, as stored.
pub mod status {
    /// Serving requests.
    pub const ACTIVE: &str = "active";
    /// Answers `TENANT_SUSPENDED`.
    pub const SUSPENDED: &str = "suspended";
    /// Soft-deleted: answers `TENANT_NOT_FOUND`.
    pub const DELETED: &str = "deleted";
}

/// One tenant, as recorded in the management schema.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = tenants)]
pub struct Tenant {
    pub id: Uuid,
    pub slug: String,
    pub name: String,
    pub plan_code: String,
    pub status: String,
    pub schema_name: String,
    pub template_version: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The PostgreSQL role its transactions run under (see [`crate::tenancy::db_role`]).
    pub db_role: Option<String>,
    /// When it was soft-deleted (it can be restored during the retention period).
    pub deleted_at: Option<DateTime<Utc>>,
}

impl Tenant {
    /// The stored slug, checked again before it names a schema in SQL.
    pub fn parsed_slug(&self) -> crate::error::AppResult<crate::tenancy::TenantSlug> {
        crate::tenancy::TenantSlug::parse(&self.slug).map_err(|e| {
            crate::error::AppError::internal(anyhow::anyhow!(
                "stored slug {:?} is invalid: {e}",
                self.slug
            ))
        })
    }
}

/// Finds a tenant by slug.
pub async fn find_by_slug(conn: &mut AsyncPgConnection, slug: &str) -> QueryResult<Option<Tenant>> {
    tenants::table
        .filter(tenants::slug.eq(slug))
        .select(Tenant::as_select())
        .first(conn)
        .await
        .optional()
}

/// Finds the tenant a custom domain is registered to.
pub async fn find_by_domain(
    conn: &mut AsyncPgConnection,
    domain: &str,
) -> QueryResult<Option<Tenant>> {
    tenant_domains::table
        .inner_join(tenants::table)
        .filter(tenant_domains::domain.eq(domain.to_ascii_lowercase()))
        .select(Tenant::as_select())
        .first(conn)
        .await
        .optional()
}

/// A page of tenants in slug order, after `after` (a slug), plus whether more follow.
pub async fn list(
    conn: &mut AsyncPgConnection,
    first: i64,
    after: Option<&str>,
) -> QueryResult<(Vec<Tenant>, bool)> {
    let mut query = tenants::table
        .select(Tenant::as_select())
        .order(tenants::slug.asc())
        .limit(first + 1)
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(tenants::slug.gt(after.to_owned()));
    }
    let mut rows: Vec<Tenant> = query.load(conn).await?;
    let more = rows.len() as i64 > first;
    rows.truncate(first as usize);
    Ok((rows, more))
}

/// How many tenants there are.
pub async fn count(conn: &mut AsyncPgConnection) -> QueryResult<i64> {
    tenants::table.count().get_result(conn).await
}

/// Registers a custom domain for a tenant.
pub async fn add_domain(
    conn: &mut AsyncPgConnection,
    tenant_id: Uuid,
    domain: &str,
) -> QueryResult<()> {
    diesel::insert_into(tenant_domains::table)
        .values((
            tenant_domains::id.eq(Uuid::now_v7()),
            tenant_domains::tenant_id.eq(tenant_id),
            tenant_domains::domain.eq(domain.to_ascii_lowercase()),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Sets a tenant's status (`active`, `suspended`, `deleted`).
pub async fn set_status(conn: &mut AsyncPgConnection, id: Uuid, new: &str) -> QueryResult<()> {
    diesel::update(tenants::table.find(id))
        .set((
            tenants::status.eq(new),
            tenants::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    Ok(())
}
