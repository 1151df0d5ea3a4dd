//! Which tenant a request is for.
//!
//! Sources, in order: the `X-Tenant` header; the subdomain of `Host` under
//! the base domain; a custom domain registered for a tenant; the tenant claim
//! of the bearer token. Every source present must name the same tenant,
//! otherwise the answer is `TENANT_MISMATCH`, never a silent pick.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use uuid::Uuid;

use crate::db::Pool;
use crate::error::{AppError, AppResult};
use crate::tenancy::TenantSlug;
use crate::tenancy::tenants::{self, Tenant, status};

/// How long a tenant lookup may be served from memory. A status change
/// (suspension, say) is seen by every server within this time.
pub const CACHE_TTL: Duration = Duration::from_secs(1);

/// Most lookups (hits and misses) each cache keeps.
const MAX_CACHED: usize = 10_000;

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

/// A short-lived cache of tenant lookups, misses included.
#[derive(Debug, Default)]
pub struct TenantCache {
    by_slug: Mutex<HashMap<String, (Instant, Option<Tenant>)>>,
    by_domain: Mutex<HashMap<String, (Instant, Option<Tenant>)>>,
}

impl TenantCache {
    /// The tenant with `slug`, if any.
    pub async fn by_slug(&self, pool: &Pool, slug: &str) -> AppResult<Option<Tenant>> {
        if let Some(hit) = cached(&self.by_slug, slug) {
            return Ok(hit);
        }
        let mut conn = pool.get().await?;
        let found = tenants::find_by_slug(&mut conn, slug).await?;
        store(&self.by_slug, slug, found.clone());
        Ok(found)
    }

    /// The tenant a custom domain belongs to, if any.
    pub async fn by_domain(&self, pool: &Pool, domain: &str) -> AppResult<Option<Tenant>> {
        if let Some(hit) = cached(&self.by_domain, domain) {
            return Ok(hit);
        }
        let mut conn = pool.get().await?;
        let found = tenants::find_by_domain(&mut conn, domain).await?;
        store(&self.by_domain, domain, found.clone());
        Ok(found)
    }

    /// Forgets everything (after this process changes a tenant).
    pub fn clear(&self) {
        lock(&self.by_slug).clear();
        lock(&self.by_domain).clear();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding this lock cannot leave the map inconsistent.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn cached(
    map: &Mutex<HashMap<String, (Instant, Option<Tenant>)>>,
    key: &str,
) -> Option<Option<Tenant>> {
    let map = lock(map);
    map.get(key)
        .filter(|(at, _)| at.elapsed() < CACHE_TTL)
        .map(|(_, t)| t.clone())
}

fn store(
    map: &Mutex<HashMap<String, (Instant, Option<Tenant>)>>,
    key: &str,
    value: Option<Tenant>,
) {
    let mut map = lock(map);
    if map.len() >= MAX_CACHED {
        map.retain(|_, (at, _)| at.elapsed() < CACHE_TTL);
        if map.len() >= MAX_CACHED {
            map.clear();
        }
    }
    map.insert(key.to_owned(), (Instant::now(), value));
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
        return Err(AppError::TenantMismatch(format!(
            "the credential was issued for tenant '{token_slug}', not '{}'",
            tenant.slug
        )));
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

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn header_is_read() {
        let s = TenantSources::from_headers(&headers(&[("x-tenant", "globex")]), None);
        assert_eq!(s.header.as_deref(), Some("globex"));
    }
}
