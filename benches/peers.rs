//! Strata against its peers, on one private PostgreSQL and the same data:
//! `cargo bench --bench peers [-- --tenants 10 --big 10000 --secs 10]`.
//!
//! Builds and starts the release `strata` binary on a fresh, durable
//! private cluster, provisions tenants through `createTenant`, gives each the
//! R1 data (10 users, 10 projects x 20 tasks, tasks assigned), then measures:
//!
//! - R1 (dashboard read) and W1 (`createTask`) on Strata, driven by `wrk`,
//!   a random tenant per request, each with its owner's token;
//! - R1's SQL through `pgbench` (tenant switch included): the ceiling;
//! - R1 on PostGraphile (installed from npm by `bench/peers/postgraphile`);
//! - P1 (`createTenant`): over HTTP, and in process without the password
//!   hash, cold and from the warm schema pool, against the same DDL run
//!   directly and against django-tenants (installed from PyPI by
//!   `bench/peers/django_tenants`) creating the same tables;
//! - with `--big N`: R1 again over N tenants, and PostgreSQL's memory with
//!   the pool's connections spread over all of them.
//!
//! Pinning (two cores): the load generator (wrk or pgbench) runs on CPU 0,
//! the server under test (Strata or PostGraphile) on CPU 1. Each wrk
//! workload runs twice: PostgreSQL on CPU 0 (the server alone on CPU 1),
//! and PostgreSQL on both; comparisons take each side at its best, and the
//! runs over many tenants use R1's better placement. pgbench has PostgreSQL
//! on both. The figures land in BENCHMARKS.md.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Read as _;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use clap::Parser;
use diesel_async::{AsyncPgConnection, SimpleAsyncConnection as _};
use serde_json::{Value, json};
use strata::auth::TokenKeys;
use strata::db::Pool;
use strata::db::embedded::{self, EmbeddedPostgres};
use strata::domain::sessions;
use strata::in_tenant;
use strata::tenancy::conn::TenantBinding;
use strata::tenancy::provision::{self, CreateTenant};
use strata::tenancy::schema_pool;
use strata::tenancy::template::TEMPLATE;
use uuid::Uuid;

#[derive(Debug, Parser)]
struct Args {
    /// Tenants for the R1/W1 runs (and created over HTTP, timed as P1).
    #[arg(long, default_value_t = 10)]
    tenants: usize,
    /// Also run R1 over this many tenants (0: skip).
    #[arg(long, default_value_t = 0)]
    big: usize,
    /// Seconds each load run lasts (after a warm-up of a third of it).
    #[arg(long, default_value_t = 10)]
    secs: u64,
    /// Concurrent connections of the load generator.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Tenants created for each in-process P1 measurement.
    #[arg(long, default_value_t = 40)]
    p1: usize,
    /// Distinct tenants a server connection serves before it is replaced
    /// (the server's STRATA_TENANTS_PER_CONNECTION).
    #[arg(long, default_value_t = 500)]
    tenants_per_connection: usize,
    /// Warm-up before the first R1 run over `--big` tenants, in seconds:
    /// long enough for the server's tenant lanes to meet their tenants.
    #[arg(long, default_value_t = 120)]
    big_warmup: u64,
    /// Pause of each load connection between two requests in the paced R1
    /// runs, in ms: a load below saturation, the same over 10 tenants and
    /// over `--big`, so their latencies compare per-request cost rather
    /// than queueing.
    #[arg(long, default_value_t = 50)]
    pace_ms: u64,
    /// The server's STRATA_POOL_LANES (unset: its default).
    #[arg(long)]
    lanes: Option<usize>,
    /// Skip PostGraphile and django-tenants (no npm, no PyPI).
    #[arg(long)]
    no_peers: bool,
    /// Load the R1 data, print how to reach the server, and keep it up
    /// (for profiling) until interrupted.
    #[arg(long)]
    hold: bool,
    /// cargo passes --bench; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

const ADMIN: &str = "bench-admin";
const SECRET: &str = "bench-secret";
/// The server's connections name themselves so, to tell them from ours.
const SERVER_APP: &str = "strata_under_test";

const R1_GRAPHQL: &str = "{ projects(first: 10) { edges { node { id name \
    tasks(first: 20) { edges { node { id title status assignee { id displayName } } } } } } } }";

const W1_GRAPHQL: &str = "mutation($i: CreateTaskInput!) { createTask(input: $i) { task { id } } }";

/// What R1 needs in SQL, as one statement (what pgbench runs).
const R1_SQL: &str = "SELECT p.id, p.name, t.id, t.title, t.status, u.id, u.display_name \
    FROM (SELECT id, name FROM projects ORDER BY id LIMIT 10) p \
    LEFT JOIN LATERAL (SELECT id, title, status, assignee_id FROM tasks \
        WHERE project_id = p.id ORDER BY id LIMIT 20) t ON true \
    LEFT JOIN users u ON u.id = t.assignee_id;";

/// The R1 data: the owner and 9 more users, 10 projects x 20 tasks.
const SEED: &str = "
INSERT INTO users (id, email, display_name, password_hash)
  SELECT gen_random_uuid(), 'u' || i || '@bench.test', 'User ' || i, 'x' FROM generate_series(1, 9) i;
INSERT INTO projects (id, name)
  SELECT gen_random_uuid(), 'Project ' || i FROM generate_series(1, 10) i;
INSERT INTO tasks (id, project_id, title, assignee_id)
  SELECT gen_random_uuid(), p.id, 'Task ' || i,
         (SELECT id FROM users ORDER BY id OFFSET (i % 10) LIMIT 1)
  FROM projects p, generate_series(1, 20) i;
ANALYZE users; ANALYZE projects; ANALYZE tasks;";

/// One tenant as the load generator sees it.
#[derive(Debug, Clone)]
struct BenchTenant {
    slug: String,
    role: String,
    token: String,
    project: Uuid,
}

/// Latency percentiles (ms) and throughput of one run.
#[derive(Debug, Clone, Copy, Default)]
struct Load {
    rps: f64,
    p50: f64,
    p95: f64,
    p99: f64,
    errors: u64,
    /// CPU time per request, measured around the run.
    cpu: Cpu,
}

/// Where PostgreSQL runs during a wrk run (wrk is on CPU 0, the server
/// under test on CPU 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placement {
    /// On CPU 0 with wrk: the server has CPU 1 to itself.
    Apart,
    /// On both CPUs, sharing CPU 1 with the server.
    Shared,
}

impl Placement {
    fn describe(self) -> &'static str {
        match self {
            Placement::Apart => "PostgreSQL on CPU 0",
            Placement::Shared => "PostgreSQL on both",
        }
    }
}

/// One workload run in both placements: neither is right for every
/// workload (a server-heavy read gains from a core of its own, a
/// database-heavy write from PostgreSQL having both), so each side of a
/// comparison is taken at its best.
#[derive(Debug, Clone, Copy)]
struct Placed {
    apart: Load,
    shared: Load,
}

impl Placed {
    fn run(mut f: impl FnMut(Placement) -> anyhow::Result<Load>) -> anyhow::Result<Self> {
        Ok(Placed {
            apart: f(Placement::Apart)?,
            shared: f(Placement::Shared)?,
        })
    }

    fn best(&self) -> (Placement, &Load) {
        if self.apart.rps >= self.shared.rps {
            (Placement::Apart, &self.apart)
        } else {
            (Placement::Shared, &self.shared)
        }
    }

    fn get(&self, placement: Placement) -> &Load {
        match placement {
            Placement::Apart => &self.apart,
            Placement::Shared => &self.shared,
        }
    }

    fn each(&self) -> [(Placement, &Load); 2] {
        [
            (Placement::Apart, &self.apart),
            (Placement::Shared, &self.shared),
        ]
    }
}

/// The runs over `--big` tenants.
struct Big {
    n: usize,
    runs: Placed,
    mem: BackendMemory,
    rss: u64,
    without_lanes: Load,
    paced: Load,
    /// R1 over the first tenants again, on the same server after the runs
    /// over `n`, saturated and paced, and its backends' memory meanwhile.
    again: Load,
    again_paced: Load,
    again_mem: BackendMemory,
    /// Files PostgreSQL held open after the runs over `n`.
    files: OpenFiles,
    mem_without_lanes: BackendMemory,
    growth: Vec<(usize, u64)>,
    ceiling: Load,
    ceiling_check: Load,
}

/// Sets the CPU affinity of every PostgreSQL process (the postmaster too,
/// so backends forked later inherit it).
fn pin_postgres(cpus: &str) -> anyhow::Result<()> {
    for entry in std::fs::read_dir("/proc")?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if comm.trim() == "postgres" {
            // A backend may exit meanwhile: its failure does not matter.
            let _ = Command::new("taskset")
                .args(["-p", "-c", cpus, &pid.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
    Ok(())
}

/// CPU time (ms): the server under test (strata, or node for
/// PostGraphile), PostgreSQL (backends, and those already gone), and the
/// whole machine. From /proc, so the report can say which side a
/// request's cost falls on.
#[derive(Debug, Clone, Copy, Default)]
struct Cpu {
    server: f64,
    postgres: f64,
    machine: f64,
}

impl Cpu {
    fn now() -> Self {
        // SAFETY: sysconf has no preconditions.
        let tick_ms = 1000.0 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        let mut cpu = Cpu::default();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
                continue;
            };
            let comm = &stat[open + 1..close];
            // After the command: state, ppid ... utime (12th), stime, cutime, cstime.
            let used: f64 = stat[close + 1..]
                .split_whitespace()
                .skip(11)
                .take(4)
                .filter_map(|v| v.parse::<f64>().ok())
                .sum::<f64>()
                * tick_ms;
            match comm {
                "strata" | "node" => cpu.server += used,
                "postgres" => cpu.postgres += used,
                _ => {}
            }
        }
        if let Ok(stat) = std::fs::read_to_string("/proc/stat")
            && let Some(line) = stat.lines().next()
        {
            // user nice system idle iowait irq softirq steal
            let v: Vec<f64> = line
                .split_whitespace()
                .skip(1)
                .filter_map(|v| v.parse().ok())
                .collect();
            if v.len() >= 8 {
                cpu.machine = (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) * tick_ms;
            }
        }
        cpu
    }

    /// What was used since `before`, per one of `requests`.
    fn per(self, before: Cpu, requests: f64) -> Cpu {
        let n = requests.max(1.0);
        Cpu {
            server: (self.server - before.server) / n,
            postgres: (self.postgres - before.postgres) / n,
            machine: (self.machine - before.machine) / n,
        }
    }
}

/// Percentiles (ms) of one-at-a-time timings.
#[derive(Debug, Clone, Copy, Default)]
struct Timings {
    p50: f64,
    p95: f64,
    p99: f64,
}

impl Timings {
    fn of(mut ms: Vec<f64>) -> Self {
        ms.sort_by(f64::total_cmp);
        let at = |p: f64| ms[((ms.len() as f64 - 1.0) * p).round() as usize];
        Self {
            p50: at(0.5),
            p95: at(0.95),
            p99: at(0.99),
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    ensure_tools(!args.no_peers)?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = std::env::temp_dir().join(format!("strata-peers-{}", std::process::id()));
    let opts = embedded::Options {
        data_dir: dir.join("pg"),
        ephemeral: false,
    };
    eprintln!("starting PostgreSQL in {}", dir.display());
    let pg = tokio::task::spawn_blocking(move || EmbeddedPostgres::start(&opts)).await??;
    embedded::ensure_database(&pg, "bench").await?;
    let url = pg.url("bench");
    strata::db::migrate(&url).await?;
    let result = measure(&args, root, &dir, &url).await;
    tokio::task::spawn_blocking(move || pg.stop()).await??;
    let _ = std::fs::remove_dir_all(&dir);
    print!("{}", result?);
    Ok(())
}

async fn measure(args: &Args, root: &Path, dir: &Path, url: &str) -> anyhow::Result<String> {
    // The harness's own connections provision and seed thousands of
    // tenants: recycled like the server's, or their catalog caches (hundreds
    // of MB each) make every DDL statement slower than the last.
    let (pool, _) = strata::db::build_pool_with(
        url,
        strata::db::PoolOptions {
            max_size: 4,
            tenants_per_connection: 200,
            lanes: 0,
            lane_wait: strata::db::LANE_WAIT,
        },
    );
    let mut report = String::new();
    let port = free_port()?;
    let mut server = Server::start(dir, url, port, args.tenants_per_connection, args.lanes)?;
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    server.wait_ready(&client, &base).await?;

    // P1 over HTTP: the whole createTenant request, password hash included.
    eprintln!("P1: creating {} tenants over HTTP", args.tenants);
    let mut http_ms = Vec::new();
    let mut tenants = Vec::new();
    for i in 0..args.tenants {
        let slug = format!("bench_{i:05}");
        let started = Instant::now();
        create_over_http(&client, &base, &slug).await?;
        http_ms.push(ms(started.elapsed()));
        tenants.push(load_tenant(&pool, &slug).await?);
    }
    let p1_http = Timings::of(http_ms);
    if args.hold {
        if args.big > tenants.len() {
            let password_hash = strata::auth::hash_password("bench-password".into()).await?;
            eprintln!("provisioning up to {} tenants", args.big);
            let more = provision_bulk(&pool, tenants.len(), args.big, &password_hash).await?;
            tenants.extend(more);
            settle(&pool).await?;
        }
        let lua = dir.join("strata-r1.lua");
        std::fs::write(&lua, strata_lua(&tenants, false))?;
        eprintln!(
            "holding: {base} (PostgreSQL {url}); R1 as a wrk script: {}\n\
             curl -H 'X-Tenant: {}' -H 'Authorization: Bearer {}' -H 'Content-Type: application/json' \\\n  \
             -d '{}' {base}/graphql",
            lua.display(),
            tenants[0].slug,
            tenants[0].token,
            json!({ "query": R1_GRAPHQL })
        );
        tokio::signal::ctrl_c().await?;
        server.stop();
        return Ok(String::new());
    }
    let mut hash_ms = Vec::new();
    for _ in 0..10 {
        let started = Instant::now();
        strata::auth::hash_password("bench-password".into()).await?;
        hash_ms.push(ms(started.elapsed()));
    }
    let hash = Timings::of(hash_ms);

    // P1 in process, the hash left out: what createTenant's transaction
    // costs, against the same DDL sent directly.
    eprintln!(
        "P1: {} tenants in process, and the same DDL directly",
        args.p1
    );
    let password_hash = strata::auth::hash_password("bench-password".into()).await?;
    let (p1_cold, p1_ddl) = cold_and_direct(&pool, url, args.p1, &password_hash).await?;
    eprintln!("P1: {} tenants from the warm schema pool", args.p1);
    schema_pool::fill(&pool, TEMPLATE, args.p1)
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let p1_warm = provision_many(&pool, "warm", args.p1, &password_hash).await?;
    schema_pool::fill(&pool, TEMPLATE, args.p1)
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let mut warm_http = Vec::new();
    for i in 0..args.p1 {
        let started = Instant::now();
        create_over_http(&client, &base, &format!("p1http_{i:05}")).await?;
        warm_http.push(ms(started.elapsed()));
    }
    let p1_warm_http = Timings::of(warm_http);

    // R1 on Strata.
    eprintln!("R1 on Strata over {} tenants", tenants.len());
    check_r1(&client, &base, &tenants[0]).await?;
    let lua = dir.join("strata-r1.lua");
    let r1_script = strata_lua(&tenants, false);
    std::fs::write(&lua, &r1_script)?;
    let (r1s, pg_mem_small) = sampled(&pool, || {
        Placed::run(|p| wrk(&base, &lua, args, "/graphql", p))
    })
    .await?;
    let (placement, r1) = r1s.best();
    let r1 = *r1;
    eprintln!("R1 on Strata over {} tenants, paced", tenants.len());
    let paced_lua = dir.join("strata-r1-paced.lua");
    std::fs::write(&paced_lua, paced(r1_script.clone(), args.pace_ms))?;
    let r1_paced = wrk(&base, &paced_lua, args, "/graphql", placement)?;
    let files_small = OpenFiles::now();
    let strata_rss = server.peak_rss_kib()?;
    // The ceiling: R1's SQL through pgbench, tenant switch included.
    eprintln!("R1's SQL through pgbench");
    let ceiling = pgbench_r1(&pool, url, dir, &tenants, args, false).await?;
    eprintln!("R1's SQL with the credential check through pgbench");
    let ceiling_check = pgbench_r1(&pool, url, dir, &tenants, args, true).await?;

    // PostGraphile.
    let postgraphile = if args.no_peers {
        None
    } else {
        eprintln!("R1 on PostGraphile");
        Some(postgraphile_r1(root, dir, url, &tenants, args).await?)
    };
    // W1 last of the 10-tenant loads: the reads above all see the same data.
    eprintln!("W1 on Strata");
    std::fs::write(&lua, strata_lua(&tenants, true))?;
    let w1s = Placed::run(|p| wrk(&base, &lua, args, "/graphql", p))?;

    let django = if args.no_peers {
        None
    } else {
        eprintln!("P1 on django-tenants");
        Some(django_p1(root, dir, url, args.p1)?)
    };

    // Ten thousand tenants.
    let mut big = None;
    if args.big > tenants.len() {
        eprintln!("provisioning up to {} tenants", args.big);
        let more = provision_bulk(&pool, tenants.len(), args.big, &password_hash).await?;
        let mut all = tenants.clone();
        all.extend(more);
        // Settle what provisioning churned (the catalogs' dead rows and
        // statistics, dirty buffers) so autovacuum and the checkpointer do
        // not run during one of the runs below and not the other.
        settle(&pool).await?;
        let script = strata_lua(&all, false);
        std::fs::write(&lua, &script)?;
        // The first run warms up long enough for every tenant lane to have
        // met its tenants (steady state); the second finds them warm.
        eprintln!(
            "R1 on Strata over {} tenants ({} s warm-up)",
            all.len(),
            args.big_warmup
        );
        let (runs, mem) = sampled(&pool, || {
            Placed::run(|p| {
                let warm = match p {
                    Placement::Apart => args.big_warmup,
                    Placement::Shared => args.secs / 3,
                };
                wrk_after(&base, &lua, args, "/graphql", p, warm)
            })
        })
        .await?;
        eprintln!("R1 on Strata over {} tenants, paced", all.len());
        std::fs::write(&paced_lua, paced(script, args.pace_ms))?;
        let paced_over_n = wrk(&base, &paced_lua, args, "/graphql", placement)?;
        let files = OpenFiles::now();
        // The first tenants again, on the same server with every connection
        // it opened for the runs over N still open: from the runs over N
        // only the tenants differ, not how many backends the machine holds
        // nor the files they keep open, which this machine's own agent makes
        // cost time (BENCHMARKS.md, "The agent's stalls grow with open
        // files").
        eprintln!("R1 on Strata over {} tenants again", tenants.len());
        let again_lua = dir.join("strata-r1-again.lua");
        std::fs::write(&again_lua, &r1_script)?;
        let (again, again_mem) = sampled(&pool, || {
            wrk(&base, &again_lua, args, "/graphql", placement)
        })
        .await?;
        std::fs::write(&paced_lua, paced(r1_script.clone(), args.pace_ms))?;
        let again_paced = wrk(&base, &paced_lua, args, "/graphql", placement)?;
        let rss = server.peak_rss_kib()?;
        eprintln!("one connection through {} tenants", all.len());
        let growth = memory_per_tenant_touched(url, &all).await?;
        // The same with no tenant lanes, as before them.
        server.stop();
        eprintln!("R1 over {} tenants without tenant lanes", all.len());
        server = Server::start(dir, url, port, args.tenants_per_connection, Some(0))?;
        server.wait_ready(&client, &base).await?;
        let (without_lanes, mem_without_lanes) = sampled(&pool, || {
            wrk_after(&base, &lua, args, "/graphql", placement, args.big_warmup)
        })
        .await?;
        eprintln!("R1's SQL through pgbench over {} tenants", all.len());
        let ceiling_big = pgbench_r1(&pool, url, dir, &all, args, false).await?;
        eprintln!("the same with the credential check");
        let ceiling_check_big = pgbench_r1(&pool, url, dir, &all, args, true).await?;
        big = Some(Big {
            n: all.len(),
            runs,
            mem,
            rss,
            without_lanes,
            paced: paced_over_n,
            again,
            again_paced,
            again_mem,
            files,
            mem_without_lanes,
            growth,
            ceiling: ceiling_big,
            ceiling_check: ceiling_check_big,
        });
    }
    server.stop();

    writeln!(
        report,
        "\nStrata vs peers: {} tenants, {} connections, {} s per run; wrk/pgbench on CPU 0, server on CPU 1\n\
         PostgreSQL: {}\n",
        args.tenants,
        args.connections,
        args.secs,
        cluster_settings(url).await?
    )?;
    writeln!(
        report,
        "| what | throughput | p50 | p95 | p99 | errors |\n| --- | --- | --- | --- | --- | --- |"
    )?;
    let row = |r: &mut String, name: &str, l: &Load| {
        writeln!(
            r,
            "| {name} | {:.0} req/s | {:.2} ms | {:.2} ms | {:.2} ms | {} |",
            l.rps, l.p50, l.p95, l.p99, l.errors
        )
    };
    for (p, l) in r1s.each() {
        row(&mut report, &format!("R1 Strata, {}", p.describe()), l)?;
    }
    let paced_name = |n: usize| {
        format!(
            "R1 Strata over {n} tenants, paced ({} connections, {} ms between requests), {}",
            args.connections,
            args.pace_ms,
            placement.describe()
        )
    };
    row(&mut report, &paced_name(args.tenants), &r1_paced)?;
    let again_name = |paced: bool| {
        format!(
            "R1 Strata over {} tenants again, after the runs over {}, same server{}, {}",
            args.tenants,
            args.big,
            if paced { ", paced" } else { "" },
            placement.describe()
        )
    };
    row(
        &mut report,
        "R1 pgbench (ceiling), PostgreSQL on both",
        &ceiling,
    )?;
    row(
        &mut report,
        "R1 pgbench with the credential check, PostgreSQL on both",
        &ceiling_check,
    )?;
    if let Some((mode, ls)) = &postgraphile {
        for (p, l) in ls.each() {
            row(
                &mut report,
                &format!("R1 PostGraphile ({mode}), {}", p.describe()),
                l,
            )?;
        }
    }
    for (p, l) in w1s.each() {
        row(
            &mut report,
            &format!("W1 Strata createTask, {}", p.describe()),
            l,
        )?;
    }
    if let Some(b) = &big {
        let n = b.n;
        for (p, l) in b.runs.each() {
            row(
                &mut report,
                &format!("R1 Strata over {n} tenants, {}", p.describe()),
                l,
            )?;
        }
        row(&mut report, &paced_name(n), &b.paced)?;
        row(&mut report, &again_name(false), &b.again)?;
        row(&mut report, &again_name(true), &b.again_paced)?;
        row(
            &mut report,
            &format!(
                "R1 Strata over {n} tenants, no tenant lanes, {}",
                placement.describe()
            ),
            &b.without_lanes,
        )?;
        row(
            &mut report,
            &format!("R1 pgbench over {n} tenants (connections never recycled)"),
            &b.ceiling,
        )?;
        row(
            &mut report,
            &format!("R1 pgbench with the credential check over {n} tenants"),
            &b.ceiling_check,
        )?;
    }
    // Where each request's CPU goes: with every core busy, throughput is
    // bounded by the cores over the machine's CPU per request.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    writeln!(
        report,
        "\n| CPU per request | server | PostgreSQL | the rest (load generator, kernel) | machine | bound on {cores} cores |\n\
         | --- | --- | --- | --- | --- | --- |"
    )?;
    let crow = |r: &mut String, name: &str, l: &Load| {
        let c = l.cpu;
        writeln!(
            r,
            "| {name} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {:.0} req/s |",
            c.server,
            c.postgres,
            (c.machine - c.server - c.postgres).max(0.0),
            c.machine,
            cores as f64 * 1000.0 / c.machine.max(0.001)
        )
    };
    for (p, l) in r1s.each() {
        crow(&mut report, &format!("R1 Strata, {}", p.describe()), l)?;
    }
    crow(&mut report, &paced_name(args.tenants), &r1_paced)?;
    crow(&mut report, "R1 pgbench (no server)", &ceiling)?;
    crow(
        &mut report,
        "R1 pgbench with the credential check",
        &ceiling_check,
    )?;
    if let Some((mode, ls)) = &postgraphile {
        for (p, l) in ls.each() {
            crow(
                &mut report,
                &format!("R1 PostGraphile ({mode}), {}", p.describe()),
                l,
            )?;
        }
    }
    for (p, l) in w1s.each() {
        crow(
            &mut report,
            &format!("W1 Strata createTask, {}", p.describe()),
            l,
        )?;
    }
    if let Some(b) = &big {
        let n = b.n;
        for (p, l) in b.runs.each() {
            crow(
                &mut report,
                &format!("R1 Strata over {n} tenants, {}", p.describe()),
                l,
            )?;
        }
        crow(&mut report, &paced_name(n), &b.paced)?;
        crow(&mut report, &again_name(false), &b.again)?;
        crow(&mut report, &again_name(true), &b.again_paced)?;
        crow(
            &mut report,
            &format!("R1 Strata over {n} tenants, no tenant lanes"),
            &b.without_lanes,
        )?;
        crow(
            &mut report,
            &format!("R1 pgbench over {n} tenants"),
            &b.ceiling,
        )?;
        crow(
            &mut report,
            &format!("R1 pgbench with the credential check over {n} tenants"),
            &b.ceiling_check,
        )?;
    }
    writeln!(
        report,
        "\n| P1 (one at a time) | p50 | p95 | p99 |\n| --- | --- | --- | --- |"
    )?;
    let trow = |r: &mut String, name: &str, t: &Timings| {
        writeln!(
            r,
            "| {name} | {:.1} ms | {:.1} ms | {:.1} ms |",
            t.p50, t.p95, t.p99
        )
    };
    trow(
        &mut report,
        "createTenant over HTTP (hash included)",
        &p1_http,
    )?;
    trow(&mut report, "argon2id hash alone", &hash)?;
    trow(&mut report, "createTenant without the hash, cold", &p1_cold)?;
    trow(&mut report, "the same DDL sent directly", &p1_ddl)?;
    trow(
        &mut report,
        "createTenant without the hash, warm pool",
        &p1_warm,
    )?;
    trow(
        &mut report,
        "createTenant over HTTP, warm pool (hash included)",
        &p1_warm_http,
    )?;
    if let Some(d) = &django {
        trow(&mut report, "django-tenants, same tables, no hash", d)?;
    }
    writeln!(
        report,
        "\n| target | figure | target |\n| --- | --- | --- |"
    )?;
    if let Some((_, pgr)) = &postgraphile {
        let (at, pgr) = pgr.best();
        writeln!(
            report,
            "| R1 throughput vs PostGraphile (each at its best: Strata {}, PostGraphile {}) | {:.2}x | >= 4x |",
            placement.describe(),
            at.describe(),
            r1.rps / pgr.rps
        )?;
    }
    writeln!(
        report,
        "| R1 throughput vs the pgbench ceiling (Strata {}) | {:.2}x | >= 0.5x |",
        placement.describe(),
        r1.rps / ceiling.rps
    )?;
    writeln!(
        report,
        "| createTenant p50 without the hash | {:.1} ms | <= 25 ms |",
        p1_cold.p50
    )?;
    writeln!(
        report,
        "| createTenant p50 / same DDL direct | {:.2}x | <= 1.5x |",
        p1_cold.p50 / p1_ddl.p50
    )?;
    writeln!(
        report,
        "| createTenant p50 without the hash, warm pool | {:.1} ms | <= 25 ms |",
        p1_warm.p50
    )?;
    if let Some(d) = &django {
        writeln!(
            report,
            "| P1 vs django-tenants (p50), cold | {:.1}x faster | >= 3x |",
            d.p50 / p1_cold.p50
        )?;
        writeln!(
            report,
            "| P1 vs django-tenants (p50), warm pool | {:.1}x faster | >= 10x |",
            d.p50 / p1_warm.p50
        )?;
    }
    if let Some(b) = &big {
        let n = b.n;
        let (at, l) = b.runs.best();
        writeln!(
            report,
            "| R1 p99 over {n} tenants vs over {}, each at its best (Strata {} / {}) | {:.2}x | <= 1.25x |",
            args.tenants,
            at.describe(),
            placement.describe(),
            l.p99 / r1.p99
        )?;
        for (p, l) in b.runs.each() {
            let small = r1s.get(p);
            writeln!(
                report,
                "| the same, both with {} | {:.2}x | |",
                p.describe(),
                l.p99 / small.p99
            )?;
        }
        writeln!(
            report,
            "| R1 p99 over {n} tenants vs over {}, paced ({} ms between requests, {}) | {:.2}x | <= 1.25x |",
            args.tenants,
            args.pace_ms,
            placement.describe(),
            b.paced.p99 / r1_paced.p99
        )?;
        writeln!(
            report,
            "| the same with no tenant lanes ({}) | {:.2}x | |",
            placement.describe(),
            b.without_lanes.p99 / r1.p99
        )?;
        writeln!(
            report,
            "| the same for pgbench: PostgreSQL alone, p99 over {n} tenants vs over {} | {:.2}x | |",
            args.tenants,
            b.ceiling.p99 / ceiling.p99
        )?;
        writeln!(
            report,
            "| the same with the credential check: p99 over {n} tenants vs over {} | {:.2}x | |",
            args.tenants,
            b.ceiling_check.p99 / ceiling_check.p99
        )?;
        let over = b.runs.get(placement);
        writeln!(
            report,
            "| R1 p99 over {n} tenants vs over {} again on the same server after them, {} | {:.2}x | <= 1.25x |",
            args.tenants,
            placement.describe(),
            over.p99 / b.again.p99
        )?;
        writeln!(
            report,
            "| the same, paced | {:.2}x | <= 1.25x |",
            b.paced.p99 / b.again_paced.p99
        )?;
        writeln!(
            report,
            "| PostgreSQL memory, Strata's connections, during R1 over {n} | {} | bounded |",
            b.mem.describe()
        )?;
        writeln!(
            report,
            "| PostgreSQL memory, Strata's connections, during R1 over {} again | {} | |",
            args.tenants,
            b.again_mem.describe()
        )?;
        writeln!(
            report,
            "| files PostgreSQL held open after R1 over {n} | {} | |",
            b.files.describe()
        )?;
        writeln!(
            report,
            "| PostgreSQL memory, the same with no tenant lanes | {} | |",
            b.mem_without_lanes.describe()
        )?;
        let steps: Vec<String> = b
            .growth
            .iter()
            .map(|(n, kib)| format!("{n}: {:.1} MB", *kib as f64 / 1024.0))
            .collect();
        writeln!(
            report,
            "| one backend's private memory after R1 in N distinct tenants | {} | |",
            steps.join(", ")
        )?;
        writeln!(
            report,
            "| Strata peak RSS (through the {n}-tenant run) | {:.1} MB | <= 64 MB |",
            b.rss as f64 / 1024.0
        )?;
    }
    writeln!(
        report,
        "| PostgreSQL memory, Strata's connections, during R1 over {} | {} | |",
        args.tenants,
        pg_mem_small.describe()
    )?;
    writeln!(
        report,
        "| files PostgreSQL held open after R1 over {} | {} | |",
        args.tenants,
        files_small.describe()
    )?;
    writeln!(
        report,
        "| Strata peak RSS under R1 | {:.1} MB | <= 64 MB |",
        strata_rss as f64 / 1024.0
    )?;
    Ok(report)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// wrk and pgbench (and node, npm and python's venv for the peers),
/// installing what is missing from Debian's packages.
fn ensure_tools(peers: bool) -> anyhow::Result<()> {
    let venv = || {
        Command::new("python3")
            .args(["-c", "import ensurepip, venv"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    // (tool, whether it is here, the Debian packages that bring it)
    let mut wanted = vec![
        ("wrk", have("wrk"), "wrk"),
        ("pgbench", have("pgbench"), "postgresql-contrib"),
        ("taskset", have("taskset"), "util-linux"),
    ];
    if peers {
        wanted.push(("node", have("node"), "nodejs"));
        wanted.push(("npm", have("npm"), "npm"));
        wanted.push((
            "python3 -m venv",
            have("python3") && venv(),
            "python3 python3-venv",
        ));
    }
    let missing: Vec<&str> = wanted.iter().filter(|w| !w.1).map(|w| w.2).collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("installing {}", missing.join(" "));
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q {}",
            missing.join(" ")
        ))
        .status()?
        .success();
    ensure!(
        ok,
        "could not install {} (needs root and Debian's packages; --no-peers skips node and python)",
        missing.join(" ")
    );
    for (tool, _, _) in wanted {
        let here = match tool {
            "python3 -m venv" => have("python3") && venv(),
            t => have(t),
        };
        ensure!(here, "{tool} is still missing after installing its package");
    }
    Ok(())
}

/// The release server, pinned to CPU 1.
struct Server {
    child: Child,
}

impl Server {
    /// Starts the server with no warm schema pool (P1 measures it apart)
    /// and `tenants_per_connection` (0: connections serve any number).
    fn start(
        dir: &Path,
        url: &str,
        port: u16,
        tenants_per_connection: usize,
        lanes: Option<usize>,
    ) -> anyhow::Result<Self> {
        let mut cmd = Command::new("taskset");
        if let Some(lanes) = lanes {
            cmd.env("STRATA_POOL_LANES", lanes.to_string());
        }
        let child = cmd
            .args(["-c", "1"])
            .arg(env!("CARGO_BIN_EXE_strata"))
            .args(["serve", "--no-demo"])
            .env(
                "DATABASE_URL",
                format!("{url}?application_name={SERVER_APP}"),
            )
            .env("STRATA_LISTEN", format!("127.0.0.1:{port}"))
            .env("STRATA_DATA_DIR", dir.join("strata"))
            .env("STRATA_ADMIN_TOKEN", ADMIN)
            .env("STRATA_TOKEN_SECRET", SECRET)
            .env("STRATA_TOKEN_TTL_SECS", "86400")
            .env("STRATA_SCHEMA_POOL", "0")
            .env(
                "STRATA_TENANTS_PER_CONNECTION",
                tenants_per_connection.to_string(),
            )
            .env("STRATA_LOG", "warn")
            .stdin(Stdio::null())
            .spawn()
            .context("starting strata")?;
        Ok(Self { child })
    }

    async fn wait_ready(&mut self, client: &reqwest::Client, base: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("strata exited: {status}");
            }
            if let Ok(r) = client.get(format!("{base}/readyz")).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            ensure!(Instant::now() < deadline, "strata not ready after 30 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Peak resident set size so far (VmHWM), KiB.
    fn peak_rss_kib(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .context("no VmHWM")
    }

    fn stop(&mut self) {
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

async fn create_over_http(client: &reqwest::Client, base: &str, slug: &str) -> anyhow::Result<()> {
    let query = "mutation($i: CreateTenantInput!) { createTenant(input: $i) { tenant { id } } }";
    let input = json!({ "i": {
        "slug": slug, "name": "Bench", "plan": "enterprise",
        "owner": { "email": "owner@bench.test", "password": "bench-password", "displayName": "Owner" }
    }});
    let resp: Value = client
        .post(format!("{base}/graphql"))
        .bearer_auth(ADMIN)
        .json(&json!({ "query": query, "variables": input }))
        .send()
        .await?
        .json()
        .await?;
    ensure!(resp["errors"].is_null(), "createTenant failed: {resp}");
    Ok(())
}

/// Seeds a provisioned tenant with the R1 data and signs its owner in
/// (a session row and a token, as `login` makes them).
async fn load_tenant(pool: &Pool, slug: &str) -> anyhow::Result<BenchTenant> {
    let tenant = {
        let mut conn = pool.get().await?;
        strata::tenancy::tenants::find_by_slug(&mut conn, slug)
            .await?
            .context("tenant just created is missing")?
    };
    let bind = TenantBinding::of(&tenant.slug, tenant.db_role.as_deref())
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let (owner, session, project) = in_tenant!(pool, &bind, |conn| {
        conn.batch_execute(SEED).await?;
        let owner = strata::domain::users::find_for_login(conn, "owner@bench.test")
            .await?
            .ok_or_else(|| strata::error::AppError::internal(anyhow::anyhow!("no owner")))?
            .0;
        let (session, _) = sessions::start(conn, owner, chrono::Duration::days(1), None).await?;
        let project = first_project(conn).await?;
        Ok((owner, session.id, project))
    })
    .map_err(|e| anyhow::anyhow!("seeding {slug}: {e:?}"))?;
    let (token, _) = TokenKeys::new(SECRET, 86400)
        .issue(owner, tenant.id, slug, session)
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    Ok(BenchTenant {
        slug: slug.to_owned(),
        role: bind.role.as_str().to_owned(),
        token,
        project,
    })
}

async fn first_project(conn: &mut AsyncPgConnection) -> diesel::QueryResult<Uuid> {
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    use strata::db::schema::tenant::projects;
    projects::table
        .select(projects::id)
        .order(projects::id)
        .first(conn)
        .await
}

/// Creates `n` tenants in process without hashing (one hash made before),
/// one at a time, timing each provisioning transaction.
async fn provision_many(
    pool: &Pool,
    prefix: &str,
    n: usize,
    password_hash: &str,
) -> anyhow::Result<Timings> {
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        times.push(provision_one(pool, &format!("p1{prefix}_{i:05}"), password_hash).await?);
    }
    Ok(Timings::of(times))
}

/// One in-process `createTenant` transaction (checked input, hash given), in ms.
async fn provision_one(pool: &Pool, slug: &str, password_hash: &str) -> anyhow::Result<f64> {
    let checked = provision::check(pool, &tenant_input(slug))
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let started = Instant::now();
    provision::create_checked(pool, TEMPLATE, checked, password_hash)
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    Ok(ms(started.elapsed()))
}

/// `n` cold `createTenant` transactions and `n` runs of the same DDL sent
/// directly, taken in turns, so both meet the same disk, checkpoints and
/// catalog size (one block after the other let a checkpoint or the
/// catalog's growth land on one side only).
async fn cold_and_direct(
    pool: &Pool,
    url: &str,
    n: usize,
    password_hash: &str,
) -> anyhow::Result<(Timings, Timings)> {
    use diesel_async::AsyncConnection as _;
    let mut conn = AsyncPgConnection::establish(url).await?;
    let (mut cold, mut direct) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..n {
        cold.push(provision_one(pool, &format!("p1cold_{i:05}"), password_hash).await?);
        direct.push(direct_ddl(&mut conn, i).await?);
    }
    Ok((Timings::of(cold), Timings::of(direct)))
}

fn tenant_input(slug: &str) -> CreateTenant {
    CreateTenant {
        slug: slug.into(),
        name: "Bench".into(),
        plan: "enterprise".into(),
        owner_email: "owner@bench.test".into(),
        owner_password: "bench-password".into(),
        owner_display_name: "Owner".into(),
    }
}

/// Tenants `from..to`, provisioned in process two at a time (no HTTP, one
/// hash for all), seeded and signed in.
async fn provision_bulk(
    pool: &Pool,
    from: usize,
    to: usize,
    password_hash: &str,
) -> anyhow::Result<Vec<BenchTenant>> {
    let started = Instant::now();
    let mut out = Vec::with_capacity(to - from);
    let mut next = from;
    while next < to {
        let batch: Vec<usize> = (next..(next + 2).min(to)).collect();
        next += batch.len();
        let made = futures::future::join_all(batch.iter().map(|i| async move {
            let slug = format!("bench_{i:05}");
            let checked = provision::check(pool, &tenant_input(&slug))
                .await
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
            provision::create_checked(pool, TEMPLATE, checked, password_hash)
                .await
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
            load_tenant(pool, &slug).await
        }))
        .await;
        for t in made {
            out.push(t?);
        }
        if next % 500 < 2 {
            eprintln!(
                "  {next} tenants ({:.0} s)",
                started.elapsed().as_secs_f64()
            );
        }
    }
    Ok(out)
}

/// Settles what provisioning churned (the catalogs' dead rows and
/// statistics, dirty buffers) so autovacuum and the checkpointer do not run
/// during one of the runs that follow and not another.
async fn settle(pool: &Pool) -> anyhow::Result<()> {
    eprintln!("settling the catalogs");
    let mut conn = pool.get().await?;
    conn.batch_execute(
        "VACUUM ANALYZE pg_catalog.pg_class, pg_catalog.pg_attribute, \
         pg_catalog.pg_type, pg_catalog.pg_index, pg_catalog.pg_constraint, \
         pg_catalog.pg_depend, pg_catalog.pg_namespace, pg_catalog.pg_attrdef, \
         pg_catalog.pg_default_acl, pg_catalog.pg_authid, pg_catalog.pg_auth_members, \
         management.tenants",
    )
    .await?;
    // Apart: VACUUM refuses to run in a multi-statement string.
    conn.batch_execute("CHECKPOINT").await?;
    Ok(())
}

/// The SQL a provisioning transaction runs, sent directly on `conn` as one
/// batch (schema, template, role, commit), in ms; then dropped again.
async fn direct_ddl(conn: &mut AsyncPgConnection, i: usize) -> anyhow::Result<f64> {
    let template: String = TEMPLATE
        .iter()
        .map(|s| s.sql)
        .collect::<Vec<_>>()
        .join(";\n");
    let schema = format!("\"ddl_{i:05}\"");
    let role = format!("\"ddl_{i:05}_{:x}\"", std::process::id());
    let sql = format!(
        "BEGIN; CREATE SCHEMA {schema}; SET LOCAL search_path TO {schema}; {template};
         CREATE ROLE {role} NOLOGIN NOINHERIT; GRANT {role} TO CURRENT_USER;
         GRANT USAGE ON SCHEMA {schema} TO {role};
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role};
         GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {role};
         ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {role};
         ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT USAGE, SELECT ON SEQUENCES TO {role};
         COMMIT;"
    );
    let started = Instant::now();
    conn.batch_execute(&sql).await?;
    let took = ms(started.elapsed());
    conn.batch_execute(&format!(
        "DROP SCHEMA {schema} CASCADE; DROP OWNED BY {role}; DROP ROLE {role}"
    ))
    .await?;
    Ok(took)
}

async fn check_r1(client: &reqwest::Client, base: &str, t: &BenchTenant) -> anyhow::Result<()> {
    let resp: Value = client
        .post(format!("{base}/graphql"))
        .header("X-Tenant", &t.slug)
        .bearer_auth(&t.token)
        .json(&json!({ "query": R1_GRAPHQL }))
        .send()
        .await?
        .json()
        .await?;
    ensure!(resp["errors"].is_null(), "R1 failed: {resp}");
    let projects = resp["data"]["projects"]["edges"]
        .as_array()
        .context("edges")?;
    ensure!(projects.len() == 10, "R1 gave {} projects", projects.len());
    let tasks = projects[0]["node"]["tasks"]["edges"]
        .as_array()
        .context("tasks")?;
    ensure!(tasks.len() == 20, "R1 gave {} tasks", tasks.len());
    ensure!(
        !tasks[0]["node"]["assignee"].is_null(),
        "task without assignee"
    );
    Ok(())
}

fn lua_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// The wrk script for Strata: a random tenant per request, its owner's
/// token; R1 or (`write`) W1.
fn strata_lua(tenants: &[BenchTenant], write: bool) -> String {
    let mut s = String::from("local tenants = {\n");
    for t in tenants {
        let body = if write {
            json!({ "query": W1_GRAPHQL, "variables": { "i": {
                "projectId": t.project.to_string(), "title": "Bench task" } } })
        } else {
            json!({ "query": R1_GRAPHQL })
        };
        let _ = writeln!(
            s,
            "  {{ {}, {}, {} }},",
            lua_str(&t.slug),
            lua_str(&format!("Bearer {}", t.token)),
            lua_str(&body.to_string())
        );
    }
    s.push_str(
        "}\nrequest = function()\n  local t = tenants[math.random(#tenants)]\n  \
         return wrk.format(\"POST\", nil, { [\"Content-Type\"] = \"application/json\", \
         [\"X-Tenant\"] = t[1], [\"Authorization\"] = t[2] }, t[3])\nend\n",
    );
    s.push_str(LUA_ERRORS);
    s.push_str(LUA_DONE);
    s
}

/// `lua` with each connection pausing `ms` between a reply and its next
/// request (wrk's `delay`).
fn paced(mut lua: String, ms: u64) -> String {
    let _ = writeln!(lua, "delay = function() return {ms} end");
    lua
}

/// Counts answers that are not a 200 with data and no errors. `bad` is a
/// global: `done` reads it from each thread with `get`, which sees globals
/// only (as a `local` it read nil, and no reply with errors was counted).
const LUA_ERRORS: &str = r#"
bad = 0
response = function(status, headers, body)
  if status ~= 200 or string.find(body, '"errors"', 1, true) then bad = bad + 1 end
end
function setup(thread) table.insert(threads, thread) end
threads = threads or {}
"#;

const LUA_DONE: &str = r#"
done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.status + summary.errors.timeout
  for _, t in ipairs(threads) do errors = errors + (t:get("bad") or 0) end
  io.write(string.format('BENCH {"requests":%d,"us":%d,"errors":%d,"p50":%d,"p95":%d,"p99":%d}\n',
    summary.requests, summary.duration, errors,
    latency:percentile(50), latency:percentile(95), latency:percentile(99)))
end
"#;

/// Runs wrk on CPU 0: a warm-up of a third of the time, then the run.
fn wrk(
    base: &str,
    lua: &Path,
    args: &Args,
    path: &str,
    placement: Placement,
) -> anyhow::Result<Load> {
    wrk_after(base, lua, args, path, placement, (args.secs / 3).max(1))
}

/// [`wrk`] after a warm-up of `warm` seconds.
fn wrk_after(
    base: &str,
    lua: &Path,
    args: &Args,
    path: &str,
    placement: Placement,
    warm: u64,
) -> anyhow::Result<Load> {
    let run = |secs: u64| -> anyhow::Result<String> {
        let out = Command::new("taskset")
            .args(["-c", "0", "wrk", "-t", "1"])
            .arg(format!("-c{}", args.connections))
            .arg(format!("-d{secs}s"))
            .arg("--timeout")
            .arg("10s")
            .arg("-s")
            .arg(lua)
            .arg(format!("{base}{path}"))
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        ensure!(
            out.status.success(),
            "wrk failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(text)
    };
    if placement == Placement::Apart {
        pin_postgres("0")?;
    }
    let runs = run(warm.max(1)).and_then(|_| {
        let before = Cpu::now();
        let text = run(args.secs)?;
        Ok((before, text, Cpu::now()))
    });
    pin_postgres("0-1")?;
    let (before, text, after) = runs?;
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("BENCH "))
        .with_context(|| format!("no summary from wrk:\n{text}"))?;
    let v: Value = serde_json::from_str(line)?;
    let f = |k: &str| v[k].as_f64().unwrap_or(0.0);
    Ok(Load {
        cpu: after.per(before, f("requests")),
        rps: f("requests") / (f("us") / 1e6),
        p50: f("p50") / 1000.0,
        p95: f("p95") / 1000.0,
        p99: f("p99") / 1000.0,
        errors: v["errors"].as_u64().unwrap_or(0),
    })
}

/// R1's SQL through pgbench on CPU 0: per transaction a random tenant
/// (`BEGIN`, the binding as Strata sends it, the R1 statement, `COMMIT`).
/// The tenants come from a table (pgbench takes at most 128 scripts), read
/// by the binding statement itself, so a transaction is still 4 statements.
async fn pgbench_r1(
    pool: &Pool,
    url: &str,
    dir: &Path,
    tenants: &[BenchTenant],
    args: &Args,
    check: bool,
) -> anyhow::Result<Load> {
    let mut values = String::new();
    for (i, t) in tenants.iter().enumerate() {
        let sep = if i == 0 { "" } else { "," };
        write!(values, "{sep}({i}, '\"tenant_{}\"', '{}')", t.slug, t.role)?;
    }
    {
        let mut conn = pool.get().await?;
        conn.batch_execute(&format!(
            "DROP TABLE IF EXISTS public.bench_tenants; \
             CREATE TABLE public.bench_tenants (i int PRIMARY KEY, schema text NOT NULL, \
               role text NOT NULL, user_id uuid, session_id uuid); \
             INSERT INTO public.bench_tenants (i, schema, role) VALUES {values};"
        ))
        .await?;
        // The owner's session, as the credential check reads it; 500
        // tenants a transaction, or their locks overflow the lock table.
        for from in (0..tenants.len()).step_by(500) {
            conn.batch_execute(&format!(
                "DO $$ DECLARE r record; BEGIN \
                   FOR r IN SELECT i, schema FROM public.bench_tenants \
                            WHERE i >= {from} AND i < {} LOOP \
                     EXECUTE format('UPDATE public.bench_tenants b SET user_id = s.user_id, \
                       session_id = s.id FROM (SELECT user_id, id FROM %s.sessions \
                       ORDER BY created_at LIMIT 1) s WHERE b.i = %s', r.schema, r.i); \
                   END LOOP; END $$",
                from + 500
            ))
            .await?;
        }
        conn.batch_execute("ANALYZE public.bench_tenants").await?;
    }
    // With `check`, the request's credential check too, as Strata sends it
    // on every request (the walk of the user's roles, its second statement,
    // only follows a change to the tenant's roles).
    let check_sql = if check {
        let (state, _walk) = strata::domain::permissions::session_access_bound_sql();
        let sql = state
            .replace("$1", ":u")
            .replace("$2", ":s")
            .replace("$3", ":u");
        format!("{sql};\n")
    } else {
        String::new()
    };
    let script = dir.join("pgbench-r1.sql");
    std::fs::write(
        &script,
        format!(
            "\\set t random(0, {})\nBEGIN;\n\
             SELECT set_config('search_path', schema, true) AS p, set_config('role', role, true) AS r, \
             user_id AS u, session_id AS s FROM public.bench_tenants WHERE i = :t \\gset\n\
             {check_sql}{R1_SQL}\nCOMMIT;\n",
            tenants.len() - 1
        ),
    )?;
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", "0", "pgbench", "-n", "-M", "prepared", "-j", "1"])
        .arg(format!("-c{}", args.connections))
        .arg("-f")
        .arg(&script);
    let warm = cmd.get_args().map(|a| a.to_owned()).collect::<Vec<_>>();
    let status = Command::new("taskset")
        .args(&warm[..])
        .arg(format!("-T{}", (args.secs / 3).max(1)))
        .arg(url)
        .stdout(Stdio::null())
        .status()?;
    ensure!(status.success(), "pgbench warm-up failed");
    let logs = dir.join("pgbench-log");
    let _ = std::fs::remove_dir_all(&logs);
    std::fs::create_dir_all(&logs)?;
    let before = Cpu::now();
    let out = cmd
        .arg(format!("-T{}", args.secs))
        .arg("-l")
        .arg(format!("--log-prefix={}", logs.join("tx").display()))
        .arg(url)
        .current_dir(&logs)
        .output()?;
    let after = Cpu::now();
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "pgbench failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tps: f64 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("tps ="))
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no tps in pgbench output:\n{text}"))?;
    let mut latencies = Vec::new();
    for entry in std::fs::read_dir(&logs)? {
        let mut body = String::new();
        std::fs::File::open(entry?.path())?.read_to_string(&mut body)?;
        // client_id transaction_no time_us script_no epoch epoch_us
        latencies.extend(
            body.lines()
                .filter_map(|l| l.split_whitespace().nth(2)?.parse::<f64>().ok())
                .map(|us| us / 1000.0),
        );
    }
    ensure!(!latencies.is_empty(), "pgbench wrote no transaction log");
    let cpu = after.per(before, latencies.len() as f64);
    let t = Timings::of(latencies);
    Ok(Load {
        cpu,
        rps: tps,
        p50: t.p50,
        p95: t.p95,
        p99: t.p99,
        errors: 0,
    })
}

/// R1 on PostGraphile, pinned to CPU 1. Returns how it ran (tenant
/// switching per request, or one schema) and the load figures.
async fn postgraphile_r1(
    root: &Path,
    dir: &Path,
    url: &str,
    tenants: &[BenchTenant],
    args: &Args,
) -> anyhow::Result<(String, Placed)> {
    let peer = root.join("bench/peers/postgraphile");
    let port = free_port()?;
    let install = root.join("target/bench/postgraphile");
    let mut child = Command::new("taskset")
        .args(["-c", "1"])
        .arg(peer.join("start.sh"))
        .arg(url)
        .arg(port.to_string())
        .arg(format!("tenant_{}", tenants[0].slug))
        .arg(&install)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .context("starting PostGraphile")?;
    let base = format!("http://127.0.0.1:{port}");
    let body = std::fs::read_to_string(peer.join("r1.json"))?;
    let switching = std::fs::read_to_string(peer.join("MODE"))
        .unwrap_or_default()
        .trim()
        == "switching";
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    let probe: Value = loop {
        if let Some(status) = child.try_wait()? {
            bail!("PostGraphile exited: {status}");
        }
        let sent = client
            .post(format!("{base}/graphql"))
            .header("Content-Type", "application/json")
            .header("X-Tenant", &tenants[0].slug)
            .body(body.clone())
            .send()
            .await;
        if let Ok(r) = sent
            && let Ok(v) = r.json::<Value>().await
        {
            break v;
        }
        ensure!(
            Instant::now() < deadline,
            "PostGraphile not answering after 300 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    ensure!(probe["errors"].is_null(), "PostGraphile R1 failed: {probe}");
    let served: &[BenchTenant] = if switching { tenants } else { &tenants[..1] };
    let mut lua = String::from("local tenants = {\n");
    for t in served {
        let _ = writeln!(lua, "  {},", lua_str(&t.slug));
    }
    let _ = write!(
        lua,
        "}}\nlocal body = {}\nrequest = function()\n  local t = tenants[math.random(#tenants)]\n  \
         return wrk.format(\"POST\", nil, {{ [\"Content-Type\"] = \"application/json\", \
         [\"X-Tenant\"] = t }}, body)\nend\n",
        lua_str(body.trim())
    );
    lua.push_str(LUA_ERRORS);
    lua.push_str(LUA_DONE);
    let path = dir.join("postgraphile-r1.lua");
    std::fs::write(&path, lua)?;
    let load = Placed::run(|p| wrk(&base, &path, args, "/graphql", p));
    // SAFETY: signalling our own child by pid (start.sh execs node).
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
    let mode = if switching {
        format!("tenant per request over {}", served.len())
    } else {
        "one tenant schema".to_owned()
    };
    Ok((mode, load?))
}

/// P1 on django-tenants: `count` tenants with the same tables, no hashing.
fn django_p1(root: &Path, dir: &Path, url: &str, count: usize) -> anyhow::Result<Timings> {
    let peer = root.join("bench/peers/django_tenants");
    let out = Command::new(peer.join("run.sh"))
        .arg(root.join("target/bench/django-venv"))
        .arg(count.to_string())
        .env("DATABASE_URL", url)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .context("running django-tenants")?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "django-tenants failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = text
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .with_context(|| format!("no JSON from django-tenants:\n{text}"))?;
    let v: Value = serde_json::from_str(line)?;
    let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    Ok(Timings {
        p50: f("p50_ms"),
        p95: f("p95_ms"),
        p99: f("p99_ms"),
    })
}

/// The built-in cluster's settings that decide how many tenants stay warm.
async fn cluster_settings(url: &str) -> anyhow::Result<String> {
    use diesel_async::AsyncConnection as _;
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Settings {
        #[diesel(sql_type = diesel::sql_types::Text)]
        settings: String,
    }
    let mut conn = AsyncPgConnection::establish(url).await?;
    let Settings { settings } = diesel::sql_query(
        "SELECT string_agg(name || '=' || current_setting(name), ', ' ORDER BY name) AS settings \
         FROM pg_settings WHERE name IN ('shared_buffers', 'max_files_per_process', 'max_connections')",
    )
    .get_result(&mut conn)
    .await?;
    Ok(settings)
}

/// Runs R1's statements (binding, credential check's tables, R1) on one
/// fresh connection, tenant after tenant, and reads the backend's private
/// memory after 1, 10, 100, 1,000 ... tenants: what each tenant's catalog
/// entries cost a connection that never lets go of them.
async fn memory_per_tenant_touched(
    url: &str,
    tenants: &[BenchTenant],
) -> anyhow::Result<Vec<(usize, u64)>> {
    use diesel_async::AsyncConnection as _;
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Pid {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        pid: i32,
    }
    let mut conn = AsyncPgConnection::establish(url).await?;
    let Pid { pid } = diesel::sql_query("SELECT pg_backend_pid() AS pid")
        .get_result(&mut conn)
        .await?;
    let mut marks = vec![0usize];
    let mut next = 1;
    while next <= tenants.len() {
        marks.push(next);
        next *= 10;
    }
    if marks.last() != Some(&tenants.len()) {
        marks.push(tenants.len());
    }
    let mut out = vec![(0, private_kib(pid)?)];
    for (i, t) in tenants.iter().enumerate() {
        conn.batch_execute(&format!(
            "BEGIN; SELECT set_config('search_path', '\"tenant_{}\"', true), set_config('role', '{}', true); \
             SELECT count(*) FROM sessions, role_assignments, roles, role_permissions WHERE false; \
             {R1_SQL} COMMIT;",
            t.slug, t.role
        ))
        .await?;
        if marks.contains(&(i + 1)) {
            out.push((i + 1, private_kib(pid)?));
        }
    }
    Ok(out)
}

fn private_kib(pid: i32) -> anyhow::Result<u64> {
    // RssAnon is a counter the kernel keeps: reading it costs nothing.
    // smaps_rollup walked every backend's page tables twice a second, which
    // over 10,000 tenants (backends mapping much of shared memory) took a
    // fifth of R1's throughput; and it counted shared buffers that one
    // backend alone had touched as private.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .context("no RssAnon in /proc/<pid>/status")
}

/// Open file descriptors of every PostgreSQL process on the machine.
#[derive(Debug, Clone, Copy, Default)]
struct OpenFiles {
    processes: usize,
    total: usize,
    largest: usize,
}

impl OpenFiles {
    /// Counted once after a run, not sampled during it: listing every
    /// backend's descriptors is itself work that grows with them.
    fn now() -> Self {
        let mut out = Self::default();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            if comm.trim() != "postgres" {
                continue;
            }
            // A backend may exit meanwhile: it no longer holds any.
            let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
                continue;
            };
            let n = fds.count();
            out.processes += 1;
            out.total += n;
            out.largest = out.largest.max(n);
        }
        out
    }

    fn describe(&self) -> String {
        format!(
            "{} in {} processes (largest {})",
            self.total, self.processes, self.largest
        )
    }
}

/// Private memory of the server's PostgreSQL backends (or the peak of
/// each figure over a run's samples).
#[derive(Debug, Clone, Copy, Default)]
struct BackendMemory {
    backends: usize,
    private_kib: u64,
    max_kib: u64,
}

impl BackendMemory {
    fn peak(self, other: Self) -> Self {
        Self {
            backends: self.backends.max(other.backends),
            private_kib: self.private_kib.max(other.private_kib),
            max_kib: self.max_kib.max(other.max_kib),
        }
    }

    fn describe(&self) -> String {
        format!(
            "peak {:.1} MB private in {} backends (largest {:.1} MB)",
            self.private_kib as f64 / 1024.0,
            self.backends,
            self.max_kib as f64 / 1024.0
        )
    }
}

/// Runs `load` (blocking: a load generator) while sampling the server's
/// backends' private memory twice a second, and returns it with the peak
/// of those samples: measured after the run, it would miss the connections
/// recycled (or timed out) before the end.
async fn sampled<T>(
    pool: &Pool,
    load: impl FnOnce() -> anyhow::Result<T>,
) -> anyhow::Result<(T, BackendMemory)> {
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let sampler = tokio::spawn({
        let pool = pool.clone();
        async move {
            let mut peak = BackendMemory::default();
            loop {
                if let Ok(now) = pg_backend_memory(&pool).await {
                    peak = peak.peak(now);
                }
                tokio::select! {
                    _ = &mut stopped => return peak,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        }
    });
    // The sampler runs on the runtime's workers while this thread waits on
    // the load generator.
    let out = load();
    let _ = stop.send(());
    let peak = sampler.await?;
    Ok((out?, peak))
}

/// Sums the anonymous memory (RssAnon) of every backend serving the server
/// under test (told apart by application_name), from /proc.
async fn pg_backend_memory(pool: &Pool) -> anyhow::Result<BackendMemory> {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Pid {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        pid: i32,
    }
    let mut conn = pool.get().await?;
    let pids: Vec<Pid> =
        diesel::sql_query("SELECT pid FROM pg_stat_activity WHERE application_name = $1")
            .bind::<diesel::sql_types::Text, _>(SERVER_APP)
            .load(&mut *conn)
            .await?;
    let mut out = BackendMemory::default();
    let mut per: HashMap<i32, u64> = HashMap::new();
    for Pid { pid } in pids {
        if let Ok(kib) = private_kib(pid) {
            per.insert(pid, kib);
        }
    }
    out.backends = per.len();
    out.private_kib = per.values().sum();
    out.max_kib = per.values().copied().max().unwrap_or(0);
    Ok(out)
}
