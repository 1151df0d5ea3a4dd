//! Fleet migrations: bringing every tenant schema to the latest template.
//!
//! Each tenant migrates in one transaction of its own: the tenant's row is
//! locked, the missing template steps run inside its schema, and the new
//! version is recorded, all committed together. A tenant is therefore fully
//! at its old version or fully at the new one, whatever happens to the run
//! (an error, Ctrl-C, a killed process: PostgreSQL rolls back the open
//! transaction), and running again simply continues with the tenants still
//! behind. A tenant that fails is recorded in
//! `management.tenant_migration_failures` and does not stop the others.
//!
//! "Which tenants are behind" is one indexed query on `management.tenants`
//! (`template_version < latest`), never a scan of the schemas.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::TransactionManager as _;
use diesel_async::{
    AnsiTransactionManager, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection as _,
};
use uuid::Uuid;

use crate::db::Pool;
use crate::db::schema::management::{tenant_migration_failures as failures, tenants};
use crate::error::{AppError, AppResult};
use crate::tenancy::TenantSlug;
use crate::tenancy::template::{TemplateStep, latest_version};

/// A tenant behind the template.
#[derive(Debug, Clone, Queryable)]
pub struct Behind {
    pub id: Uuid,
    pub slug: String,
    pub version: i32,
}

/// Tenants below `latest`, by slug (one query on the indexed version column).
pub async fn behind(conn: &mut AsyncPgConnection, latest: i32) -> QueryResult<Vec<Behind>> {
    tenants::table
        .filter(tenants::template_version.lt(latest))
        .select((tenants::id, tenants::slug, tenants::template_version))
        .order(tenants::slug)
        .load(conn)
        .await
}

/// How many tenants are at each template version, lowest first.
pub async fn versions(conn: &mut AsyncPgConnection) -> QueryResult<Vec<(i32, i64)>> {
    tenants::table
        .group_by(tenants::template_version)
        .select((tenants::template_version, diesel::dsl::count_star()))
        .order(tenants::template_version)
        .load(conn)
        .await
}

/// One recorded failure.
#[derive(Debug, Clone, Queryable)]
pub struct Failure {
    pub slug: String,
    pub from_version: i32,
    pub to_version: i32,
    pub failed_version: i32,
    pub error: String,
    pub failed_at: DateTime<Utc>,
}

/// The latest failure of each tenant that is still behind `latest`, newest first.
pub async fn open_failures(
    conn: &mut AsyncPgConnection,
    latest: i32,
    limit: i64,
) -> QueryResult<Vec<Failure>> {
    failures::table
        .inner_join(tenants::table)
        .filter(tenants::template_version.lt(latest))
        .distinct_on((failures::tenant_id,))
        .select((
            tenants::slug,
            failures::from_version,
            failures::to_version,
            failures::failed_version,
            failures::error,
            failures::failed_at,
        ))
        .order((failures::tenant_id, failures::failed_at.desc()))
        .load::<Failure>(conn)
        .await
        .map(|mut rows| {
            rows.sort_by_key(|f| std::cmp::Reverse(f.failed_at));
            rows.truncate(usize::try_from(limit).unwrap_or(0));
            rows
        })
}

/// What happened to one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Moved from one version to the other.
    Migrated { from: i32, to: i32 },
    /// Nothing to do (another run got there first).
    Current,
    /// Rolled back at `step`; still at `from`.
    Failed { from: i32, step: i32, error: String },
    /// Not started: the run was stopped first.
    Skipped,
}

/// Brings one tenant to the end of `template` in one transaction.
pub async fn migrate_one(pool: &Pool, template: &[TemplateStep], id: Uuid) -> AppResult<Outcome> {
    let latest = latest_version(template);
    let mut conn = pool.get().await?;
    AnsiTransactionManager::begin_transaction(&mut *conn).await?;
    let result = apply(&mut conn, template, id, latest).await;
    match result {
        Ok(Ok(outcome)) => {
            AnsiTransactionManager::commit_transaction(&mut *conn).await?;
            Ok(outcome)
        }
        Ok(Err((from, step, error))) => {
            AnsiTransactionManager::rollback_transaction(&mut *conn).await?;
            diesel::insert_into(failures::table)
                .values((
                    failures::id.eq(Uuid::now_v7()),
                    failures::tenant_id.eq(id),
                    failures::from_version.eq(from),
                    failures::to_version.eq(latest),
                    failures::failed_version.eq(step),
                    failures::error.eq(&error),
                ))
                .execute(&mut *conn)
                .await?;
            Ok(Outcome::Failed { from, step, error })
        }
        Err(err) => {
            let _ = AnsiTransactionManager::rollback_transaction(&mut *conn).await;
            Err(err)
        }
    }
}

/// The transaction's work: `Ok(Err((from, step, message)))` when a template
/// step fails (to be rolled back and recorded).
async fn apply(
    conn: &mut AsyncPgConnection,
    template: &[TemplateStep],
    id: Uuid,
    latest: i32,
) -> AppResult<Result<Outcome, (i32, i32, String)>> {
    // The row lock makes concurrent runs take turns per tenant; the second
    // finds the tenant current.
    let (slug, from): (String, i32) = tenants::table
        .find(id)
        .select((tenants::slug, tenants::template_version))
        .for_update()
        .first(conn)
        .await?;
    if from >= latest {
        return Ok(Ok(Outcome::Current));
    }
    let slug = TenantSlug::parse(&slug)
        .map_err(|e| AppError::internal(anyhow::anyhow!("stored slug {slug:?}: {e}")))?;
    conn.batch_execute(&format!(
        "SET LOCAL search_path TO {}",
        slug.quoted_schema()
    ))
    .await?;
    for step in template.iter().filter(|s| s.version > from) {
        if let Err(e) = conn.batch_execute(step.sql).await {
            return Ok(Err((
                from,
                step.version,
                format!("{} ({}): {e}", step.version, step.name),
            )));
        }
    }
    diesel::update(tenants::table.find(id))
        .set((
            tenants::template_version.eq(latest),
            tenants::updated_at.eq(Utc::now()),
        ))
        .execute(conn)
        .await?;
    Ok(Ok(Outcome::Migrated { from, to: latest }))
}

/// The end of a fleet run.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    /// Tenants moved to the latest version.
    pub migrated: usize,
    /// Tenants another run had already brought up.
    pub current: usize,
    /// Tenants that failed: slug, step, error.
    pub failed: Vec<(String, i32, String)>,
    /// Tenants not started because the run was stopped.
    pub skipped: usize,
}

/// Migrates every tenant behind the template, `jobs` at a time, calling
/// `progress` after each tenant. One tenant's failure does not stop the rest.
/// Once `stop` is set no further tenant starts; those under way finish.
pub async fn migrate_all(
    pool: &Pool,
    template: &'static [TemplateStep],
    jobs: usize,
    stop: Arc<AtomicBool>,
    progress: impl Fn(&Behind, &Outcome) + Send + Sync + 'static,
) -> AppResult<Summary> {
    let latest = latest_version(template);
    let todo = {
        let mut conn = pool.get().await?;
        behind(&mut conn, latest).await?
    };
    let progress = Arc::new(progress);
    let permits = Arc::new(tokio::sync::Semaphore::new(jobs.max(1)));
    let mut set = tokio::task::JoinSet::new();
    for tenant in todo {
        let (pool, permits, progress) = (pool.clone(), permits.clone(), progress.clone());
        let stop = stop.clone();
        set.spawn(async move {
            let _permit = permits.acquire_owned().await;
            if AtomicBool::load(&stop, Ordering::Relaxed) {
                return (tenant, Outcome::Skipped);
            }
            let outcome = match migrate_one(&pool, template, tenant.id).await {
                Ok(outcome) => outcome,
                // Connection trouble and the like: the tenant's transaction
                // did not commit, so it is still at its old version.
                Err(e) => Outcome::Failed {
                    from: tenant.version,
                    step: 0,
                    error: format!("{e:?}"),
                },
            };
            progress(&tenant, &outcome);
            (tenant, outcome)
        });
    }
    let mut summary = Summary::default();
    while let Some(joined) = set.join_next().await {
        let (tenant, outcome) = joined.map_err(AppError::internal)?;
        match outcome {
            Outcome::Migrated { .. } => summary.migrated += 1,
            Outcome::Current => summary.current += 1,
            Outcome::Skipped => summary.skipped += 1,
            Outcome::Failed { step, error, .. } => summary.failed.push((tenant.slug, step, error)),
        }
    }
    summary.failed.sort();
    Ok(summary)
}
