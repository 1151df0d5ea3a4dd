//! Tenant-bound connections.
//!
//! A connection is bound to one tenant for one transaction only: `BEGIN` and
//! `set_config('search_path', '"tenant_<slug>"', true)` go out together, and
//! the setting ends with the transaction. A pooled connection therefore never
//! carries a tenant's path into another request, and this works behind
//! PgBouncer in transaction mode.
//!
//! If a request is cancelled or panics mid-transaction, the connection goes
//! back to the pool with its transaction still open; the pool sees that and
//! discards the connection instead of reusing it.

use diesel_async::TransactionManager as _;
use diesel_async::{AnsiTransactionManager, AsyncPgConnection};

use crate::db::{Pool, PooledConn};
use crate::error::{AppError, AppResult};
use crate::tenancy::TenantSlug;

/// An open transaction whose search_path is one tenant's schema (and only
/// that schema: unqualified names cannot fall through to `public`).
pub struct TenantTx<'p> {
    conn: PooledConn<'p>,
}

impl<'p> TenantTx<'p> {
    /// Checks a connection out of `pool` and binds it to `slug` for one transaction.
    pub async fn begin(pool: &'p Pool, slug: &TenantSlug) -> AppResult<Self> {
        let mut conn = pool.get().await?;
        begin_bound(&mut conn, slug).await?;
        Ok(Self { conn })
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

/// Opens a transaction on `conn` with its search_path bound to `slug`'s schema.
pub async fn begin_bound(conn: &mut AsyncPgConnection, slug: &TenantSlug) -> AppResult<()> {
    // One round trip. The schema name comes from a validated slug, whose
    // alphabet holds no quote of either kind, and is quoted as an identifier.
    let sql = format!(
        "BEGIN; SELECT set_config('search_path', '{}', true)",
        slug.quoted_schema()
    );
    AnsiTransactionManager::begin_transaction_sql(conn, &sql)
        .await
        .map_err(AppError::from)
}

/// Runs `f` in a transaction bound to `slug`, committing on success.
///
/// `f` gets the connection and returns a boxed future borrowing it.
#[macro_export]
macro_rules! in_tenant {
    ($pool:expr, $slug:expr, |$conn:ident| $body:expr) => {{
        let mut tx = $crate::tenancy::conn::TenantTx::begin($pool, $slug).await?;
        let result: $crate::error::AppResult<_> = async {
            let $conn = tx.conn();
            $body
        }
        .await;
        tx.finish(result).await
    }};
}
