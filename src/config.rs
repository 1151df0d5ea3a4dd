//! Every setting, its environment variable and its default, in one place.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use base64::Engine as _;

/// Settings shared by every command that talks to the database.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// PostgreSQL to use; unset: the built-in PostgreSQL in the data directory.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Address the server listens on.
    #[arg(long, env = "STRATA_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Holds the built-in PostgreSQL cluster and generated secrets.
    #[arg(long, env = "STRATA_DATA_DIR", default_value = ".strata")]
    pub data_dir: PathBuf,

    /// Platform admin bearer token; unset: generated once and kept in the data directory.
    #[arg(long, env = "STRATA_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// Key that signs tenant users' tokens; unset: generated once and kept in the data directory.
    #[arg(long, env = "STRATA_TOKEN_SECRET", hide_env_values = true)]
    pub token_secret: Option<String>,

    /// Base domain for subdomain resolution (`acme.<base>` names tenant `acme`).
    #[arg(long, env = "STRATA_BASE_DOMAIN")]
    pub base_domain: Option<String>,

    /// Serve GraphiQL's assets from this folder instead of the copy built into the binary.
    #[arg(long, env = "STRATA_GRAPHIQL_DIR")]
    pub graphiql_dir: Option<PathBuf>,

    /// Most database connections the server holds.
    #[arg(long, env = "STRATA_POOL_SIZE", default_value_t = 16)]
    pub pool_size: u32,

    /// Lifetime of a tenant user's access token, in seconds (refresh it
    /// with `refreshSession`).
    #[arg(long, env = "STRATA_TOKEN_TTL_SECS", default_value_t = 900)]
    pub token_ttl_secs: u64,

    /// Lifetime of a session (its refresh tokens), in seconds.
    #[arg(long, env = "STRATA_SESSION_TTL_SECS", default_value_t = 30 * 24 * 3600)]
    pub session_ttl_secs: u64,

    /// Failed sign-ins in a row that lock an email in a tenant (answered
    /// more slowly from the fourth on).
    #[arg(long, env = "STRATA_LOGIN_LOCK_AFTER", default_value_t = 10)]
    pub login_lock_after: u32,

    /// How long such a lock lasts, in seconds.
    #[arg(long, env = "STRATA_LOGIN_LOCK_SECS", default_value_t = 900)]
    pub login_lock_secs: u64,

    /// Days a deleted tenant can still be restored.
    #[arg(long, env = "STRATA_TENANT_RETENTION_DAYS", default_value_t = 30)]
    pub tenant_retention_days: u32,

    /// Tenant schemas the server keeps made ahead of time, so that
    /// createTenant only renames one (0: none; provisioning then runs the
    /// whole template).
    #[arg(long, env = "STRATA_SCHEMA_POOL", default_value_t = 4)]
    pub schema_pool: usize,

    /// Distinct tenants one database connection may serve before it is
    /// closed and replaced, which bounds PostgreSQL's per-connection
    /// catalog caches on databases with many tenants (0: no limit).
    #[arg(long, env = "STRATA_TENANTS_PER_CONNECTION", default_value_t = 500)]
    pub tenants_per_connection: usize,

    /// Where the tenant change feed listens: unset, the database itself
    /// (as DATABASE_URL reaches it); `off`, nowhere (a tenant is read again
    /// every second); or a URL that reaches PostgreSQL directly or through a
    /// session-mode pooler, needed when DATABASE_URL goes through a
    /// transaction-mode pooler.
    #[arg(long, env = "STRATA_CHANGE_FEED", hide_env_values = true)]
    pub change_feed: Option<String>,

    /// Tenant lanes: connections, beside the pool, each serving only the
    /// tenants hashed to it (two lanes per tenant), so PostgreSQL's caches
    /// and plans stay warm for them. A request whose two lanes are busy
    /// queues up to 5 ms for one (one request per lane) before it takes a
    /// connection from the pool (0: none; every tenant transaction uses the
    /// pool). Lanes open their connections when first used.
    #[arg(long, env = "STRATA_POOL_LANES", default_value_t = 32)]
    pub pool_lanes: usize,
}

impl Config {
    /// How sign-in attempts are throttled.
    pub fn throttle(&self) -> crate::domain::sessions::Throttle {
        crate::domain::sessions::Throttle {
            free_failures: 3,
            step: std::time::Duration::from_millis(250),
            max_delay: std::time::Duration::from_secs(2),
            lock_after: i32::try_from(self.login_lock_after.max(1)).unwrap_or(i32::MAX),
            lock_for: chrono::Duration::seconds(
                i64::try_from(self.login_lock_secs).unwrap_or(i64::MAX / 4_000),
            ),
        }
    }

    /// How long a deleted tenant can be restored.
    pub fn tenant_retention(&self) -> chrono::Duration {
        chrono::Duration::days(i64::from(self.tenant_retention_days))
    }

    /// How long a session lasts.
    pub fn session_ttl(&self) -> chrono::Duration {
        chrono::Duration::seconds(i64::try_from(self.session_ttl_secs).unwrap_or(i64::MAX / 4_000))
    }
}

/// The two secrets the server needs, from settings or the data directory.
#[derive(Clone)]
pub struct Secrets {
    /// Platform admin bearer token.
    pub admin_token: String,
    /// HMAC key for tenant users' tokens.
    pub token_secret: String,
    /// Whether the admin token was generated (rather than set), so it is worth printing.
    pub admin_token_generated: bool,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets { .. }")
    }
}

impl Secrets {
    /// Takes each secret from its setting, or else from `<data_dir>/<name>`,
    /// generating and storing it (mode 0600) the first time.
    pub fn load(config: &Config) -> anyhow::Result<Self> {
        let (admin_token, admin_token_generated) = setting_or_file(
            config.admin_token.as_deref(),
            &config.data_dir,
            "admin-token",
        )?;
        let (token_secret, _) = setting_or_file(
            config.token_secret.as_deref(),
            &config.data_dir,
            "token-secret",
        )?;
        Ok(Self {
            admin_token,
            token_secret,
            admin_token_generated,
        })
    }
}

fn setting_or_file(value: Option<&str>, dir: &Path, name: &str) -> anyhow::Result<(String, bool)> {
    if let Some(value) = value.filter(|v| !v.is_empty()) {
        return Ok((value.to_owned(), false));
    }
    let path = dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => return Ok((text.trim().to_owned(), true)),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let secret = random_secret();
    write_private(&path, &secret)?;
    Ok((secret, true))
}

/// 32 random bytes, URL-safe base64.
pub fn random_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Writes a file only its owner can read.
pub fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    Ok(())
}
