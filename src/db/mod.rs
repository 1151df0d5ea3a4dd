//! Database access: the connection pool and its connect hook, the management
//! migrations, the built-in PostgreSQL, and diesel's table definitions.

pub mod embedded;
pub mod schema;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use diesel::connection::{Instrumentation, InstrumentationEvent};
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection as _};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

/// The management schema's migrations, embedded at build time.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// The connection pool every request draws from.
pub type Pool = bb8::Pool<AsyncDieselConnectionManager<AsyncPgConnection>>;

/// A connection checked out of [`Pool`].
pub type PooledConn<'a> =
    bb8::PooledConnection<'a, AsyncDieselConnectionManager<AsyncPgConnection>>;

/// Counts of what the pool's connections sent, for tests and benchmarks.
#[derive(Debug, Default)]
pub struct QueryStats {
    statements: AtomicU64,
}

impl QueryStats {
    /// Statements sent so far (queries and batches, `BEGIN`/`COMMIT` included).
    pub fn statements(&self) -> u64 {
        AtomicU64::load(&self.statements, Ordering::Relaxed)
    }
}

struct StatementCounter(Arc<QueryStats>);

impl Instrumentation for StatementCounter {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        if let InstrumentationEvent::StartQuery { .. } = event {
            self.0.statements.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Builds the pool and the counters its connections report to.
/// Connections are opened lazily, through [`connect`].
pub fn build_pool(database_url: &str, max_size: u32) -> (Pool, Arc<QueryStats>) {
    let stats = Arc::new(QueryStats::default());
    let hook_stats = stats.clone();
    let mut config = ManagerConfig::default();
    config.custom_setup =
        Box::new(move |url| Box::pin(connect(url.to_owned(), hook_stats.clone())));
    // Checking for an open transaction is enough: a connection dropped
    // mid-transaction (a cancelled request) is discarded, not reused.
    config.recycling_method = RecyclingMethod::Fast;
    let manager =
        AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(database_url, config);
    let pool = bb8::Pool::builder()
        .max_size(max_size.max(1))
        .min_idle(Some(0))
        .connection_timeout(Duration::from_secs(10))
        .idle_timeout(Some(Duration::from_secs(300)))
        // Each schema a connection touches grows its catalog caches; recycling
        // bounds that memory on databases with thousands of tenants.
        .max_lifetime(Some(Duration::from_secs(600)))
        .build_unchecked(manager);
    (pool, stats)
}

/// The connect hook: every pooled connection is opened here, and nowhere else.
///
/// Nothing tenant-related is set at session level: the tenant's search_path
/// is bound per transaction (see [`crate::tenancy::conn`]), so this stays
/// correct behind PgBouncer in transaction mode.
async fn connect(
    url: String,
    stats: Arc<QueryStats>,
) -> diesel::ConnectionResult<AsyncPgConnection> {
    let mut conn = AsyncPgConnection::establish(&url).await?;
    conn.set_instrumentation(StatementCounter(stats));
    conn.batch_execute("SET application_name = 'strata'")
        .await
        .map_err(|e| diesel::ConnectionError::BadConnection(e.to_string()))?;
    Ok(conn)
}

/// Opens one connection outside the pool, retrying while the server starts up.
pub async fn connect_with_retry(url: &str, wait: Duration) -> anyhow::Result<AsyncPgConnection> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match AsyncPgConnection::establish(url).await {
            Ok(conn) => return Ok(conn),
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::debug!(error = %e, "database not ready yet");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(anyhow::anyhow!("connecting to PostgreSQL: {e}")),
        }
    }
}

/// Applies pending management migrations. Safe to run from several processes
/// at once: they queue on an advisory lock.
pub async fn migrate(url: &str) -> anyhow::Result<Vec<String>> {
    let mut conn = connect_with_retry(url, Duration::from_secs(30)).await?;
    // The ledger (`__diesel_schema_migrations`) lives in the management schema.
    conn.batch_execute(
        "SELECT pg_advisory_lock(7170616); \
         CREATE SCHEMA IF NOT EXISTS management; \
         SET search_path TO management",
    )
    .await
    .context("preparing to migrate")?;
    let wrapper: AsyncConnectionWrapper<AsyncPgConnection> = AsyncConnectionWrapper::from(conn);
    let applied = tokio::task::spawn_blocking(move || {
        let mut wrapper = wrapper;
        let applied = wrapper
            .run_pending_migrations(MIGRATIONS)
            .map(|versions| versions.iter().map(|v| v.to_string()).collect::<Vec<_>>())
            .map_err(|e| anyhow::anyhow!("applying management migrations: {e}"));
        // Closing the connection releases the advisory lock.
        drop(wrapper);
        applied
    })
    .await
    .context("migration task")??;
    Ok(applied)
}

/// The newest management migration built into this binary.
pub fn latest_migration_version() -> anyhow::Result<String> {
    let migrations = diesel::migration::MigrationSource::<diesel::pg::Pg>::migrations(&MIGRATIONS)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    migrations
        .iter()
        .map(|m| m.name().version().to_string())
        .max()
        .context("no management migrations are built in")
}

/// Whether the database is reachable and its management schema is at this
/// binary's newest migration (what `/readyz` reports).
pub async fn is_ready(pool: &Pool, latest: &str) -> bool {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        version: Option<String>,
    }
    let Ok(mut conn) = pool.get().await else {
        return false;
    };
    let row: Result<Row, _> = diesel::sql_query(
        "SELECT max(version)::text AS version FROM management.__diesel_schema_migrations",
    )
    .get_result(&mut *conn)
    .await;
    matches!(row, Ok(Row { version: Some(v) }) if v.as_str() >= latest)
}
