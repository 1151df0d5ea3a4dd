//! The change feed: keeps the tenant cache ([`TenantCache`]) current.
//!
//! Triggers on `management.tenants` and `management.tenant_domains`
//! announce each committed change on the channel `strata_tenants`. One
//! connection per server, outside the pool, listens: each change evicts the
//! entry it names. Every [`PING_EVERY`] the feed also announces a ping of
//! its own and waits to hear it back; PostgreSQL delivers notifications in
//! commit order, so once the ping is heard, every change committed before
//! it was sent has been heard too, and the cache may serve entries for
//! [`CACHE_TTL`](crate::tenancy::resolver::CACHE_TTL) after the ping was
//! sent. The ping is only sent while all four triggers are enabled (also
//! for replication), so changes made with them off are never vouched for.
//!
//! Nothing here is needed for correctness: when the feed is lost or stalls,
//! its pings stop coming back and the cache falls back to re-reading a
//! tenant after [`CACHE_TTL`](crate::tenancy::resolver::CACHE_TTL), as it
//! would with no feed at all. It must listen on a connection of its own on
//! the server: behind a pooler in transaction mode, its `LISTEN` would sit
//! on a connection other clients' changes never reach (see
//! [`crate::config::Config::change_feed`]).

use std::time::{Duration, Instant};

use async_graphql::futures_util::StreamExt as _;
use diesel_async::{AsyncConnection as _, AsyncPgConnection, SimpleAsyncConnection as _};

use crate::tenancy::resolver::TenantCache;

/// The channel the triggers announce changes on.
pub const CHANNEL: &str = "strata_tenants";

/// How often the feed proves it is still hearing every change.
pub const PING_EVERY: Duration = Duration::from_millis(250);

/// A ping not heard back within this long means the connection is lost.
const PING_LOST_AFTER: Duration = Duration::from_secs(5);

/// How long to wait before listening again after the connection is lost.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Keeps `cache` current from the change feed on `url`, reconnecting when
/// the connection is lost, until the task is dropped.
pub async fn follow(url: String, cache: std::sync::Arc<TenantCache>) {
    let mut warned = false;
    loop {
        match listen(&url, &cache, &mut warned).await {
            Ok(()) => {}
            // Once per outage: a database that stays away would otherwise
            // fill the log every second.
            Err(e) if !warned => {
                warned = true;
                tracing::warn!(
                    error = %e,
                    "tenant change feed lost; tenants are read again every second until it is back"
                );
            }
            Err(e) => tracing::debug!(error = %e, "tenant change feed still lost"),
        }
        cache.feed_restarted();
        tokio::time::sleep(RETRY_AFTER).await;
    }
}

/// One connection's life: listen, then hear changes and pings until the
/// connection fails or stalls.
async fn listen(url: &str, cache: &TenantCache, warned: &mut bool) -> anyhow::Result<()> {
    let mut conn = within(PING_LOST_AFTER, AsyncPgConnection::establish(url)).await??;
    within(
        PING_LOST_AFTER,
        conn.batch_execute(&format!(
            "SET application_name = 'strata_changes'; LISTEN {CHANNEL}"
        )),
    )
    .await??;
    // Changes committed before LISTEN took effect were never heard: what the
    // cache holds may predate them.
    cache.feed_restarted();
    // Every server pings on the same channel: its own pings carry a nonce.
    let nonce: u64 = rand::random();
    let mut ping: u64 = 0;
    let mut sent: Option<(u64, Instant)> = None;
    let mut next_ping = Instant::now();
    loop {
        if sent.is_none() && Instant::now() >= next_ping {
            ping += 1;
            let at = Instant::now();
            // No ping, so no vouching, unless every trigger announces.
            // Looked up by table and name (pg_trigger's index): by name
            // alone it scanned every tenant table's triggers, 95 ms per
            // ping over 10,000 tenants.
            let sql = format!(
                "SELECT pg_notify('{CHANNEL}', 'ping:{nonce}:{ping}') \
                 WHERE (SELECT count(*) FROM pg_catalog.pg_trigger \
                        WHERE tgrelid IN ('management.tenants'::regclass, \
                                          'management.tenant_domains'::regclass) \
                          AND tgname IN ('tenants_announce_change', 'tenants_announce_truncate', \
                          'tenant_domains_announce_change', 'tenant_domains_announce_truncate') \
                          AND tgenabled = 'A') = 4"
            );
            within(PING_LOST_AFTER, conn.batch_execute(&sql)).await??;
            sent = Some((ping, at));
            next_ping = at + PING_EVERY;
        }
        let wait = match sent {
            Some((_, at)) => PING_LOST_AFTER.saturating_sub(at.elapsed()),
            None => next_ping.saturating_duration_since(Instant::now()),
        };
        let heard = {
            let stream = conn.notifications_stream();
            let mut stream = std::pin::pin!(stream);
            tokio::time::timeout(wait, stream.next()).await
        };
        let note = match heard {
            Err(_) => match sent {
                Some((_, at)) if at.elapsed() >= PING_LOST_AFTER => {
                    anyhow::bail!("no ping heard back in {PING_LOST_AFTER:?}")
                }
                _ => continue,
            },
            Ok(None) => anyhow::bail!("the connection closed"),
            Ok(Some(note)) => note?,
        };
        match note.payload.strip_prefix("ping:") {
            Some(ping) => {
                // Another server's ping says nothing about what this
                // connection has heard.
                if let Some((expected, at)) = sent
                    && ping == format!("{nonce}:{expected}")
                {
                    cache.vouch(at);
                    sent = None;
                    *warned = false;
                }
            }
            None => cache.changed(&note.payload),
        }
    }
}

/// `future`, or an error once `limit` has passed: a connection that stops
/// answering must not hold the feed forever.
async fn within<T>(limit: Duration, future: impl Future<Output = T>) -> anyhow::Result<T> {
    tokio::time::timeout(limit, future)
        .await
        .map_err(|_| anyhow::anyhow!("no answer in {limit:?}"))
}
