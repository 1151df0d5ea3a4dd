//! What the per-tenant database role costs a request:
//! `cargo bench --bench tenant_role [-- TENANTS]`.
//!
//! Starts a private PostgreSQL in a temporary directory, provisions TENANTS
//! tenants (default 50) with the real provisioning code, gives each the R1
//! dashboard data (10 users, 10 projects x 20 tasks), then runs pgbench
//! (8 clients, 2 threads, prepared statements, each transaction in a random
//! tenant) over four scripts, each run three times, interleaved:
//!
//! - `path`: `BEGIN; set_config(search_path); <R1 query>; COMMIT` (the
//!   binding as it was before tenant roles);
//! - `path+role`: the same with `set_config('role', ...)` in the same
//!   statement (what every tenant transaction does now);
//! - `path+role+access`: plus the per-request credential check as it ran
//!   in issue 3 (one more transaction: session, user and permissions in
//!   one query);
//! - `+access, 1 stmt`: the check as it runs now, one statement with the
//!   tenant's schema in the table names, outside any transaction.
//!
//! Prints the median throughput and mean latency of each, and the cost of
//! the role switch and of the check per request.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection as _};
use strata::db::embedded::{self, EmbeddedPostgres};
use strata::tenancy::provision::{self, CreateTenant};
use strata::tenancy::template::TEMPLATE;

const R1: &str = "SELECT p.id, p.name, t.id, t.title, t.status, u.display_name \
    FROM (SELECT id, name FROM projects ORDER BY id LIMIT 10) p \
    LEFT JOIN LATERAL (SELECT id, title, status, assignee_id FROM tasks \
        WHERE project_id = p.id ORDER BY id LIMIT 20) t ON true \
    LEFT JOIN users u ON u.id = t.assignee_id;";

const ACCESS: &str = "WITH RECURSIVE granted (id, parent_id) AS ( \
    SELECT r.id, r.parent_id FROM {s}role_assignments a JOIN {s}roles r ON r.id = a.role_id \
    WHERE a.user_id = '{user}' AND (a.expires_at IS NULL OR a.expires_at > now()) \
    UNION SELECT r.id, r.parent_id FROM {s}roles r JOIN granted g ON r.id = g.parent_id) \
    SELECT EXISTS (SELECT 1 FROM {s}users WHERE id = '{user}' AND disabled_at IS NULL), \
    EXISTS (SELECT 1 FROM {s}sessions WHERE id = '{session}' AND revoked_at IS NULL AND expires_at > now()), \
    ARRAY(SELECT DISTINCT p.permission FROM {s}role_permissions p JOIN granted g ON g.id = p.role_id);";

const SEED: &str = "
INSERT INTO users (id, email, display_name, password_hash)
  SELECT gen_random_uuid(), 'u' || i || '@bench.test', 'User ' || i, 'x' FROM generate_series(1, 9) i;
INSERT INTO projects (id, name)
  SELECT gen_random_uuid(), 'Project ' || i FROM generate_series(1, 10) i;
INSERT INTO tasks (id, project_id, title, assignee_id)
  SELECT gen_random_uuid(), p.id, 'Task ' || i,
         (SELECT id FROM users ORDER BY id OFFSET (i % 10) LIMIT 1)
  FROM projects p, generate_series(1, 20) i;
INSERT INTO sessions (id, user_id, expires_at)
  SELECT gen_random_uuid(), id, now() + interval '1 day' FROM users WHERE email LIKE 'owner@%';
ANALYZE;";

struct Run {
    tps: f64,
    latency_ms: f64,
}

fn pgbench(url: &str, dir: &Path, kind: &str, tenants: usize) -> anyhow::Result<Run> {
    let mut cmd = Command::new("pgbench");
    cmd.args(["-n", "-c", "8", "-j", "2", "-T", "8", "-M", "prepared"]);
    for t in 0..tenants {
        cmd.arg("-f").arg(dir.join(format!("{kind}-{t}.sql")));
    }
    cmd.arg(url);
    let out = cmd.output()?;
    anyhow::ensure!(
        out.status.success(),
        "pgbench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let find = |prefix: &str| -> anyhow::Result<f64> {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("no '{prefix}' in pgbench output:\n{text}"))
    };
    Ok(Run {
        tps: find("tps =")?,
        latency_ms: find("latency average =")?,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let tenants: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(50);
    let dir = std::env::temp_dir().join(format!("strata-bench-role-{}", std::process::id()));
    let opts = embedded::Options {
        data_dir: dir.join("pg"),
        ephemeral: true,
    };
    let pg = tokio::task::spawn_blocking(move || EmbeddedPostgres::start(&opts)).await??;
    embedded::ensure_database(&pg, "bench").await?;
    let url = pg.url("bench");
    strata::db::migrate(&url).await?;
    let (pool, _) = strata::db::build_pool(&url, 4);
    let scripts = dir.join("scripts");
    std::fs::create_dir_all(&scripts)?;
    let mut conn = AsyncPgConnection::establish(&url).await?;
    for t in 0..tenants {
        let made = provision::create_tenant(
            &pool,
            TEMPLATE,
            CreateTenant {
                slug: format!("bench_{t:05}"),
                name: "Bench".into(),
                plan: "enterprise".into(),
                owner_email: "owner@bench.test".into(),
                owner_password: "bench-password".into(),
                owner_display_name: "Owner".into(),
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("provisioning: {e:?}"))?;
        let schema = format!("\"{}\"", made.tenant.schema_name);
        let role = made.tenant.db_role.clone().unwrap_or_default();
        conn.batch_execute(&format!(
            "SET search_path TO {schema}; {SEED} RESET search_path"
        ))
        .await?;
        #[derive(diesel::QueryableByName)]
        struct Ids {
            #[diesel(sql_type = diesel::sql_types::Text)]
            user_id: String,
            #[diesel(sql_type = diesel::sql_types::Text)]
            session_id: String,
        }
        let ids: Ids = diesel_async::RunQueryDsl::get_result(
            diesel::sql_query(format!(
                "SELECT user_id::text AS user_id, id::text AS session_id FROM {schema}.sessions LIMIT 1"
            )),
            &mut conn,
        )
        .await?;
        let path = format!("SELECT set_config('search_path', '{schema}', true)");
        let with_role = format!("{path}, set_config('role', '{role}', true)");
        let access_in = |prefix: &str| {
            ACCESS
                .replace("{s}", prefix)
                .replace("{user}", &ids.user_id)
                .replace("{session}", &ids.session_id)
        };
        let access = access_in("");
        let access_qualified = access_in(&format!("{schema}."));
        let write = |kind: &str, body: String| {
            std::fs::write(scripts.join(format!("{kind}-{t}.sql")), body)
        };
        write("path", format!("BEGIN;\n{path};\n{R1}\nCOMMIT;\n"))?;
        write("role", format!("BEGIN;\n{with_role};\n{R1}\nCOMMIT;\n"))?;
        write(
            "access",
            format!(
                "BEGIN;\n{with_role};\n{access}\nCOMMIT;\nBEGIN;\n{with_role};\n{R1}\nCOMMIT;\n"
            ),
        )?;
        write(
            "access1",
            format!("{access_qualified}\nBEGIN;\n{with_role};\n{R1}\nCOMMIT;\n"),
        )?;
    }
    drop(conn);
    let kinds = [
        ("path", "path only"),
        ("role", "path+role"),
        ("access", "path+role+access"),
        ("access1", "+access, 1 stmt"),
    ];
    let mut results: Vec<(Vec<f64>, Vec<f64>)> = vec![(Vec::new(), Vec::new()); kinds.len()];
    for _round in 0..3 {
        for (i, (kind, _)) in kinds.iter().enumerate() {
            let run = pgbench(&url, &scripts, kind, tenants)?;
            results[i].0.push(run.tps);
            results[i].1.push(run.latency_ms);
        }
    }
    let mut report = String::new();
    writeln!(
        report,
        "R1 transactions over {tenants} tenants, pgbench -c 8 -j 2 -T 8 -M prepared, median of 3:"
    )?;
    let medians: Vec<(f64, f64)> = results
        .into_iter()
        .map(|(tps, lat)| (median(tps), median(lat)))
        .collect();
    for ((_, label), (tps, lat)) in kinds.iter().zip(&medians) {
        writeln!(
            report,
            "  {label:<18} {tps:>8.0} tps  {lat:>6.3} ms mean latency"
        )?;
    }
    let per_tx_us = |tps: f64| 1e6 * 8.0 / tps;
    writeln!(
        report,
        "role switch: {:+.1} us per request ({:+.1}% throughput)",
        per_tx_us(medians[1].0) - per_tx_us(medians[0].0),
        100.0 * (medians[1].0 / medians[0].0 - 1.0)
    )?;
    writeln!(
        report,
        "credential check: {:+.1} us per request ({:+.1}% throughput vs path+role)",
        per_tx_us(medians[2].0) - per_tx_us(medians[1].0),
        100.0 * (medians[2].0 / medians[1].0 - 1.0)
    )?;
    writeln!(
        report,
        "credential check as one statement outside a transaction: {:+.1} us per request ({:+.1}% throughput vs path+role)",
        per_tx_us(medians[3].0) - per_tx_us(medians[1].0),
        100.0 * (medians[3].0 / medians[1].0 - 1.0)
    )?;
    print!("{report}");
    tokio::task::spawn_blocking(move || pg.stop()).await??;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
