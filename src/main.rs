//! The `strata` command: serve, migrate, tenants, print-schema.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use strata::config::{Config, Secrets};
use strata::db::embedded::{self, EmbeddedPostgres};
use strata::tenancy::lifecycle::{self, Action};
use strata::tenancy::provision::{self, CreateTenant};
use strata::tenancy::template::TEMPLATE;
use strata::tenancy::transfer;
use strata::{App, db, demo};

/// Multi-tenant GraphQL API server: one PostgreSQL schema per tenant.
#[derive(Debug, Parser)]
#[command(name = "strata", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the server (starting the built-in PostgreSQL when DATABASE_URL is unset).
    Serve {
        #[command(flatten)]
        config: Config,
        /// Do not seed the demo tenants, even on a fresh built-in database.
        #[arg(long)]
        no_demo: bool,
    },
    /// Applies the management schema's migrations, then exits.
    Migrate {
        #[command(flatten)]
        config: Config,
    },
    /// Checks that tenants are kept apart: rows and schemas match, each
    /// schema is what its template version builds, nothing references
    /// another schema, each tenant role has rights on its own schema only.
    /// Exits non-zero on any finding.
    Doctor {
        #[command(flatten)]
        config: Config,
    },
    /// Creates and lists tenants.
    Tenants {
        #[command(subcommand)]
        command: TenantsCommand,
    },
    /// Writes the GraphQL schema (SDL).
    PrintSchema {
        /// Where to write it; `-` for standard output.
        #[arg(long, default_value = "schema.graphql")]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum TenantsCommand {
    /// Creates a tenant, its schema and its owner.
    Create {
        #[command(flatten)]
        config: Config,
        /// Lowercase letter first, then lowercase letters, digits or `_`; 2 to 40 characters.
        slug: String,
        /// Display name (defaults to the slug).
        #[arg(long)]
        name: Option<String>,
        /// Plan code.
        #[arg(long, default_value = "free")]
        plan: String,
        /// The owner's sign-in email.
        #[arg(long)]
        owner_email: String,
        /// The owner's password; unset: one is generated and printed.
        #[arg(long, env = "STRATA_OWNER_PASSWORD", hide_env_values = true)]
        owner_password: Option<String>,
        /// The owner's display name.
        #[arg(long, default_value = "Owner")]
        owner_name: String,
    },
    /// Lists tenants.
    List {
        #[command(flatten)]
        config: Config,
    },
    /// Suspends a tenant (its API answers TENANT_SUSPENDED).
    Suspend(Change),
    /// Resumes a suspended tenant.
    Resume(Change),
    /// Soft-deletes a tenant (restorable during the retention period).
    Delete(Change),
    /// Restores a deleted tenant.
    Restore(Change),
    /// Drops a deleted tenant for good: schema, data, role and row.
    Purge {
        #[command(flatten)]
        change: Change,
        /// The slug again, to confirm.
        #[arg(long)]
        confirm: String,
    },
    /// Writes one tenant's schema and data to a single file (JSON Lines),
    /// from one consistent snapshot. The file holds password hashes: keep it safe.
    Export {
        #[command(flatten)]
        config: Config,
        /// The tenant (any status).
        slug: String,
        /// The file to write (never overwritten; mode 0600); unset:
        /// `<slug>-<UTC time>.strata-export.jsonl`. It appears only once complete.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Creates a new tenant from an export file. Users sign in with their
    /// passwords; sessions, API keys and open invitations are revoked.
    Import {
        #[command(flatten)]
        config: Config,
        /// The export file.
        file: PathBuf,
        /// The new tenant's slug.
        #[arg(long)]
        slug: String,
        /// The new tenant's name; unset: the name in the file.
        #[arg(long)]
        name: Option<String>,
    },
    /// Creates a new tenant as a copy of another, inside the database.
    Clone {
        #[command(flatten)]
        config: Config,
        /// The tenant to copy.
        from: String,
        /// The new tenant's slug.
        to: String,
        /// The new tenant's name; unset: the source's.
        #[arg(long)]
        name: Option<String>,
    },
    /// Brings every tenant to the latest template version, one transaction
    /// per tenant. Safe to stop and run again; exits non-zero if any tenant failed.
    Migrate {
        #[command(flatten)]
        config: Config,
        /// Tenants migrated at once.
        #[arg(long, default_value_t = 4)]
        jobs: usize,
        /// List what each tenant would get, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// A lifecycle change from the command line.
#[derive(Debug, clap::Args)]
struct Change {
    #[command(flatten)]
    config: Config,
    /// The tenant.
    slug: String,
    /// Why (recorded with who and when).
    #[arg(long)]
    reason: String,
}

/// mimalloc: async-graphql allocates per field resolved, and under R1 load
/// glibc's malloc took about a quarter of the server's CPU (BENCHMARKS.md).
/// It also hands argon2's 19 MiB working memory (one per password hashed or
/// checked) back to the OS after the hash, which glibc kept once its mmap
/// threshold had risen: a server that provisioned a few tenants held
/// 100-200 MB.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    init_tracing();
    match run(Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("STRATA_LOG")
        .unwrap_or_else(|_| EnvFilter::new("strata=info,tower_http=warn,warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { config, no_demo } => serve(config, no_demo).await,
        Command::Migrate { config } => {
            let (url, pg) = open_database(&config).await?;
            let (applied, roles) = migrate(&url).await?;
            println!(
                "management schema up to date ({} migration(s) applied, {roles} tenant role(s) created)",
                applied.len()
            );
            stop(pg).await
        }
        Command::Tenants { command } => tenants(command).await,
        Command::Doctor { config } => {
            let (url, pg) = open_database(&config).await?;
            let result = doctor(&url).await;
            stop(pg).await?;
            result
        }
        Command::PrintSchema { out } => {
            let sdl = strata::graphql::sdl();
            if out.as_os_str() == "-" {
                print!("{sdl}");
            } else {
                std::fs::write(&out, sdl).with_context(|| format!("writing {}", out.display()))?;
                eprintln!("wrote {}", out.display());
            }
            Ok(())
        }
    }
}

/// The database URL to use, starting the built-in PostgreSQL when none is set.
async fn open_database(config: &Config) -> anyhow::Result<(String, Option<EmbeddedPostgres>)> {
    if let Some(url) = &config.database_url {
        return Ok((url.clone(), None));
    }
    let opts = embedded::Options {
        data_dir: config.data_dir.clone(),
        ephemeral: false,
    };
    let pg = tokio::task::spawn_blocking(move || EmbeddedPostgres::start(&opts)).await??;
    embedded::ensure_database(&pg, "strata").await?;
    let url = pg.url("strata");
    Ok((url, Some(pg)))
}

async fn stop(pg: Option<EmbeddedPostgres>) -> anyhow::Result<()> {
    if let Some(pg) = pg {
        tokio::task::spawn_blocking(move || pg.stop()).await??;
    }
    Ok(())
}

/// Brings the management schema up to date, then gives tenants made before
/// per-tenant database roles existed their role.
async fn migrate(url: &str) -> anyhow::Result<(Vec<String>, usize)> {
    let applied = db::migrate(url).await?;
    let mut conn = db::connect_with_retry(url, std::time::Duration::from_secs(30)).await?;
    let roles = strata::tenancy::db_role::backfill(&mut conn).await?;
    if roles > 0 {
        tracing::info!(roles, "created database roles for existing tenants");
    }
    Ok((applied, roles))
}

async fn app_for(config: &Config, url: &str) -> anyhow::Result<Arc<App>> {
    migrate(url).await?;
    let secrets = Secrets::load(config)?;
    let pool = db::build_pool_with(
        url,
        db::PoolOptions {
            max_size: config.pool_size,
            tenants_per_connection: config.tenants_per_connection,
            lanes: config.pool_lanes,
            lane_wait: db::LANE_WAIT,
        },
    );
    App::new(config.clone(), secrets, pool)
}

async fn serve(config: Config, no_demo: bool) -> anyhow::Result<()> {
    let (url, pg) = open_database(&config).await?;
    let result = serve_on(&config, &url, pg.as_ref(), no_demo).await;
    let stopped = stop(pg).await;
    result.and(stopped)
}

async fn serve_on(
    config: &Config,
    url: &str,
    pg: Option<&EmbeddedPostgres>,
    no_demo: bool,
) -> anyhow::Result<()> {
    let app = app_for(config, url).await?;
    let demo_marker = config.data_dir.join("demo-seeded");
    // Seeded once per built-in data directory, into an empty database.
    let seed = pg.is_some() && !no_demo && !demo_marker.exists() && {
        let mut conn = app.pool.get().await.context("connecting")?;
        strata::tenancy::tenants::count(&mut conn).await? == 0
    };
    if seed {
        demo::seed(&app)
            .await
            .map_err(|e| anyhow::anyhow!("seeding the demo tenants: {e:?}"))?;
        std::fs::write(&demo_marker, "acme globex\n")?;
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| {
            format!(
                "listening on {} (set STRATA_LISTEN to use another address)",
                config.listen
            )
        })?;
    let addr = listener.local_addr()?;
    println!("Strata is running");
    println!("  GraphiQL:     http://{addr}/");
    println!("  GraphQL:      http://{addr}/graphql");
    match pg {
        Some(pg) => println!(
            "  PostgreSQL:   built-in, data in {} (log: {})",
            config.data_dir.join("pg").display(),
            pg.log_path.display()
        ),
        None => println!("  PostgreSQL:   DATABASE_URL"),
    }
    if app.secrets.admin_token_generated {
        println!(
            "  Admin token:  {}  (kept in {})",
            app.secrets.admin_token,
            config.data_dir.join("admin-token").display()
        );
    }
    if pg.is_some() && demo_marker.exists() {
        println!("  Demo logins (send X-Tenant: <tenant>):");
        for (slug, email, password) in demo::LOGINS {
            println!("    {slug:<8} {email} / {password}");
        }
    }
    let feed = match config.change_feed.as_deref() {
        Some("off") => None,
        feed => Some(tokio::spawn(strata::tenancy::changes::follow(
            feed.unwrap_or(url).to_owned(),
            app.tenants.clone(),
        ))),
    };
    if config.schema_pool > 0 {
        tokio::spawn(strata::tenancy::schema_pool::keep_filled(
            app.pool.clone(),
            app.template,
            config.schema_pool,
            app.schema_pool_wake.clone(),
        ));
    }
    axum::serve(listener, strata::build_router(app))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serving HTTP")?;
    eprintln!("shutting down");
    // Before PostgreSQL stops, so the feed does not report it as lost.
    if let Some(feed) = feed {
        feed.abort();
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

async fn tenants(command: TenantsCommand) -> anyhow::Result<()> {
    match command {
        TenantsCommand::Create {
            config,
            slug,
            name,
            plan,
            owner_email,
            owner_password,
            owner_name,
        } => {
            let (url, pg) = open_database(&config).await?;
            let app = app_for(&config, &url).await?;
            let generated = owner_password.is_none();
            let password = owner_password.unwrap_or_else(strata::config::random_secret);
            let made = provision::create_tenant(
                &app.pool,
                app.template,
                CreateTenant {
                    name: name.unwrap_or_else(|| slug.clone()),
                    slug,
                    plan,
                    owner_email,
                    owner_password: password.clone(),
                    owner_display_name: owner_name,
                },
            )
            .await;
            drop(app);
            let result = match made {
                Ok(made) => {
                    println!(
                        "created tenant {} (schema {}, template version {}, plan {})",
                        made.tenant.slug,
                        made.tenant.schema_name,
                        made.tenant.template_version,
                        made.tenant.plan_code
                    );
                    if generated {
                        println!("owner {} password: {password}", made.owner.email);
                    } else {
                        println!("owner {}", made.owner.email);
                    }
                    Ok(())
                }
                Err(e) => Err(anyhow::anyhow!("{} ({})", e, e.code())),
            };
            stop(pg).await?;
            result
        }
        TenantsCommand::Suspend(c) => lifecycle_change(c, Some(Action::Suspend), None).await,
        TenantsCommand::Resume(c) => lifecycle_change(c, Some(Action::Resume), None).await,
        TenantsCommand::Delete(c) => lifecycle_change(c, Some(Action::Delete), None).await,
        TenantsCommand::Restore(c) => lifecycle_change(c, Some(Action::Restore), None).await,
        TenantsCommand::Purge { change, confirm } => {
            lifecycle_change(change, None, Some(confirm)).await
        }
        TenantsCommand::Migrate {
            config,
            jobs,
            dry_run,
        } => {
            let (url, pg) = open_database(&config).await?;
            let result = migrate_fleet(&url, jobs, dry_run).await;
            stop(pg).await?;
            result
        }
        TenantsCommand::Export { config, slug, out } => {
            let (url, pg) = open_database(&config).await?;
            let result = export(&url, &slug, out).await;
            stop(pg).await?;
            result
        }
        TenantsCommand::Import {
            config,
            file,
            slug,
            name,
        } => {
            let (url, pg) = open_database(&config).await?;
            let result = import(&url, &file, &slug, name.as_deref()).await;
            stop(pg).await?;
            result
        }
        TenantsCommand::Clone {
            config,
            from,
            to,
            name,
        } => {
            let (url, pg) = open_database(&config).await?;
            let result = async {
                migrate(&url).await?;
                let (pool, _) = db::build_pool(&url, 1);
                let moved =
                    transfer::clone_tenant(&pool, TEMPLATE, &from, &to, name.as_deref(), "cli")
                        .await
                        .map_err(|e| anyhow::anyhow!("{e} ({})", e.code()))?;
                println!("created tenant {} as a copy of {from}", moved.tenant.slug);
                print_rows(&moved.rows);
                Ok(())
            }
            .await;
            stop(pg).await?;
            result
        }
        TenantsCommand::List { config } => {
            let (url, pg) = open_database(&config).await?;
            let (pool, _) = db::build_pool(&url, 1);
            let rows = {
                let mut conn = pool.get().await.context("connecting")?;
                let mut all = Vec::new();
                let mut after: Option<String> = None;
                loop {
                    let (page, more) =
                        strata::tenancy::tenants::list(&mut conn, 500, after.as_deref()).await?;
                    after = page.last().map(|t| t.slug.clone());
                    all.extend(page);
                    if !more {
                        break;
                    }
                }
                all
            };
            drop(pool);
            println!(
                "{:<40} {:<10} {:<13} {:>7}  name",
                "slug", "status", "plan", "version"
            );
            for t in &rows {
                println!(
                    "{:<40} {:<10} {:<13} {:>7}  {}",
                    t.slug, t.status, t.plan_code, t.template_version, t.name
                );
            }
            println!("{} tenant(s)", rows.len());
            stop(pg).await?;
            Ok(())
        }
    }
}

/// `strata doctor`.
async fn doctor(url: &str) -> anyhow::Result<()> {
    // Checks only: it neither migrates nor creates missing tenant roles,
    // which would hide what it is meant to find.
    {
        let (pool, _) = db::build_pool(url, 1);
        if !db::is_ready(&pool, &db::latest_migration_version()?).await {
            anyhow::bail!(
                "the management schema is not at this binary's version (or the database is unreachable); run `strata migrate` first"
            );
        }
    }
    let mut conn = db::connect_with_retry(url, std::time::Duration::from_secs(30)).await?;
    let report = strata::tenancy::doctor::check(&mut conn, TEMPLATE).await?;
    for finding in &report.findings {
        println!("{finding}");
    }
    println!(
        "checked {} tenant(s) and {} tenant schema(s): {} finding(s)",
        report.tenants,
        report.schemas,
        report.findings.len()
    );
    if !report.is_clean() {
        anyhow::bail!("the database does not keep its tenants apart; see the findings above");
    }
    Ok(())
}

/// `strata tenants export`: written next to its destination, renamed into
/// place once whole, so a half-written file never carries the final name.
async fn export(url: &str, slug: &str, out: Option<PathBuf>) -> anyhow::Result<()> {
    migrate(url).await?;
    let out = out.unwrap_or_else(|| {
        PathBuf::from(format!(
            "{slug}-{}.strata-export.jsonl",
            chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
        ))
    });
    let mut partial = out.clone().into_os_string();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    if out.exists() {
        anyhow::bail!(
            "{} exists; choose another --out (an export never overwrites a file)",
            out.display()
        );
    }
    // Only the owner may read it: it holds password hashes and all the data.
    let file = {
        use std::os::unix::fs::OpenOptionsExt as _;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&partial)
            .with_context(|| {
                format!(
                    "creating {} (remove a stale one left by a crash)",
                    partial.display()
                )
            })?
    };
    let mut writer = std::io::BufWriter::new(file);
    let (pool, _) = db::build_pool(url, 1);
    let result = transfer::export(
        &pool,
        TEMPLATE,
        slug,
        &mut writer,
        "cli",
        &out.display().to_string(),
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e} ({})", e.code()))
    .and_then(|moved| {
        let file = writer.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        // A link, unlike a rename, fails if the name was taken meanwhile.
        std::fs::hard_link(&partial, &out)
            .with_context(|| format!("linking {} to {}", partial.display(), out.display()))?;
        std::fs::remove_file(&partial)?;
        Ok(moved)
    });
    match result {
        Ok(moved) => {
            println!(
                "exported tenant {} (template version {}) to {}",
                moved.tenant.slug,
                moved.tenant.template_version,
                out.display()
            );
            print_rows(&moved.rows);
            Ok(())
        }
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            Err(e)
        }
    }
}

/// `strata tenants import`.
async fn import(
    url: &str,
    file: &std::path::Path,
    slug: &str,
    name: Option<&str>,
) -> anyhow::Result<()> {
    migrate(url).await?;
    let input = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let mut input = std::io::BufReader::new(input);
    let (pool, _) = db::build_pool(url, 1);
    let moved = transfer::import(
        &pool,
        TEMPLATE,
        &mut input,
        &file.display().to_string(),
        slug,
        name,
        "cli",
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e} ({})", e.code()))?;
    println!(
        "created tenant {} (template version {}) from {}",
        moved.tenant.slug,
        moved.tenant.template_version,
        file.display()
    );
    print_rows(&moved.rows);
    Ok(())
}

fn print_rows(rows: &[(String, u64)]) {
    let total: u64 = rows.iter().map(|(_, n)| n).sum();
    for (table, n) in rows {
        println!("  {table:<20} {n:>9} row(s)");
    }
    println!("  {:<20} {total:>9} row(s)", "total");
}

/// `strata tenants migrate`.
async fn migrate_fleet(url: &str, jobs: usize, dry_run: bool) -> anyhow::Result<()> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use strata::tenancy::fleet::{self, Outcome};
    use strata::tenancy::template::latest_version;

    migrate(url).await?;
    let latest = latest_version(TEMPLATE);
    let jobs = jobs.clamp(1, 64);
    let (pool, _) = db::build_pool(url, u32::try_from(jobs).unwrap_or(64) + 1);
    let behind = {
        let mut conn = pool.get().await.context("connecting")?;
        fleet::behind(&mut conn, latest).await?
    };
    if behind.is_empty() {
        println!("every tenant is at template version {latest}; nothing to do");
        return Ok(());
    }
    if dry_run {
        for t in &behind {
            let steps: Vec<&str> = TEMPLATE
                .iter()
                .filter(|s| s.version > t.version)
                .map(|s| s.name)
                .collect();
            println!(
                "{:<40} {} -> {latest}: {}",
                t.slug,
                t.version,
                steps.join(", ")
            );
        }
        println!(
            "{} tenant(s) behind version {latest}; dry run, nothing changed",
            behind.len()
        );
        return Ok(());
    }
    let bar = indicatif::ProgressBar::new(behind.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} tenants  {msg}  eta {eta}",
        )
        .context("progress bar template")?,
    );
    let stop_flag = Arc::new(AtomicBool::new(false));
    {
        let (stop_flag, bar) = (stop_flag.clone(), bar.clone());
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                stop_flag.store(true, Ordering::Relaxed);
                bar.println(
                    "stopping: tenants under way finish, no new ones start (run again to continue)",
                );
            }
        });
    }
    let failed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let progress = {
        let (bar, failed) = (bar.clone(), failed.clone());
        move |tenant: &fleet::Behind, outcome: &Outcome| {
            if let Outcome::Failed { step, error, .. } = outcome {
                let n = failed.fetch_add(1, Ordering::Relaxed) + 1;
                bar.println(format!("FAILED {} at step {step}: {error}", tenant.slug));
                bar.set_message(format!("{n} failed"));
            }
            if !matches!(outcome, Outcome::Skipped) {
                bar.inc(1);
            }
        }
    };
    let summary = fleet::migrate_all(&pool, TEMPLATE, jobs, stop_flag.clone(), progress)
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    bar.finish_and_clear();
    println!(
        "migrated {} tenant(s) to version {latest}; {} already current; {} failed; {} not started",
        summary.migrated,
        summary.current,
        summary.failed.len(),
        summary.skipped
    );
    for (slug, step, error) in &summary.failed {
        println!("  {slug}: step {step}: {error}");
    }
    if !summary.failed.is_empty() {
        anyhow::bail!(
            "{} tenant(s) failed and stay at their old version; fix and run again",
            summary.failed.len()
        );
    }
    if summary.skipped > 0 {
        anyhow::bail!(
            "stopped with {} tenant(s) not started; run again to continue",
            summary.skipped
        );
    }
    Ok(())
}

/// `strata tenants suspend|resume|delete|restore|purge`.
async fn lifecycle_change(
    change: Change,
    action: Option<Action>,
    confirm: Option<String>,
) -> anyhow::Result<()> {
    let (url, pg) = open_database(&change.config).await?;
    migrate(&url).await?;
    let (pool, _) = db::build_pool(&url, 1);
    let result = match (action, confirm) {
        (Some(action), _) => lifecycle::change(
            &pool,
            &change.slug,
            action,
            "cli",
            &change.reason,
            change.config.tenant_retention(),
        )
        .await
        .map(|t| println!("tenant {} is now {}", t.slug, t.status)),
        (None, Some(confirm)) => {
            lifecycle::purge(&pool, &change.slug, &confirm, "cli", &change.reason)
                .await
                .map(|()| {
                    println!(
                        "tenant {} purged: schema, data and role dropped",
                        change.slug
                    )
                })
        }
        (None, None) => unreachable!("purge always has --confirm"),
    };
    drop(pool);
    stop(pg).await?;
    result.map_err(|e| anyhow::anyhow!("{e} ({})", e.code()))
}
