//! createTenant latency over HTTP: `cargo bench --bench provision [-- N]`.
//!
//! Starts a private PostgreSQL (durable settings, as `strata serve` runs it)
//! in a temporary directory, serves the real router on loopback, creates N
//! tenants (default 100) one after another with the admin token, and prints
//! p50/p95/p99 of the whole request, and of argon2id hashing on its own.

use std::time::{Duration, Instant};

use serde_json::json;
use strata::App;
use strata::config::{Config, Secrets};
use strata::db::embedded::{self, EmbeddedPostgres};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(100);
    let dir = std::env::temp_dir().join(format!("strata-bench-{}", std::process::id()));
    let opts = embedded::Options {
        data_dir: dir.clone(),
        ephemeral: false,
    };
    let pg = tokio::task::spawn_blocking(move || EmbeddedPostgres::start(&opts)).await??;
    embedded::ensure_database(&pg, "bench").await?;
    let url = pg.url("bench");
    strata::db::migrate(&url).await?;
    let config = Config {
        database_url: Some(url.clone()),
        listen: "127.0.0.1:0".parse()?,
        data_dir: dir.clone(),
        admin_token: Some("bench-admin".into()),
        token_secret: Some("bench-secret".into()),
        base_domain: None,
        graphiql_dir: None,
        pool_size: 8,
        token_ttl_secs: 3600,
        session_ttl_secs: 3600,
        login_lock_after: 10,
        login_lock_secs: 900,
        tenant_retention_days: 30,
        schema_pool: 0,
        tenants_per_connection: 0,
        pool_lanes: 0,
        change_feed: None,
    };
    let secrets = Secrets::load(&config)?;
    let app = App::new(config, secrets, strata::db::build_pool(&url, 8))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(axum::serve(listener, strata::build_router(app)).into_future());

    let client = reqwest::Client::new();
    let query = "mutation($i: CreateTenantInput!) { createTenant(input: $i) { tenant { id } } }";
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let input = json!({ "i": {
            "slug": format!("bench_{i:05}"), "name": "Bench", "plan": "free",
            "owner": { "email": "owner@bench.test", "password": "bench-password", "displayName": "Owner" }
        }});
        let start = Instant::now();
        let resp: serde_json::Value = client
            .post(format!("http://{addr}/graphql"))
            .bearer_auth("bench-admin")
            .json(&json!({ "query": query, "variables": input }))
            .send()
            .await?
            .json()
            .await?;
        times.push(start.elapsed());
        anyhow::ensure!(resp["errors"].is_null(), "createTenant failed: {resp}");
    }
    let mut hashes = Vec::with_capacity(20);
    for _ in 0..20 {
        let start = Instant::now();
        strata::auth::hash_password("bench-password".into())
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        hashes.push(start.elapsed());
    }
    times.sort();
    hashes.sort();
    println!("createTenant over HTTP, {n} tenants, one at a time:");
    println!(
        "  p50 {}  p95 {}  p99 {}  max {}",
        ms(percentile(&times, 0.50)),
        ms(percentile(&times, 0.95)),
        ms(percentile(&times, 0.99)),
        ms(*times.last().unwrap())
    );
    println!(
        "argon2id hash of the owner's password (inside the above): p50 {}",
        ms(percentile(&hashes, 0.50))
    );
    tokio::task::spawn_blocking(move || pg.stop()).await??;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
