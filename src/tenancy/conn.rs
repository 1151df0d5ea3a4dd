//! Tenant-bound connections.
//!
//! A connection is bound to one tenant for one transaction only: `BEGIN`,
//! `set_config('search_path', '"tenant_<slug>"', true)` and
//! `set_config('role', '<tenant role>', true)` go out together in one round
//! trip (with the transaction's first statement behind them, where the
//! caller names it: [`TenantWork::begin_with`]), and both settings end with
//! the transaction. Under the tenant's role
//! (see [`crate::tenancy::db_role`]) PostgreSQL refuses any other schema. A pooled connection therefore never
//! carries a tenant's path into another request, and this works behind
//! PgBouncer in transaction mode.
//!
//! If a request is cancelled or panics mid-transaction, the connection goes
//! back to the pool with its transaction still open; the pool sees that and
//! discards the connection instead of reusing it.

use std::sync::Arc;

use async_graphql::futures_util::future::join;
use diesel::QueryResult;
use diesel::connection::TransactionDepthChange;
use diesel_async::{AnsiTransactionManager, AsyncPgConnection};
use diesel_async::{SimpleAsyncConnection as _, TransactionManager as _};

use crate::db::{Pool, PooledConn};
use crate::error::{AppError, AppResult};
use crate::tenancy::TenantSlug;
use crate::tenancy::db_role::DbRole;

/// What a connection is bound to for a tenant: its schema and its role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantBinding {
    /// The tenant's slug (its schema is `tenant_<slug>`).
    pub slug: TenantSlug,
    /// The role its transactions run under.
    pub role: DbRole,
}

impl TenantBinding {
    /// A binding from a tenant's stored slug and role. A tenant without a
    /// valid role is an internal error: its requests must not run unconfined.
    pub fn of(slug: &str, role: Option<&str>) -> AppResult<Self> {
        let slug = TenantSlug::parse(slug).map_err(|e| {
            AppError::internal(anyhow::anyhow!("stored slug {slug:?} is invalid: {e}"))
        })?;
        let role = role.and_then(DbRole::parse).ok_or_else(|| {
            AppError::internal(anyhow::anyhow!(
                "tenant {slug} has no valid database role; run `strata migrate`"
            ))
        })?;
        Ok(Self { slug, role })
    }
}

/// An open transaction whose search_path is one tenant's schema (and only
/// that schema: unqualified names cannot fall through to `public`).
pub struct TenantTx<'p> {
    conn: PooledConn<'p>,
}

impl<'p> TenantTx<'p> {
    /// Checks a connection out of `pool` (the tenant's lane when free) and
    /// binds it to a tenant for one transaction.
    pub async fn begin(pool: &'p Pool, bind: &TenantBinding) -> AppResult<Self> {
        let mut conn = pool.get_for(bind.slug.as_str()).await?;
        begin_bound(&mut conn, bind).await?;
        Ok(Self { conn })
    }
}

impl TenantTx<'static> {
    /// Like [`TenantTx::begin`], for a transaction that outlives the borrow
    /// of the pool (a request's shared transaction).
    pub async fn begin_owned(pool: &Pool, bind: &TenantBinding) -> AppResult<Self> {
        let mut conn = pool.get_owned_for(bind.slug.as_str()).await?;
        begin_bound(&mut conn, bind).await?;
        Ok(Self { conn })
    }
}

impl<'p> TenantTx<'p> {
    /// Binds `conn` to a tenant for one transaction and runs `first` in it,
    /// pipelined behind the binding ([`begin_bound_with`]).
    async fn open_with<T>(
        mut conn: PooledConn<'p>,
        bind: &TenantBinding,
        first: impl AsyncFnOnce(&AsyncPgConnection) -> QueryResult<T>,
    ) -> AppResult<(Self, QueryResult<T>)> {
        let value = begin_bound_with(&mut conn, bind, first).await?;
        Ok((Self { conn }, value))
    }

    /// The bound connection.
    pub fn conn(&mut self) -> &mut AsyncPgConnection {
        &mut self.conn
    }

    /// Commits when `result` is `Ok`, rolls back otherwise, and passes
    /// `result` through (or the commit's own error).
    pub async fn finish<T>(mut self, result: AppResult<T>) -> AppResult<T> {
        match result {
            Ok(value) => {
                AnsiTransactionManager::commit_transaction(&mut *self.conn).await?;
                Ok(value)
            }
            Err(err) => {
                if let Err(rollback) =
                    AnsiTransactionManager::rollback_transaction(&mut *self.conn).await
                {
                    tracing::warn!(error = %rollback, "rollback failed; connection discarded");
                }
                Err(err)
            }
        }
    }
}

/// Opens a transaction on `conn` bound to a tenant's schema and role.
pub async fn begin_bound(conn: &mut AsyncPgConnection, bind: &TenantBinding) -> AppResult<()> {
    mark_open(conn)?;
    conn.batch_execute(&binding_sql(bind)).await?;
    Ok(())
}

/// Counts a transaction open on `conn` before its `BEGIN` is sent. A
/// request stopped half-way, or a binding that fails (PostgreSQL then holds
/// an aborted transaction), so leaves the connection marked in a
/// transaction, and the pool discards it rather than hand it on.
fn mark_open(conn: &mut AsyncPgConnection) -> AppResult<()> {
    let state = AnsiTransactionManager::transaction_manager_status_mut(conn).transaction_state()?;
    if state.transaction_depth().is_some() {
        return Err(diesel::result::Error::AlreadyInTransaction.into());
    }
    state.change_transaction_depth(TransactionDepthChange::IncreaseDepth)?;
    Ok(())
}

/// [`begin_bound`], then `first` in the transaction, whose result comes
/// back as it is. `first`'s statement goes out right behind the `BEGIN` and
/// binding, before their answer (pipelined), so the two cost one round
/// trip. Should the binding fail, PostgreSQL refuses `first` too (the
/// transaction is aborted), and the binding's error is the one returned.
async fn begin_bound_with<T>(
    conn: &mut AsyncPgConnection,
    bind: &TenantBinding,
    first: impl AsyncFnOnce(&AsyncPgConnection) -> QueryResult<T>,
) -> AppResult<QueryResult<T>> {
    mark_open(conn)?;
    let shared: &AsyncPgConnection = conn;
    let mut begin = shared;
    let sql = binding_sql(bind);
    // `join` polls the `BEGIN` first, so it is queued first.
    let (begun, value) = join(begin.batch_execute(&sql), first(shared)).await;
    begun?;
    Ok(value)
}

/// `BEGIN` and the binding, as one simple query. The schema name comes from
/// a validated slug and the role from a validated role name; neither
/// alphabet holds a quote.
fn binding_sql(bind: &TenantBinding) -> String {
    format!(
        "BEGIN; SELECT set_config('search_path', '{}', true), set_config('role', '{}', true)",
        bind.slug.quoted_schema(),
        bind.role.as_str()
    )
}

/// Where one request's work in its tenant runs.
///
/// A mutation's steps each run in their own transaction (each commits, or
/// rolls back, on its own). A query's reads share one transaction for the
/// whole request, begun on first use and committed when the request ends:
/// one `BEGIN` and binding, one `COMMIT` and one pooled connection per
/// request, however many batches its fields need. Statements still see
/// what other transactions committed before each of them (PostgreSQL's
/// default, read committed).
#[derive(Clone)]
pub struct TenantWork {
    pool: Pool,
    bind: TenantBinding,
    shared: Option<Arc<SharedTx>>,
}

impl TenantWork {
    /// Work for `bind`'s tenant; `shared` is the request's transaction when
    /// the request only reads (see [`SharedTx`]).
    pub fn new(pool: Pool, bind: TenantBinding, shared: Option<Arc<SharedTx>>) -> Self {
        Self { pool, bind, shared }
    }

    /// Starts a step: the shared transaction (waiting for any other step of
    /// the request using it), or a transaction of its own.
    pub async fn begin(&self) -> AppResult<Step<'_>> {
        match &self.shared {
            Some(shared) => {
                let mut slot = shared.0.lock().await;
                let tx = match slot.take() {
                    Some(tx) => tx,
                    None => TenantTx::begin_owned(&self.pool, &self.bind).await?,
                };
                Ok(Step::Shared { slot, tx })
            }
            None => Ok(Step::Own(TenantTx::begin(&self.pool, &self.bind).await?)),
        }
    }

    /// [`TenantWork::begin`] with `first` as the step's first statement,
    /// whose result comes back with the step. A transaction begun for the
    /// step sends `first` in the same round trip as its binding. `first`
    /// must only read: were the `BEGIN` never to reach PostgreSQL, it would
    /// run outside any transaction (its result then goes unused).
    pub(crate) async fn begin_with<T>(
        &self,
        first: impl AsyncFnOnce(&AsyncPgConnection) -> QueryResult<T>,
    ) -> AppResult<(Step<'_>, QueryResult<T>)> {
        let slug = self.bind.slug.as_str();
        match &self.shared {
            Some(shared) => {
                let mut slot = shared.0.lock().await;
                let (tx, value) = match slot.take() {
                    Some(mut tx) => {
                        let value = first(tx.conn()).await;
                        (tx, value)
                    }
                    None => {
                        let conn = self.pool.get_owned_for(slug).await?;
                        TenantTx::open_with(conn, &self.bind, first).await?
                    }
                };
                Ok((Step::Shared { slot, tx }, value))
            }
            None => {
                let conn = self.pool.get_for(slug).await?;
                let (tx, value) = TenantTx::open_with(conn, &self.bind, first).await?;
                Ok((Step::Own(tx), value))
            }
        }
    }
}

/// One request's shared read transaction (none until first used).
///
/// Dropped with a transaction still open (a cancelled request), its
/// connection goes back to the pool mid-transaction and is discarded.
#[derive(Default)]
pub struct SharedTx(tokio::sync::Mutex<Option<TenantTx<'static>>>);

impl SharedTx {
    /// Commits the transaction if one was begun: the end of the request.
    pub async fn commit(&self) {
        let open = self.0.lock().await.take();
        if let Some(tx) = open
            && let Err(e) = tx.finish(Ok(())).await
        {
            tracing::warn!(error = ?e, "committing a request's read transaction");
        }
    }
}

/// A step of tenant work in progress (see [`TenantWork::begin`]).
pub enum Step<'a> {
    /// In a transaction of its own.
    Own(TenantTx<'a>),
    /// In the request's shared transaction, held until the step ends.
    Shared {
        slot: tokio::sync::MutexGuard<'a, Option<TenantTx<'static>>>,
        tx: TenantTx<'static>,
    },
}

impl Step<'_> {
    /// The bound connection.
    pub fn conn(&mut self) -> &mut AsyncPgConnection {
        match self {
            Step::Own(tx) => tx.conn(),
            Step::Shared { tx, .. } => tx.conn(),
        }
    }

    /// Ends the step and passes `result` through. Its own transaction
    /// commits on success and rolls back on error; the shared one stays open
    /// for the request's next step on success, and on error (when
    /// PostgreSQL has aborted it) rolls back, the next step beginning anew.
    pub async fn finish<T>(self, result: AppResult<T>) -> AppResult<T> {
        match self {
            Step::Own(tx) => tx.finish(result).await,
            Step::Shared { mut slot, tx } => match result {
                Ok(value) => {
                    *slot = Some(tx);
                    Ok(value)
                }
                Err(err) => tx.finish(Err(err)).await,
            },
        }
    }
}

/// Runs `body` as one step of a request's tenant work ([`TenantWork`]):
/// `in_scope!(work, |conn| { ... })`.
#[macro_export]
macro_rules! in_scope {
    ($work:expr, |$conn:ident| $body:expr) => {{
        let mut step = $crate::tenancy::conn::TenantWork::begin(&$work).await?;
        let result: $crate::error::AppResult<_> = async {
            let $conn = step.conn();
            $body
        }
        .await;
        step.finish(result).await
    }};
}

/// Runs `f` in a transaction bound to a tenant, committing on success.
///
/// `f` gets the connection and returns a boxed future borrowing it.
#[macro_export]
macro_rules! in_tenant {
    ($pool:expr, $bind:expr, |$conn:ident| $body:expr) => {{
        let mut tx = $crate::tenancy::conn::TenantTx::begin($pool, $bind).await?;
        let result: $crate::error::AppResult<_> = async {
            let $conn = tx.conn();
            $body
        }
        .await;
        tx.finish(result).await
    }};
}
