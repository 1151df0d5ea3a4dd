//! The change feed: keeps the tenant cache ([`TenantCache`]) current.
//!
//! A trigger on `management.tenants` and `management.tenant_domains`
//! announces each committed change on the channel `strata_tenants`. One
//! connection per server, outside the pool, listens: each change evicts the
//! entry it names. Every [`PING_EVERY`] the feed also announces a ping of
//! its own and waits to hear it back; PostgreSQL delivers notifications in
//! commit order, so once the ping is heard, every change committed before
//! it was sent has been heard too, and the cache may serve entries for
//! [`CACHE_TTL`](crate::tenancy::resolver::CACHE_TTL) after the ping was sent.
//!
//! Nothing here is needed for correctness: when the feed cannot listen (a
//! pooler in transaction mode in between, a lost connection), its pings
//! never come back and the cache falls back to re-reading a tenant after
//! [`CACHE_TTL`](crate::tenancy::resolver::CACHE_TTL), as it would with no feed at all.

use std::time::{Duration, Instant};

use async_graphql::futures_util::StreamExt as _;
use diesel_async::{AsyncConnection as _, AsyncPgConnection, SimpleAsyncConnection as _};

use crate::tenancy::resolver::TenantCache;

/// The channel the trigger announces changes on.
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
    loop {
        match listen(&url, &cache).await {
            Ok(()) => {}
            Err(e) => tracing::debug!(error = %e, "tenant change feed lost; listening again"),
        }
        cache.feed_restarted();
        tokio::time::sleep(RETRY_AFTER).await;
    }
}

/// One connection's life: listen, then hear changes and pings until the
/// connection fails.
async fn listen(url: &str, cache: &TenantCache) -> anyhow::Result<()> {
    let mut conn = AsyncPgConnection::establish(url).await?;
    conn.batch_execute(&format!(
        "SET application_name = 'strata_changes'; LISTEN {CHANNEL}"
    ))
    .await?;
    // Changes committed before LISTEN took effect were never heard: what the
    // cache holds may predate them.
    cache.feed_restarted();
    // Every server pings on the same channel: its own pings carry a nonce.
    let nonce: u64 = rand::random();
    let mut ping: u64 = 0;
    let mut sent: Option<(u64, Instant)> = None;
    let mut next_ping = Instant::now();
    loop {
        if let Some((_, at)) = sent
            && at.elapsed() > PING_LOST_AFTER
        {
            anyhow::bail!("no ping heard back in {PING_LOST_AFTER:?}");
        }
        if sent.is_none() && Instant::now() >= next_ping {
            ping += 1;
            let at = Instant::now();
            conn.batch_execute(&format!(
                "SELECT pg_notify('{CHANNEL}', 'ping:{nonce}:{ping}')"
            ))
            .await?;
            sent = Some((ping, at));
            next_ping = at + PING_EVERY;
        }
        let wait = if sent.is_some() {
            PING_LOST_AFTER
        } else {
            next_ping.saturating_duration_since(Instant::now())
        };
        let heard = {
            let stream = conn.notifications_stream();
            let mut stream = std::pin::pin!(stream);
            tokio::time::timeout(wait, stream.next()).await
        };
        let note = match heard {
            Err(_) => continue,
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
                }
            }
            None => cache.changed(&note.payload),
        }
    }
}
