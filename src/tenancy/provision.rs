//! Provisioning: a tenant exists completely or not at all.
//!
//! One transaction records the tenant, creates `tenant_<slug>`, applies the
//! whole template inside it, creates the tenant's database role and adds the
//! owner (with the `owner` role). When the warm pool holds a schema made
//! ahead of time (see [`crate::tenancy::schema_pool`]), the schema and role
//! are that entry's, renamed, instead of made there and then. Two requests for one slug
//! meet on the `tenants_slug_key` unique constraint: the second waits for the
//! first and then gets `CONFLICT`.

use diesel_async::TransactionManager as _;
use diesel_async::{
    AnsiTransactionManager, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection as _,
};
use uuid::Uuid;

use crate::auth;
use crate::db::Pool;
use crate::db::schema::management::tenants as tenants_table;
use crate::domain::{plans, roles, users};
use crate::error::{AppError, AppResult};
use crate::tenancy::TenantSlug;
use crate::tenancy::db_role::{self, DbRole};
use crate::tenancy::schema_pool;
use crate::tenancy::template::{TemplateStep, latest_version};
use crate::tenancy::tenants::{Tenant, status};

/// What `createTenant` is given, as received.
#[derive(Debug, Clone)]
pub struct CreateTenant {
    pub slug: String,
    pub name: String,
    pub plan: String,
    pub owner_email: String,
    pub owner_password: String,
    pub owner_display_name: String,
}

/// A new tenant and its owner.
#[derive(Debug, Clone)]
pub struct Provisioned {
    pub tenant: Tenant,
    pub owner: users::User,
}

/// `createTenant`'s input once checked: only [`check`] makes one.
#[derive(Debug, Clone)]
pub struct Checked {
    slug: TenantSlug,
    name: String,
    plan: String,
    email: String,
    display_name: String,
}

/// Checks the input: slug, name, owner and password rules, and that the
/// plan exists.
pub async fn check(pool: &Pool, input: &CreateTenant) -> AppResult<Checked> {
    let slug =
        TenantSlug::parse(&input.slug).map_err(|e| AppError::bad_input("slug", e.to_string()))?;
    let name = parse_name(&input.name)?;
    let email = users::parse_email(&input.owner_email, "owner.email")?;
    let display_name = users::parse_display_name(&input.owner_display_name, "owner.displayName")?;
    auth::check_new_password(&input.owner_password, "owner.password")?;
    if input.plan.contains('\0') {
        return Err(AppError::bad_input("plan", "no such plan"));
    }
    let mut conn = pool.get().await?;
    if plans::find(&mut conn, &input.plan).await?.is_none() {
        let known: Vec<String> = plans::list(&mut conn)
            .await?
            .into_iter()
            .map(|p| p.code)
            .collect();
        return Err(AppError::bad_input(
            "plan",
            format!("no plan '{}'; plans are: {}", input.plan, known.join(", ")),
        ));
    }
    Ok(Checked {
        slug,
        name,
        plan: input.plan.clone(),
        email,
        display_name,
    })
}

/// Checks the input, then creates the tenant, its schema and its owner in
/// one transaction.
#[tracing::instrument(skip_all, fields(slug = %input.slug))]
pub async fn create_tenant(
    pool: &Pool,
    template: &[TemplateStep],
    input: CreateTenant,
) -> AppResult<Provisioned> {
    let checked = check(pool, &input).await?;
    // Hash before the transaction: it takes tens of milliseconds of CPU.
    let password_hash = auth::hash_password(input.owner_password).await?;
    create_checked(pool, template, checked, &password_hash).await
}

/// The provisioning transaction itself, for checked input and the owner's
/// password already hashed (benchmarks time it apart from the hash).
pub async fn create_checked(
    pool: &Pool,
    template: &[TemplateStep],
    input: Checked,
    password_hash: &str,
) -> AppResult<Provisioned> {
    let mut conn = pool.get().await?;
    AnsiTransactionManager::begin_transaction(&mut *conn).await?;
    let result = provision_in_tx(
        &mut conn,
        template,
        &input.slug,
        &input.name,
        &input.plan,
        users::NewUser {
            id: Uuid::now_v7(),
            email: &input.email,
            display_name: &input.display_name,
            password_hash,
        },
    )
    .await;
    let slug = &input.slug;
    match result {
        Ok(provisioned) => {
            AnsiTransactionManager::commit_transaction(&mut *conn).await?;
            tracing::info!(tenant = %slug, version = provisioned.tenant.template_version, "tenant created");
            Ok(provisioned)
        }
        Err(err) => {
            if let Err(e) = AnsiTransactionManager::rollback_transaction(&mut *conn).await {
                tracing::warn!(error = %e, "rollback after failed provisioning");
            }
            Err(err)
        }
    }
}

async fn provision_in_tx(
    conn: &mut AsyncPgConnection,
    template: &[TemplateStep],
    slug: &TenantSlug,
    name: &str,
    plan: &str,
    owner: users::NewUser<'_>,
) -> AppResult<Provisioned> {
    let tenant = record_tenant(conn, latest_version(template), slug, name, plan).await?;
    schema_and_role(conn, template, slug, &tenant).await?;
    let owner = users::insert(conn, owner).await?;
    let owner_role = roles::find_by_key(conn, roles::builtin::OWNER)
        .await?
        .ok_or_else(|| {
            AppError::internal(anyhow::anyhow!("the tenant template seeds no owner role"))
        })?;
    roles::assign(conn, owner.id, owner_role.id, None, None).await?;
    Ok(Provisioned { tenant, owner })
}

/// Checks a tenant's display name: the rule project names follow, 1 to
/// 200 characters after trimming.
pub(crate) fn parse_name(raw: &str) -> AppResult<String> {
    crate::domain::projects::parse_name(raw)
}

/// Inside a transaction: records the tenant (at the version `steps` ends
/// at, with a fresh role name), creates its schema, binds the search_path
/// to it for the rest of the transaction and applies `steps`. The caller
/// creates the role once every table exists.
pub(crate) async fn create_schema(
    conn: &mut AsyncPgConnection,
    steps: &[TemplateStep],
    slug: &TenantSlug,
    name: &str,
    plan: &str,
) -> AppResult<Tenant> {
    let tenant = record_tenant(conn, latest_version(steps), slug, name, plan).await?;
    let schema = slug.quoted_schema();
    conn.batch_execute(&format!(
        "CREATE SCHEMA {schema}; SET LOCAL search_path TO {schema}"
    ))
    .await?;
    apply_steps(conn, steps, slug).await?;
    Ok(tenant)
}

/// Inside a transaction: records the tenant at `version` with a fresh role
/// name, after checking no schema of its name exists.
async fn record_tenant(
    conn: &mut AsyncPgConnection,
    version: i32,
    slug: &TenantSlug,
    name: &str,
    plan: &str,
) -> AppResult<Tenant> {
    let now = chrono::Utc::now();
    let tenant = Tenant {
        id: Uuid::now_v7(),
        slug: slug.as_str().to_owned(),
        name: name.to_owned(),
        plan_code: plan.to_owned(),
        status: status::ACTIVE.to_owned(),
        schema_name: slug.schema_name(),
        template_version: version,
        created_at: now,
        updated_at: now,
        db_role: Some(DbRole::generate(slug).as_str().to_owned()),
        deleted_at: None,
    };
    // The row first: a concurrent request for the same slug blocks here and
    // then fails on tenants_slug_key, before touching any schema.
    let tenant: Tenant = diesel::insert_into(tenants_table::table)
        .values(&tenant)
        .get_result(conn)
        .await?;
    // A schema without a tenant row (made by hand, or by another tool) is
    // never adopted: the new tenant must start empty.
    let orphan = diesel::sql_query("SELECT 1 FROM pg_namespace WHERE nspname = $1")
        .bind::<diesel::sql_types::Text, _>(slug.schema_name())
        .execute(conn)
        .await?;
    if orphan > 0 {
        return Err(AppError::conflict(
            "slug",
            "a schema for this slug already exists without a tenant",
        ));
    }
    Ok(tenant)
}

/// Inside a transaction: gives the new tenant its schema and role, from
/// the warm pool when it holds one made at `steps`' version (a rename of
/// each), else by running `steps` and creating the role. Leaves the
/// search_path bound to the tenant's schema.
async fn schema_and_role(
    conn: &mut AsyncPgConnection,
    steps: &[TemplateStep],
    slug: &TenantSlug,
    tenant: &Tenant,
) -> AppResult<()> {
    let role = role_of(tenant)?;
    let schema = slug.quoted_schema();
    match schema_pool::claim(conn, latest_version(steps)).await? {
        Some(entry) => {
            conn.batch_execute(&format!(
                "ALTER SCHEMA {} RENAME TO {schema}; ALTER ROLE {} RENAME TO {}; \
                 SET LOCAL search_path TO {schema}",
                entry.quoted_schema()?,
                entry.role()?.quoted(),
                role.quoted()
            ))
            .await?;
        }
        None => {
            conn.batch_execute(&format!(
                "CREATE SCHEMA {schema}; SET LOCAL search_path TO {schema}"
            ))
            .await?;
            apply_steps(conn, steps, slug).await?;
            db_role::create(conn, slug, &role).await?;
        }
    }
    Ok(())
}

/// Runs template steps on the schema the search_path is bound to.
pub(crate) async fn apply_steps(
    conn: &mut AsyncPgConnection,
    steps: &[TemplateStep],
    slug: &impl std::fmt::Display,
) -> AppResult<()> {
    for step in steps {
        conn.batch_execute(step.sql).await.map_err(|e| {
            AppError::internal(anyhow::anyhow!(
                "tenant template step {} ({}) failed for {slug}: {e}",
                step.version,
                step.name
            ))
        })?;
    }
    Ok(())
}

/// The tenant's database role, as recorded.
pub(crate) fn role_of(tenant: &Tenant) -> AppResult<DbRole> {
    tenant
        .db_role
        .as_deref()
        .and_then(DbRole::parse)
        .ok_or_else(|| {
            AppError::internal(anyhow::anyhow!(
                "tenant {} has no valid role name",
                tenant.slug
            ))
        })
}
