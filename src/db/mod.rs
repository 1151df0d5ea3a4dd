//! Database access: the connection pool and its connect hook, the management
//! migrations, the built-in PostgreSQL, and diesel's table definitions.

pub mod cached;
pub mod embedded;
pub mod schema;

use std::collections::HashSet;
use std::fmt::Write as _;
use std::future::Future;
use std::hash::{Hash as _, Hasher as _};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use async_graphql::futures_util::FutureExt as _;
use async_graphql::futures_util::future::select_ok;
use diesel::connection::{Instrumentation, InstrumentationEvent};
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, PoolError, RecyclingMethod,
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection as _};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

/// The management schema's migrations, embedded at build time.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// The connections every request draws from: a general pool, and lanes
/// that work in a tenant's schema prefers.
///
/// PostgreSQL caches each relation's catalog entries, file handles and
/// plans per connection, and a connection meeting a tenant for the first
/// time pays for opening every relation it reads. Over thousands of tenants
/// a pool handing out any connection almost always hands out one that has
/// never seen the request's tenant. So lanes of one connection each sit
/// beside the general pool; a tenant has two of them (by a hash of its
/// slug), so each lane serves a fixed share of the tenants and stays warm
/// for them. When both of a tenant's lanes are busy, a request queues
/// briefly for the first to come free, then spills to the general pool
/// (see [`Pool::get_for`]).
#[derive(Clone)]
pub struct Pool {
    general: bb8::Pool<Manager>,
    lanes: Arc<[Lane]>,
    lane_wait: Duration,
    stats: Arc<QueryStats>,
}

/// A lane: one connection, whether a request is queued for it, and the
/// tenant it was last handed out for (a hash of the slug).
struct Lane {
    pool: bb8::Pool<Manager>,
    queued: AtomicBool,
    last: AtomicU64,
}

/// A request's place in the queue of one lane, given up when dropped.
struct Queued<'a>(&'a Lane);

impl<'a> Queued<'a> {
    /// The lane's one place in its queue, if no other request holds it.
    fn claim(lane: &'a Lane) -> Option<Self> {
        lane.queued
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
            .then_some(Queued(lane))
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.queued.store(false, Ordering::Release);
    }
}

/// A connection checked out of [`Pool`].
pub type PooledConn<'a> = bb8::PooledConnection<'a, Manager>;

/// Why no connection could be had.
pub type PoolRunError = bb8::RunError<PoolError>;

impl Pool {
    /// Open connections, and how many of those are idle: the general
    /// pool's and every lane's together.
    pub fn connections(&self) -> (u32, u32) {
        let lanes = self.lanes.iter().map(|lane| &lane.pool);
        std::iter::once(&self.general)
            .chain(lanes)
            .map(|pool| pool.state())
            .fold((0, 0), |(open, idle), state| {
                (open + state.connections, idle + state.idle_connections)
            })
    }

    /// A connection from the general pool.
    pub async fn get(&self) -> Result<PooledConn<'_>, PoolRunError> {
        self.general.get().await
    }

    /// [`Pool::get`], not borrowing the pool.
    pub async fn get_owned(&self) -> Result<PooledConn<'static>, PoolRunError> {
        self.general.get_owned().await
    }

    /// A connection for work in `tenant`'s schema: one of its two lanes'
    /// when one is idle or comes free within the lane wait (if no other
    /// request is queued for it), else one from the general pool.
    pub async fn get_for(&self, tenant: &str) -> Result<PooledConn<'_>, PoolRunError> {
        if let Some(conn) = self.lane_conn(tenant, |lane| lane.get()).await {
            return Ok(conn);
        }
        self.spilled();
        self.general.get().await
    }

    /// [`Pool::get_for`], not borrowing the pool.
    pub async fn get_owned_for(&self, tenant: &str) -> Result<PooledConn<'static>, PoolRunError> {
        if let Some(conn) = self.lane_conn(tenant, |lane| lane.get_owned()).await {
            return Ok(conn);
        }
        self.spilled();
        self.general.get_owned().await
    }

    /// A connection of one of `tenant`'s lanes, taken with `get`: an idle
    /// one at once, else the first to come free within the lane wait, if
    /// this request can queue for it.
    ///
    /// A connection from the general pool has most likely served another
    /// tenant last, so PostgreSQL plans each of the request's statements
    /// again under the new search_path: for a dashboard, more than the
    /// wait for a lane's current request to finish. But each lane queues
    /// one request only, and only for a bounded time: a lane may be held
    /// by a request that waits on a lock, and a tenant busier than its
    /// lanes must not queue behind them.
    async fn lane_conn<'a, T, F>(
        &'a self,
        tenant: &str,
        get: impl Fn(&'a bb8::Pool<Manager>) -> F,
    ) -> Option<T>
    where
        F: Future<Output = Result<T, PoolRunError>>,
    {
        let (hash, mut lanes) = self.lanes_of(tenant);
        // The lane that served this tenant last first: PostgreSQL keeps the
        // plans of the last search_path it planned under.
        if let [Some(first), Some(second)] = lanes
            && AtomicU64::load(&second.last, Ordering::Relaxed) == hash
            && AtomicU64::load(&first.last, Ordering::Relaxed) != hash
        {
            lanes = [Some(second), Some(first)];
        }
        let take = |lane: &'a Lane| {
            get(&lane.pool).map(move |conn| {
                if conn.is_ok() {
                    lane.last.store(hash, Ordering::Relaxed);
                }
                conn
            })
        };
        for lane in lanes.into_iter().flatten() {
            // An idle connection is handed out at the first poll (checking
            // it out costs no round trip); a lane with none opens one in
            // the background. A lane freed for a queued request is idle
            // until that request runs, and a newcomer may take it first:
            // leaving it to the queued one measured slower (more spills).
            if let Some(Ok(conn)) = take(lane).now_or_never() {
                return Some(conn);
            }
        }
        if self.lane_wait.is_zero() {
            return None;
        }
        let queued: Vec<Queued<'a>> = lanes
            .into_iter()
            .flatten()
            .filter_map(Queued::claim)
            .collect();
        if queued.is_empty() {
            return None;
        }
        self.stats.lane_waits.fetch_add(1, Ordering::Relaxed);
        let waits = queued.iter().map(|q| Box::pin(take(q.0)));
        match tokio::time::timeout(self.lane_wait, select_ok(waits)).await {
            Ok(Ok((conn, _))) => Some(conn),
            _ => None,
        }
    }

    /// The hash of `tenant`, and the two lanes serving it (none without
    /// lanes; one with one lane). The second means a tenant whose first
    /// lane is busy still often finds a connection that knows it.
    fn lanes_of(&self, tenant: &str) -> (u64, [Option<&Lane>; 2]) {
        let count = self.lanes.len() as u64;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        tenant.hash(&mut hasher);
        let hash = hasher.finish();
        let first = hash.checked_rem(count);
        let second = first
            .map(|f| (f + 1 + (hash / count) % (count - 1).max(1)) % count)
            .filter(|&s| Some(s) != first);
        let lane = |i: Option<u64>| self.lanes.get(usize::try_from(i?).ok()?);
        (hash, [lane(first), lane(second)])
    }

    fn spilled(&self) {
        if !self.lanes.is_empty() {
            self.stats.spills.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Connections in each lane.
const LANE_SIZE: u32 = 1;

/// Counts of what the pool's connections sent, for tests and benchmarks,
/// and the connections due to be recycled.
#[derive(Debug, Default)]
pub struct QueryStats {
    statements: AtomicU64,
    recycled: AtomicU64,
    spills: AtomicU64,
    lane_waits: AtomicU64,
    /// Connections that have been bound to as many tenants as allowed, by
    /// the address of their [`ConnWatch`] (stable for a connection's life).
    retiring: Mutex<HashSet<usize>>,
}

impl QueryStats {
    /// Statements sent so far (queries and batches, `BEGIN`/`COMMIT` included).
    pub fn statements(&self) -> u64 {
        AtomicU64::load(&self.statements, Ordering::Relaxed)
    }

    /// Connections closed so far for having served too many tenants.
    pub fn recycled(&self) -> u64 {
        AtomicU64::load(&self.recycled, Ordering::Relaxed)
    }

    /// Tenant transactions that found their lane busy and took a
    /// connection from the general pool instead.
    pub fn spills(&self) -> u64 {
        AtomicU64::load(&self.spills, Ordering::Relaxed)
    }

    /// Requests for a connection in a tenant's schema that found its lanes
    /// busy (or opening their connection) and queued for one: each then
    /// served by its lane, or spilled when the wait ran out.
    pub fn lane_waits(&self) -> u64 {
        AtomicU64::load(&self.lane_waits, Ordering::Relaxed)
    }

    fn retiring(&self) -> std::sync::MutexGuard<'_, HashSet<usize>> {
        // A panic while holding this lock cannot leave the set inconsistent.
        self.retiring.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Each connection's observer: counts statements, and the distinct tenant
/// schemas the connection has been bound to.
///
/// PostgreSQL keeps catalog caches per connection, and they grow with every
/// schema the connection touches: a pooled connection serving 10,000
/// tenants would end up holding all of their catalog entries. Once a
/// connection has been bound to `limit` distinct tenants, the pool closes
/// it when it comes back, and opens a fresh one on demand.
struct ConnWatch {
    stats: Arc<QueryStats>,
    limit: usize,
    tenants: HashSet<u64>,
    head: String,
}

/// How the statements that put a connection in a tenant's schema start,
/// each followed by the schema's quoted name: a tenant binding (see
/// [`crate::tenancy::conn`]), and provisioning's.
const ENTERING: [&str; 4] = [
    "BEGIN; SELECT set_config('search_path', '\"",
    "CREATE SCHEMA \"",
    "BEGIN; CREATE SCHEMA \"",
    "ALTER SCHEMA \"",
];

impl ConnWatch {
    fn key(&self) -> usize {
        std::ptr::from_ref(self).cast::<u8>() as usize
    }

    fn saw(&mut self, query: &dyn std::fmt::Display) {
        // Only the head of each statement is rendered: enough to tell a
        // binding and its schema, without rendering bind values.
        self.head.clear();
        let _ = write!(Head(&mut self.head), "{query}");
        let Some(rest) = ENTERING.iter().find_map(|p| self.head.strip_prefix(p)) else {
            return;
        };
        let Some(schema) = rest.split('"').next() else {
            return;
        };
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        schema.hash(&mut hasher);
        if self.tenants.insert(hasher.finish()) && self.tenants.len() == self.limit {
            self.stats.retiring().insert(self.key());
        }
    }
}

/// Collects at most 128 bytes, then stops the formatting.
struct Head<'a>(&'a mut String);

impl std::fmt::Write for Head<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let room = 128usize.saturating_sub(self.0.len());
        if s.len() <= room {
            self.0.push_str(s);
            Ok(())
        } else {
            let mut end = room;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            self.0.push_str(&s[..end]);
            Err(std::fmt::Error)
        }
    }
}

impl Instrumentation for ConnWatch {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        if let InstrumentationEvent::StartQuery { query, .. } = event {
            self.stats.statements.fetch_add(1, Ordering::Relaxed);
            if self.limit > 0 {
                self.saw(query);
            }
        }
    }
}

impl Drop for ConnWatch {
    fn drop(&mut self) {
        let key = self.key();
        self.stats.retiring().remove(&key);
    }
}

/// The pool's connection manager: diesel-async's, which also closes
/// connections that have served too many tenants (see [`ConnWatch`]).
pub struct Manager {
    inner: AsyncDieselConnectionManager<AsyncPgConnection>,
    stats: Arc<QueryStats>,
}

impl bb8::ManageConnection for Manager {
    type Connection = AsyncPgConnection;
    type Error = PoolError;

    async fn connect(&self) -> Result<AsyncPgConnection, PoolError> {
        self.inner.connect().await
    }

    async fn is_valid(&self, conn: &mut AsyncPgConnection) -> Result<(), PoolError> {
        self.inner.is_valid(conn).await
    }

    fn has_broken(&self, conn: &mut AsyncPgConnection) -> bool {
        if self.inner.has_broken(conn) {
            return true;
        }
        let key = std::ptr::from_mut(conn.instrumentation()).cast::<u8>() as usize;
        let retire = self.stats.retiring().remove(&key);
        if retire {
            self.stats.recycled.fetch_add(1, Ordering::Relaxed);
        }
        retire
    }
}

/// How the pool is sized and when it recycles connections.
#[derive(Debug, Clone, Copy)]
pub struct PoolOptions {
    /// Most connections held.
    pub max_size: u32,
    /// Distinct tenants a connection may be bound to before it is closed
    /// and replaced (0: no limit).
    pub tenants_per_connection: usize,
    /// Lanes of one connection each, beside the general pool (0: none).
    pub lanes: usize,
    /// How long a request whose lanes are both busy queues for one before
    /// taking a connection from the general pool (zero: it never queues).
    pub lane_wait: Duration,
}

/// The default [`PoolOptions::lane_wait`].
pub const LANE_WAIT: Duration = Duration::from_millis(5);

/// Builds the pool and the counters its connections report to, with no
/// limit on the tenants one connection serves (tools and tests; the server
/// uses [`build_pool_with`]). Connections are opened lazily, through
/// [`connect`].
pub fn build_pool(database_url: &str, max_size: u32) -> (Pool, Arc<QueryStats>) {
    build_pool_with(
        database_url,
        PoolOptions {
            max_size,
            tenants_per_connection: 0,
            lanes: 0,
            lane_wait: LANE_WAIT,
        },
    )
}

/// [`build_pool`] with every option.
pub fn build_pool_with(database_url: &str, options: PoolOptions) -> (Pool, Arc<QueryStats>) {
    let stats = Arc::new(QueryStats::default());
    let general = build_one(
        database_url,
        options,
        options.max_size.max(1),
        MAX_LIFETIME,
        &stats,
    );
    let lanes = (0..options.lanes)
        .map(|lane| {
            let lifetime = lane_lifetime(lane, options.lanes);
            Lane {
                pool: build_one(database_url, options, LANE_SIZE, lifetime, &stats),
                queued: AtomicBool::new(false),
                last: AtomicU64::new(0),
            }
        })
        .collect();
    let pool = Pool {
        general,
        lanes,
        lane_wait: options.lane_wait,
        stats: stats.clone(),
    };
    (pool, stats)
}

/// How long a connection lives, whatever the number of tenants it served.
const MAX_LIFETIME: Duration = Duration::from_secs(600);

/// Lane `lane`'s connection lifetime, of `lanes`: spread evenly over one
/// to two [`MAX_LIFETIME`]s. The lanes open their connections together when
/// load begins; with one lifetime they would all close together, and every
/// tenant would meet a cold connection at once. Spread out, a few lanes go
/// cold at a time.
fn lane_lifetime(lane: usize, lanes: usize) -> Duration {
    let step = MAX_LIFETIME.as_millis() as u64 / lanes.max(1) as u64;
    MAX_LIFETIME + Duration::from_millis(step * lane as u64)
}

fn build_one(
    database_url: &str,
    options: PoolOptions,
    max_size: u32,
    max_lifetime: Duration,
    stats: &Arc<QueryStats>,
) -> bb8::Pool<Manager> {
    let hook_stats = stats.clone();
    let limit = options.tenants_per_connection;
    let mut config = ManagerConfig::default();
    config.custom_setup =
        Box::new(move |url| Box::pin(connect(url.to_owned(), hook_stats.clone(), limit)));
    // Checking for an open transaction is enough: a connection dropped
    // mid-transaction (a cancelled request) is discarded, not reused.
    config.recycling_method = RecyclingMethod::Fast;
    let manager = Manager {
        inner: AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(
            database_url,
            config,
        ),
        stats: stats.clone(),
    };
    bb8::Pool::builder()
        .max_size(max_size)
        .min_idle(Some(0))
        .connection_timeout(Duration::from_secs(10))
        .idle_timeout(Some(Duration::from_secs(300)))
        // Recycled by age too, whatever the number of tenants.
        .max_lifetime(Some(max_lifetime))
        .build_unchecked(manager)
}

/// The connect hook: every pooled connection is opened here, and nowhere else.
///
/// Nothing tenant-related is set at session level: the tenant's search_path
/// is bound per transaction (see [`crate::tenancy::conn`]), so this stays
/// correct behind PgBouncer in transaction mode.
async fn connect(
    url: String,
    stats: Arc<QueryStats>,
    limit: usize,
) -> diesel::ConnectionResult<AsyncPgConnection> {
    let mut conn = AsyncPgConnection::establish(&url).await?;
    conn.set_instrumentation(ConnWatch {
        stats,
        limit,
        tenants: HashSet::new(),
        head: String::with_capacity(128),
    });
    // An application_name given in DATABASE_URL wins (operators tell
    // deployments apart by it); otherwise the connection says it is Strata's.
    if !url.contains("application_name=") {
        conn.batch_execute("SET application_name = 'strata'")
            .await
            .map_err(|e| diesel::ConnectionError::BadConnection(e.to_string()))?;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_age_out_a_few_at_a_time_not_all_together() {
        let lifetimes: Vec<Duration> = (0..64).map(|lane| lane_lifetime(lane, 64)).collect();
        assert_eq!(lifetimes[0], MAX_LIFETIME);
        assert!(lifetimes.windows(2).all(|w| w[1] > w[0]), "{lifetimes:?}");
        assert!(lifetimes[63] < MAX_LIFETIME * 2);
        // bb8 reaps aged connections every 30 s: no more than four lanes
        // fall in one such window.
        let step = lifetimes[1] - lifetimes[0];
        assert!(step * 4 >= Duration::from_secs(30), "{step:?}");
        assert_eq!(lane_lifetime(0, 0), MAX_LIFETIME);
    }

    /// Boxed, as the connection holds it: its address is its key.
    fn watch(limit: usize) -> (Box<ConnWatch>, Arc<QueryStats>) {
        let stats = Arc::new(QueryStats::default());
        let watch = Box::new(ConnWatch {
            stats: stats.clone(),
            limit,
            tenants: HashSet::new(),
            head: String::new(),
        });
        (watch, stats)
    }

    #[test]
    fn counts_distinct_schemas_entered_and_retires_at_the_limit() {
        let (mut w, stats) = watch(3);
        let bind = |s: &str| {
            format!(
                "BEGIN; SELECT set_config('search_path', '\"{s}\"', true), set_config('role', 'r', true)"
            )
        };
        for sql in [
            bind("tenant_a"),
            bind("tenant_a"),
            "SELECT 1 FROM \"tenant_b\".users".to_owned(),
            "CREATE SCHEMA \"tenant_c\"; SET LOCAL search_path TO \"tenant_c\"".to_owned(),
        ] {
            w.saw(&sql);
        }
        assert_eq!(w.tenants.len(), 2, "a, c: a query naming b enters nothing");
        assert!(!stats.retiring().contains(&w.key()));
        w.saw(&"ALTER SCHEMA \"pool_0123456789ab\" RENAME TO \"tenant_d\"");
        assert!(stats.retiring().contains(&w.key()));
        let key = w.key();
        drop(w);
        assert!(!stats.retiring().contains(&key), "forgotten when closed");
    }

    #[test]
    fn only_the_head_of_a_long_statement_is_rendered() {
        let (mut w, _) = watch(10);
        let long = format!("SELECT '{}'", "x".repeat(10_000));
        w.saw(&long);
        assert_eq!(w.head.len(), 128);
    }
}
