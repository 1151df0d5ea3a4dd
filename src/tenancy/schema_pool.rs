//! The warm pool: tenant schemas made ahead of time.
//!
//! Running the tenant template (15 tables, their indexes, the seeded roles)
//! and creating the tenant's database role is most of what `createTenant`
//! costs: tens of milliseconds of catalog writes. The pool does that work in
//! the background, in schemas named `pool_<12 hex digits>` with a role of the
//! same name, each recorded in `management.schema_pool` with the template
//! version it was made at. Provisioning claims one inside its own
//! transaction (`FOR UPDATE SKIP LOCKED`, so concurrent provisioning never
//! waits on another's entry) and renames the schema to `tenant_<slug>` and
//! the role to the tenant's role name; grants and default privileges follow
//! the objects, not their names. With the pool empty, provisioning runs
//! the template itself, as before.
//!
//! Entries made at another template version than the server's are never
//! claimed; [`fill`] drops those of older versions and makes new ones.

use diesel::OptionalExtension as _;
use diesel::sql_types::{BigInt, Integer, Text};
use diesel_async::{
    AnsiTransactionManager, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection as _,
    TransactionManager as _,
};

use crate::db::Pool;
use crate::error::{AppError, AppResult};
use crate::tenancy::db_role::{self, DbRole};
use crate::tenancy::lifecycle;
use crate::tenancy::provision::apply_steps;
use crate::tenancy::template::{TemplateStep, latest_version};

/// A pool entry: its schema and role names (both `pool_<hex>`).
#[derive(Debug, Clone, diesel::QueryableByName)]
pub struct Entry {
    #[diesel(sql_type = Text)]
    pub schema_name: String,
    #[diesel(sql_type = Text)]
    pub db_role: String,
}

impl Entry {
    fn fresh() -> Self {
        let name = format!("pool_{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff);
        Self {
            schema_name: name.clone(),
            db_role: name,
        }
    }

    /// The schema as a quoted identifier. Names are checked on the way in
    /// (by the table's CHECK constraint and [`DbRole::parse`]) and hold only
    /// `[a-z0-9_]`.
    pub fn quoted_schema(&self) -> AppResult<String> {
        let valid = self.schema_name.len() == 17
            && self.schema_name.starts_with("pool_")
            && self.schema_name[5..]
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase());
        if !valid {
            return Err(AppError::internal(anyhow::anyhow!(
                "schema pool entry {:?} has an invalid name",
                self.schema_name
            )));
        }
        Ok(format!("\"{}\"", self.schema_name))
    }

    /// The role, checked.
    pub fn role(&self) -> AppResult<DbRole> {
        DbRole::parse(&self.db_role).ok_or_else(|| {
            AppError::internal(anyhow::anyhow!(
                "schema pool entry has an invalid role {:?}",
                self.db_role
            ))
        })
    }
}

/// Inside the caller's transaction: takes the oldest entry made at
/// `version`, if any, out of the pool. Rolled back with the transaction.
pub(crate) async fn claim(
    conn: &mut AsyncPgConnection,
    version: i32,
) -> diesel::QueryResult<Option<Entry>> {
    diesel::sql_query(
        "DELETE FROM management.schema_pool WHERE schema_name = ( \
           SELECT schema_name FROM management.schema_pool WHERE template_version = $1 \
           ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED) \
         RETURNING schema_name, db_role",
    )
    .bind::<Integer, _>(version)
    .get_result(conn)
    .await
    .map(Some)
    .or_else(|e| match e {
        diesel::result::Error::NotFound => Ok(None),
        e => Err(e),
    })
}

/// How many entries are ready at `version`.
pub async fn ready(pool: &Pool, version: i32) -> AppResult<i64> {
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let mut conn = pool.get().await?;
    let count: Count = diesel::sql_query(
        "SELECT count(*) AS n FROM management.schema_pool WHERE template_version = $1",
    )
    .bind::<Integer, _>(version)
    .get_result(&mut *conn)
    .await?;
    Ok(count.n)
}

/// Tops the pool up to `target` entries at `template`'s version, one
/// transaction per entry, after dropping entries made at older versions.
/// Returns how many it made. Servers filling the same database at once may
/// overshoot the target by a few entries; that costs only disk.
pub async fn fill(pool: &Pool, template: &[TemplateStep], target: usize) -> AppResult<usize> {
    let version = latest_version(template);
    drop_stale(pool, version).await?;
    let have = usize::try_from(ready(pool, version).await?).unwrap_or(0);
    let mut made = 0;
    for _ in have..target {
        make_one(pool, template, version).await?;
        made += 1;
    }
    Ok(made)
}

async fn make_one(pool: &Pool, template: &[TemplateStep], version: i32) -> AppResult<()> {
    let entry = Entry::fresh();
    let mut conn = pool.get().await?;
    let conn = &mut *conn;
    // Through diesel's transaction manager: an error rolls back, and a
    // connection whose rollback fails too is discarded, never reused.
    AnsiTransactionManager::begin_transaction(conn).await?;
    let result = async {
        let (schema, role) = (entry.quoted_schema()?, entry.role()?);
        conn.batch_execute(&format!(
            "CREATE SCHEMA {schema}; SET LOCAL search_path TO {schema}"
        ))
        .await?;
        apply_steps(conn, template, &entry.schema_name).await?;
        db_role::create_for_schema(conn, &schema, &role).await?;
        diesel::sql_query(
            "INSERT INTO management.schema_pool (schema_name, db_role, template_version) \
             VALUES ($1, $2, $3)",
        )
        .bind::<Text, _>(&entry.schema_name)
        .bind::<Text, _>(&entry.db_role)
        .bind::<Integer, _>(version)
        .execute(conn)
        .await?;
        Ok(())
    }
    .await;
    lifecycle::finish(conn, result).await
}

/// Drops entries made at an older template version than `version`.
/// Newer ones stay: during a rolling deploy they belong to the servers
/// already running the newer template, and this server never claims them.
async fn drop_stale(pool: &Pool, version: i32) -> AppResult<()> {
    let mut conn = pool.get().await?;
    let conn = &mut *conn;
    loop {
        AnsiTransactionManager::begin_transaction(conn).await?;
        let result = async {
            let stale: Option<Entry> = diesel::sql_query(
                "DELETE FROM management.schema_pool WHERE schema_name = ( \
                   SELECT schema_name FROM management.schema_pool WHERE template_version < $1 \
                   LIMIT 1 FOR UPDATE SKIP LOCKED) \
                 RETURNING schema_name, db_role",
            )
            .bind::<Integer, _>(version)
            .get_result(conn)
            .await
            .optional()?;
            let Some(entry) = stale else {
                return Ok(false);
            };
            let (schema, role) = (entry.quoted_schema()?, entry.role()?.quoted());
            conn.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                .await?;
            // An operator may have dropped the role already; the entry goes
            // all the same, or it would fail every fill from now on.
            let role_exists = diesel::sql_query("SELECT 1 AS n FROM pg_roles WHERE rolname = $1")
                .bind::<Text, _>(&entry.db_role)
                .execute(conn)
                .await?
                > 0;
            if role_exists {
                conn.batch_execute(&format!("DROP OWNED BY {role}; DROP ROLE {role}"))
                    .await?;
            }
            Ok(true)
        }
        .await;
        if !lifecycle::finish(conn, result).await? {
            return Ok(());
        }
    }
}

/// Keeps the pool at `target` entries for as long as the server runs:
/// fills at start, then again whenever woken (a tenant was provisioned)
/// and at least once a minute. Errors are logged and retried later.
pub async fn keep_filled(
    pool: Pool,
    template: &'static [TemplateStep],
    target: usize,
    wake: std::sync::Arc<tokio::sync::Notify>,
) {
    loop {
        match fill(&pool, template, target).await {
            Ok(0) => {}
            Ok(made) => tracing::debug!(made, "schema pool topped up"),
            Err(e) => tracing::warn!(error = ?e, "topping up the schema pool"),
        }
        let _ = tokio::time::timeout(std::time::Duration::from_secs(60), wake.notified()).await;
    }
}
