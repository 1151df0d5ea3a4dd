//! The fleet at a thousand tenants: `cargo bench --bench fleet [-- N]`.
//!
//! Starts a private PostgreSQL (durable settings, as `strata serve` runs it)
//! in a temporary directory and, with N tenants (default 1,000):
//!
//! 1. provisions them with the real provisioning code, two at a time (the
//!    machine's two cores), owner password hashing included;
//! 2. runs the real `strata tenants migrate` binary with nothing to do;
//! 3. applies a one-statement template step to every tenant with
//!    `fleet::migrate_all` (what `strata tenants migrate` runs), at
//!    `--jobs 4` (the command's default) and then, with another step, at 1;
//! 4. runs `strata doctor` over the whole fleet.
//!
//! `STRATA_BENCH_KEEP=1` leaves the cluster running afterwards and prints
//! its URL.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use strata::db::embedded::{self, EmbeddedPostgres};
use strata::tenancy::fleet;
use strata::tenancy::provision::{self, CreateTenant};
use strata::tenancy::template::{TEMPLATE, TemplateStep};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// The built-in template plus `extra` one-statement steps.
fn extended(extra: &[&'static str]) -> &'static [TemplateStep] {
    let mut steps = TEMPLATE.to_vec();
    for sql in extra {
        steps.push(TemplateStep {
            version: steps.len() as i32 + 1,
            name: "bench_step",
            sql,
        });
    }
    Box::leak(steps.into_boxed_slice())
}

async fn migrate(
    pool: &strata::db::Pool,
    template: &'static [TemplateStep],
    jobs: usize,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let summary = fleet::migrate_all(
        pool,
        template,
        jobs,
        Arc::new(AtomicBool::new(false)),
        |_, _| {},
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let took = start.elapsed();
    anyhow::ensure!(summary.failed.is_empty(), "failures: {:?}", summary.failed);
    Ok(took)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1000);
    let dir = std::env::temp_dir().join(format!("strata-bench-fleet-{}", std::process::id()));
    let opts = embedded::Options {
        data_dir: dir.clone(),
        ephemeral: false,
    };
    let pg = tokio::task::spawn_blocking(move || EmbeddedPostgres::start(&opts)).await??;
    embedded::ensure_database(&pg, "bench").await?;
    let url = pg.url("bench");
    strata::db::migrate(&url).await?;
    let (pool, _) = strata::db::build_pool(&url, 8);

    // 1. Provisioning, two at a time.
    let start = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers = (0..2).map(|_| {
        let (pool, next) = (pool.clone(), next.clone());
        tokio::spawn(async move {
            let mut times = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, anyhow::Error>(times);
                }
                let t = Instant::now();
                provision::create_tenant(
                    &pool,
                    TEMPLATE,
                    CreateTenant {
                        slug: format!("fleet_{i:05}"),
                        name: "Fleet".into(),
                        plan: "free".into(),
                        owner_email: "owner@fleet.test".into(),
                        owner_password: "bench-password".into(),
                        owner_display_name: "Owner".into(),
                    },
                )
                .await
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
                times.push(t.elapsed());
            }
        })
    });
    let mut times = Vec::with_capacity(n);
    for w in futures::future::join_all(workers).await {
        times.extend(w??);
    }
    let provisioning = start.elapsed();
    times.sort();
    println!(
        "{n} tenants provisioned, 2 at a time: {}",
        secs(provisioning)
    );
    println!(
        "  {:.1} tenants/s; per tenant p50 {}  p95 {}  p99 {}",
        n as f64 / provisioning.as_secs_f64(),
        ms(percentile(&times, 0.50)),
        ms(percentile(&times, 0.95)),
        ms(percentile(&times, 0.99))
    );

    // 2. A no-op `strata tenants migrate`, the real binary (process start,
    // management migrations and the one query on the management schema).
    let cli = |args: &[&str]| -> anyhow::Result<(Duration, std::process::Output)> {
        let start = Instant::now();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(args)
            .env("DATABASE_URL", &url)
            .env("STRATA_DATA_DIR", &dir)
            .output()?;
        Ok((start.elapsed(), out))
    };
    let mut noop = Vec::new();
    for _ in 0..5 {
        let (took, out) = cli(&["tenants", "migrate"])?;
        anyhow::ensure!(out.status.success(), "{out:?}");
        anyhow::ensure!(String::from_utf8_lossy(&out.stdout).contains("nothing to do"));
        noop.push(took);
    }
    noop.sort();
    println!(
        "no-op `strata tenants migrate` over {n} tenants (5 runs): median {}  min {}  max {}",
        ms(noop[2]),
        ms(noop[0]),
        ms(noop[4])
    );

    // 3. A one-statement step to every tenant.
    let one = extended(&["ALTER TABLE projects ADD COLUMN archived_at timestamptz"]);
    let at4 = migrate(&pool, one, 4).await?;
    println!(
        "one-statement migration to {n} tenants, --jobs 4: {}  ({:.0} tenants/s)",
        secs(at4),
        n as f64 / at4.as_secs_f64()
    );
    let two = extended(&[
        "ALTER TABLE projects ADD COLUMN archived_at timestamptz",
        "CREATE INDEX projects_archived_at_idx ON projects (archived_at)",
    ]);
    let at1 = migrate(&pool, two, 1).await?;
    println!(
        "one-statement migration to {n} tenants, --jobs 1: {}  ({:.0} tenants/s)",
        secs(at1),
        n as f64 / at1.as_secs_f64()
    );

    // 4. The isolation check over the fleet (the binary knows only the
    // built-in template, so the library runs it against the extended one).
    let start = Instant::now();
    let mut conn = strata::db::connect_with_retry(&url, Duration::from_secs(10)).await?;
    let report = strata::tenancy::doctor::check(&mut conn, two).await?;
    let took = start.elapsed();
    anyhow::ensure!(report.is_clean(), "{:#?}", report.findings);
    println!(
        "`strata doctor` over {} tenants: {}, no finding",
        report.tenants,
        secs(took)
    );
    drop(conn);
    drop(pool);

    if std::env::var_os("STRATA_BENCH_KEEP").is_some() {
        // Left running for a closer look (psql, EXPLAIN); stop it with
        // `pg_ctl -D <dir>/pg stop` as the postgres user.
        println!("kept: {url} (data in {})", dir.display());
        std::mem::forget(pg);
        return Ok(());
    }
    tokio::task::spawn_blocking(move || pg.stop()).await??;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
