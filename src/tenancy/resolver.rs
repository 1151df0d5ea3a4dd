//! Which tenant a request is for.
//!
//! Sources, in order: the `X-Tenant` header; the subdomain of `Host` under
//! the base domain; a custom domain registered for a tenant; the tenant claim
//! of the bearer token. Every source present must name the same tenant,
//! otherwise the answer is `TENANT_MISMATCH`, never a silent pick.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use uuid::Uuid;

use crate::db::Pool;
use crate::error::{AppError, AppResult};
use crate::tenancy::TenantSlug;
use crate::tenancy::tenants::{self, Tenant, status};

/// How long a tenant lookup may be served from memory when nothing says
/// it is still current. A status change (suspension, say) is seen by every
/// server within this time.
pub const CACHE_TTL: Duration = Duration::from_secs(1);

/// Most lookups (hits and misses) each cache keeps: a few MB, room for
/// every tenant of a large database.
const MAX_CACHED: usize = 50_000;

/// What a request says about its tenant, before any lookup.
#[derive(Debug, Clone, Default)]
pub struct TenantSources {
    /// The `X-Tenant` header.
    pub header: Option<String>,
    /// The subdomain of `Host` under the base domain.
    pub subdomain: Option<String>,
    /// `Host` when it is not under the base domain: maybe a custom domain.
    pub custom_domain: Option<String>,
    /// The tenant named by the bearer credential: a user token names the
    /// tenant's id (and its slug then), an API key only its slug.
    pub token: Option<(Option<Uuid>, String)>,
}

impl TenantSources {
    /// Reads the header and host sources. The token source is added by the
    /// caller once the token has been verified.
    pub fn from_headers(headers: &HeaderMap, base_domain: Option<&str>) -> Self {
        let header = headers
            .get("x-tenant")
            .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_owned());
        let host = headers
            .get(axum::http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(strip_port)
            .map(|h| h.trim_end_matches('.').to_ascii_lowercase())
            .filter(|h| !h.is_empty());
        let (mut subdomain, mut custom_domain) = (None, None);
        if let Some(host) = host {
            let base = base_domain.map(|b| b.trim_matches('.').to_ascii_lowercase());
            match base.as_deref() {
                Some(base) if host == base => {}
                Some(base) if host.ends_with(&format!(".{base}")) => {
                    subdomain = Some(host[..host.len() - base.len() - 1].to_owned());
                }
                _ if is_local(&host) => {}
                _ => custom_domain = Some(host),
            }
        }
        Self {
            header,
            subdomain,
            custom_domain,
            token: None,
        }
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        // [::1]:8080
        return host.split(']').next().map_or(host, |h| &h[1..]);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

fn is_local(host: &str) -> bool {
    host == "localhost" || host.ends_with(".localhost") || host.parse::<std::net::IpAddr>().is_ok()
}

/// A cache of tenant lookups, misses included.
///
/// An entry is served for [`CACHE_TTL`] on its own word. Past that, it is
/// served only while the change feed vouches for it (see
/// [`crate::tenancy::changes`]): every committed change to a tenant or a
/// domain is announced, and evicts what it names; and the feed's last
/// confirmed round trip, sent less than [`CACHE_TTL`] ago, proves that
/// every change committed before it has been heard. So a change is still
/// seen within [`CACHE_TTL`], while a server over 10,000 tenants no longer
/// reads each tenant's row again on almost every request.
#[derive(Debug)]
pub struct TenantCache {
    by_slug: Mutex<HashMap<String, Entry>>,
    by_domain: Mutex<HashMap<String, Entry>>,
    /// Bumped by every change heard and every restart of the feed: a
    /// lookup that spans one may have read the row before the change, so
    /// its entry gets only [`CACHE_TTL`].
    generation: AtomicU64,
    /// Until when entries the feed vouches for may be served (nanoseconds
    /// after `epoch`; 0: the feed vouches for nothing).
    vouched_until: AtomicU64,
    epoch: Instant,
}

#[derive(Debug, Clone)]
struct Entry {
    at: Instant,
    /// No change was heard while the row was being read.
    vouchable: bool,
    tenant: Option<Tenant>,
}

impl Default for TenantCache {
    fn default() -> Self {
        Self {
            by_slug: Mutex::default(),
            by_domain: Mutex::default(),
            generation: AtomicU64::new(0),
            vouched_until: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }
}

impl TenantCache {
    /// The tenant with `slug`, if any.
    pub async fn by_slug(&self, pool: &Pool, slug: &str) -> AppResult<Option<Tenant>> {
        if let Some(hit) = self.cached(&self.by_slug, slug) {
            return Ok(hit);
        }
        let (generation, asked) = (self.generation.load(Ordering::Acquire), Instant::now());
        let mut conn = pool.get().await?;
        let found = tenants::find_by_slug(&mut conn, slug).await?;
        self.store(&self.by_slug, slug, found.clone(), generation, asked);
        Ok(found)
    }

    /// The tenant a custom domain belongs to, if any.
    pub async fn by_domain(&self, pool: &Pool, domain: &str) -> AppResult<Option<Tenant>> {
        if let Some(hit) = self.cached(&self.by_domain, domain) {
            return Ok(hit);
        }
        let (generation, asked) = (self.generation.load(Ordering::Acquire), Instant::now());
        let mut conn = pool.get().await?;
        let found = tenants::find_by_domain(&mut conn, domain).await?;
        self.store(&self.by_domain, domain, found.clone(), generation, asked);
        Ok(found)
    }

    /// Forgets everything (after this process changes a tenant).
    pub fn clear(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        lock(&self.by_slug).clear();
        lock(&self.by_domain).clear();
    }

    /// A change was heard: `t:<slug>` for a tenant, `d:<domain>` for a
    /// custom domain; anything else forgets everything.
    pub fn changed(&self, what: &str) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        // A domain entry holds its tenant's row too, so any change to a
        // tenant may make one stale; domains are few.
        lock(&self.by_domain).clear();
        match what.strip_prefix("t:") {
            Some(slug) => {
                lock(&self.by_slug).remove(slug);
            }
            None if what.starts_with("d:") => {}
            None => lock(&self.by_slug).clear(),
        }
    }

    /// The feed has heard every change committed before `sent`: entries it
    /// vouches for may be served until `sent` + [`CACHE_TTL`].
    pub fn vouch(&self, sent: Instant) {
        let until = self.nanos(sent + CACHE_TTL).max(1);
        self.vouched_until.fetch_max(until, Ordering::AcqRel);
    }

    /// The feed is (re)starting: what it vouched for so far may have missed
    /// changes, so everything is forgotten and nothing is vouched for until
    /// its next round trip.
    pub fn feed_restarted(&self) {
        self.vouched_until.store(0, Ordering::Release);
        self.clear();
    }

    /// Whether the feed vouches for entries right now.
    pub fn vouched(&self) -> bool {
        self.nanos(Instant::now()) < self.vouched_until.load(Ordering::Acquire)
    }

    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    fn cached(&self, map: &Mutex<HashMap<String, Entry>>, key: &str) -> Option<Option<Tenant>> {
        let map = lock(map);
        let entry = map.get(key)?;
        let fresh = entry.at.elapsed() < CACHE_TTL || (entry.vouchable && self.vouched());
        fresh.then(|| entry.tenant.clone())
    }

    fn store(
        &self,
        map: &Mutex<HashMap<String, Entry>>,
        key: &str,
        tenant: Option<Tenant>,
        generation: u64,
        asked: Instant,
    ) {
        let mut map = lock(map);
        // Checked under the map's lock: a change heard after this point
        // evicts the entry stored here.
        let vouchable = self.generation.load(Ordering::Acquire) == generation;
        if map.len() >= MAX_CACHED {
            let vouched = self.vouched();
            map.retain(|_, e| e.at.elapsed() < CACHE_TTL || (e.vouchable && vouched));
            // Still full of live entries: a tenth of them go (whichever
            // come first), not all, so one burst does not empty the cache.
            let excess = map.len().saturating_sub(MAX_CACHED * 9 / 10);
            let gone: Vec<String> = map.keys().take(excess).cloned().collect();
            for key in gone {
                map.remove(&key);
            }
        }
        map.insert(
            key.to_owned(),
            // Aged from before the row was read: a change committed while
            // it was being read is seen within CACHE_TTL of that change.
            Entry {
                at: asked,
                vouchable,
                tenant,
            },
        );
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding this lock cannot leave the map inconsistent.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Resolves the request's tenant, checking every source against the others.
pub async fn resolve(
    pool: &Pool,
    cache: &TenantCache,
    sources: &TenantSources,
) -> AppResult<Tenant> {
    let mut named: Option<(&'static str, String)> = None;
    let mut name = |what: &'static str, slug: String| -> AppResult<()> {
        match &named {
            Some((first, other)) if *other != slug => Err(AppError::TenantMismatch(format!(
                "the {first} names tenant '{other}' but the {what} names '{slug}'"
            ))),
            Some(_) => Ok(()),
            None => {
                named = Some((what, slug));
                Ok(())
            }
        }
    };
    // A name that cannot be a slug names no tenant: answered without a lookup
    // (and without filling the cache with whatever a client sends).
    let valid = |what: &str, raw: &str| -> AppResult<String> {
        TenantSlug::parse(raw)
            .map(|s| s.as_str().to_owned())
            .map_err(|_| AppError::TenantNotFound(format!("no tenant '{raw}' (from the {what})")))
    };
    if let Some(slug) = &sources.header {
        name("X-Tenant header", valid("X-Tenant header", slug)?)?;
    }
    if let Some(sub) = &sources.subdomain {
        name("Host subdomain", valid("Host subdomain", sub)?)?;
    }
    if let Some(domain) = &sources.custom_domain
        && let Some(tenant) = cache.by_domain(pool, domain).await?
    {
        name("custom domain", tenant.slug)?;
    }
    let tenant = match (named, &sources.token) {
        (Some((what, slug)), _) => cache.by_slug(pool, &slug).await?.ok_or_else(|| {
            AppError::TenantNotFound(format!("no tenant '{slug}' (from the {what})"))
        })?,
        (None, Some((_, slug))) => cache
            .by_slug(pool, slug)
            .await?
            .ok_or_else(|| AppError::TenantNotFound(format!("no tenant '{slug}'")))?,
        (None, None) => {
            return Err(AppError::TenantNotFound(
                "this operation needs a tenant: send an X-Tenant header, use the tenant's \
                 domain, or a tenant user's token"
                    .into(),
            ));
        }
    };
    if let Some((token_tenant, token_slug)) = &sources.token
        && token_tenant.map_or(*token_slug != tenant.slug, |id| id != tenant.id)
    {
        return Err(AppError::TenantMismatch(mismatch(token_slug, &tenant.slug)));
    }
    match tenant.status.as_str() {
        status::ACTIVE => Ok(tenant),
        status::SUSPENDED => Err(AppError::TenantSuspended(tenant.slug)),
        _ => Err(AppError::TenantNotFound(format!(
            "no tenant '{}'",
            tenant.slug
        ))),
    }
}

/// Why a credential for `token_slug` is refused for `tenant_slug`. The two
/// are the same when the credential's tenant was deleted and its name
/// taken by a new tenant (or the credential comes from another database).
fn mismatch(token_slug: &str, tenant_slug: &str) -> String {
    if token_slug == tenant_slug {
        format!(
            "the credential was issued for another tenant named '{token_slug}', since \
             deleted or in another database; sign in again"
        )
    } else {
        format!("the credential was issued for tenant '{token_slug}', not '{tenant_slug}'")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mismatch_names_both_tenants_or_says_the_name_was_reused() {
        assert_eq!(
            mismatch("acme", "globex"),
            "the credential was issued for tenant 'acme', not 'globex'"
        );
        let reused = mismatch("acme", "acme");
        assert!(reused.contains("another tenant named 'acme'"), "{reused}");
        assert!(reused.ends_with("sign in again"), "{reused}");
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn subdomain_under_base_domain() {
        let s = TenantSources::from_headers(
            &headers(&[("host", "acme.example.com:8080")]),
            Some("example.com"),
        );
        assert_eq!(s.subdomain.as_deref(), Some("acme"));
        assert_eq!(s.custom_domain, None);
    }

    #[test]
    fn base_domain_itself_names_no_tenant() {
        let s =
            TenantSources::from_headers(&headers(&[("host", "Example.com")]), Some("example.com"));
        assert_eq!(s.subdomain, None);
        assert_eq!(s.custom_domain, None);
    }

    #[test]
    fn other_host_is_a_custom_domain_candidate() {
        let s =
            TenantSources::from_headers(&headers(&[("host", "app.acme.org")]), Some("example.com"));
        assert_eq!(s.custom_domain.as_deref(), Some("app.acme.org"));
    }

    #[test]
    fn loopback_hosts_are_not_domains() {
        for host in ["localhost:8080", "127.0.0.1:8080", "[::1]:8080"] {
            let s = TenantSources::from_headers(&headers(&[("host", host)]), None);
            assert_eq!(s.custom_domain, None, "{host}");
            assert_eq!(s.subdomain, None, "{host}");
        }
    }

    fn cache_with(slug: &str) -> TenantCache {
        let cache = TenantCache::default();
        let generation = cache.generation.load(Ordering::Acquire);
        cache.store(&cache.by_slug, slug, None, generation, Instant::now());
        cache
    }

    /// Makes the cached entry for `slug` older than [`CACHE_TTL`].
    fn age(cache: &TenantCache, slug: &str) {
        let mut map = lock(&cache.by_slug);
        let entry = map.get_mut(slug).unwrap();
        entry.at = Instant::now().checked_sub(CACHE_TTL * 2).unwrap();
    }

    #[test]
    fn an_old_entry_is_served_only_while_the_feed_vouches_for_it() {
        let cache = cache_with("acme");
        assert!(cache.cached(&cache.by_slug, "acme").is_some(), "fresh");
        age(&cache, "acme");
        assert!(
            cache.cached(&cache.by_slug, "acme").is_none(),
            "no feed: re-read"
        );
        cache.vouch(Instant::now());
        assert!(cache.cached(&cache.by_slug, "acme").is_some(), "vouched");
        // The last ping heard was sent longer than CACHE_TTL ago: a change
        // since then may not have been heard.
        let cache = cache_with("acme");
        age(&cache, "acme");
        cache.vouch(Instant::now().checked_sub(CACHE_TTL).unwrap());
        assert!(!cache.vouched());
        assert!(cache.cached(&cache.by_slug, "acme").is_none());
    }

    #[test]
    fn a_change_heard_during_a_lookup_leaves_its_entry_to_the_ttl() {
        let cache = TenantCache::default();
        cache.vouch(Instant::now());
        let generation = cache.generation.load(Ordering::Acquire);
        // The row was read, then a change was heard before the entry was stored.
        cache.changed("t:acme");
        cache.store(&cache.by_slug, "acme", None, generation, Instant::now());
        assert!(cache.cached(&cache.by_slug, "acme").is_some(), "fresh");
        age(&cache, "acme");
        assert!(cache.cached(&cache.by_slug, "acme").is_none());
    }

    #[test]
    fn a_change_evicts_what_it_names() {
        let cache = cache_with("acme");
        let generation = cache.generation.load(Ordering::Acquire);
        cache.store(&cache.by_slug, "globex", None, generation, Instant::now());
        cache.store(
            &cache.by_domain,
            "app.acme.org",
            None,
            generation,
            Instant::now(),
        );
        cache.changed("t:acme");
        assert!(cache.cached(&cache.by_slug, "acme").is_none());
        assert!(cache.cached(&cache.by_slug, "globex").is_some());
        // A domain entry holds a tenant's row: any tenant change drops it.
        assert!(cache.cached(&cache.by_domain, "app.acme.org").is_none());
        cache.changed("something else");
        assert!(cache.cached(&cache.by_slug, "globex").is_none());
    }

    #[test]
    fn a_full_cache_drops_a_tenth_not_everything() {
        let cache = TenantCache::default();
        cache.vouch(Instant::now());
        let generation = cache.generation.load(Ordering::Acquire);
        for i in 0..=MAX_CACHED {
            cache.store(
                &cache.by_slug,
                &format!("t{i}"),
                None,
                generation,
                Instant::now(),
            );
        }
        let kept = lock(&cache.by_slug).len();
        assert_eq!(kept, MAX_CACHED * 9 / 10 + 1);
    }

    #[test]
    fn a_restarted_feed_forgets_everything_and_vouches_for_nothing() {
        let cache = cache_with("acme");
        cache.vouch(Instant::now());
        cache.feed_restarted();
        assert!(!cache.vouched());
        assert!(cache.cached(&cache.by_slug, "acme").is_none());
    }

    #[test]
    fn header_is_read() {
        let s = TenantSources::from_headers(&headers(&[("x-tenant", "globex")]), None);
        assert_eq!(s.header.as_deref(), Some("globex"));
    }
}
