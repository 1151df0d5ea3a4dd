//! The built-in PostgreSQL: a private cluster, started from the machine's
//! installed server binaries, used when `DATABASE_URL` is unset.
//!
//! The cluster lives in `<data dir>/pg` and is kept between runs. PostgreSQL
//! runs under a small `sh` watchdog whose standard input is a pipe from this
//! process: when this process exits, however it exits, the pipe closes and the
//! watchdog shuts PostgreSQL down (fast mode), so no orphan keeps running.

use std::fs::File;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// Superuser created in the private cluster.
const SUPERUSER: &str = "strata";

/// Watchdog: runs PostgreSQL, stops it when stdin closes, exits with it.
/// (An asynchronous list's stdin is /dev/null in `sh`, hence fd 3.)
const WATCHDOG: &str = r#"
exec 3<&0
"$@" 3<&- &
pid=$!
(read _ignored <&3; kill -INT "$pid" 2>/dev/null) &
reader=$!
exec 3<&-
wait "$pid"
status=$?
kill "$reader" 2>/dev/null
if [ -n "$STRATA_PG_REMOVE" ]; then rm -rf "$STRATA_PG_REMOVE"; fi
exit $status
"#;

/// How to run the private cluster.
#[derive(Debug, Clone)]
pub struct Options {
    /// Directory holding the cluster (`pg/`), its password, log and lock.
    pub data_dir: PathBuf,
    /// Trade durability for speed (fsync off): for throw-away test clusters.
    pub ephemeral: bool,
}

/// A running private cluster; dropping it stops PostgreSQL.
pub struct EmbeddedPostgres {
    /// Connection URL of the superuser, without a database name.
    base_url: String,
    /// Whether the cluster was created by this start.
    pub fresh: bool,
    /// Where PostgreSQL writes its log.
    pub log_path: PathBuf,
    watchdog: Child,
    stdin: Option<ChildStdin>,
    _lock: File,
}

impl std::fmt::Debug for EmbeddedPostgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedPostgres")
            .field("fresh", &self.fresh)
            .finish_non_exhaustive()
    }
}

/// The installed PostgreSQL server binaries.
#[derive(Debug, Clone)]
struct Binaries {
    initdb: PathBuf,
    postgres: PathBuf,
}

/// The user PostgreSQL runs as, when this process is root.
#[derive(Debug, Clone, Copy)]
struct RunAs {
    uid: u32,
    gid: u32,
}

impl EmbeddedPostgres {
    /// Creates the cluster if needed, then starts it on a free loopback port.
    pub fn start(opts: &Options) -> anyhow::Result<Self> {
        let bins = find_binaries()?;
        let run_as = run_as()?;
        std::fs::create_dir_all(&opts.data_dir)
            .with_context(|| format!("creating {}", opts.data_dir.display()))?;
        // PostgreSQL runs in another directory (and maybe as another user).
        let data_dir = std::fs::canonicalize(&opts.data_dir)?;
        if run_as.is_some() {
            // PostgreSQL's user must be able to reach pg/ inside it.
            std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o711))?;
        }
        let lock = lock_data_dir(&data_dir)?;

        let pgdata = data_dir.join("pg");
        let password_path = data_dir.join("pg-password");
        let fresh = !pgdata.join("PG_VERSION").exists();
        if fresh {
            init_cluster(&bins, run_as, &pgdata, &password_path, opts.ephemeral)?;
        }
        let password = std::fs::read_to_string(&password_path)
            .with_context(|| format!("reading {}", password_path.display()))?
            .trim()
            .to_owned();

        let port = free_port()?;
        let log_path = data_dir.join("pg.log");
        let log = File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        raise_open_file_limit();
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(WATCHDOG)
            .arg("strata-postgres")
            .arg(&bins.postgres)
            .arg("-D")
            .arg(&pgdata)
            .arg("-p")
            .arg(port.to_string())
            .arg("-k")
            .arg("")
            .args(["-c", "listen_addresses=127.0.0.1"])
            // A connection serving hundreds of tenants reads thousands of
            // relation files; past this many open files per backend,
            // PostgreSQL closes and reopens them on every request. It
            // uses fewer when the process's file limit is lower, hence
            // `raise_open_file_limit` above.
            .arg("-c")
            .arg(format!("max_files_per_process={FILES_PER_BACKEND}"));
        if opts.ephemeral {
            cmd.args(["-c", "fsync=off"])
                .args(["-c", "synchronous_commit=off"])
                .args(["-c", "full_page_writes=off"])
                .args(["-c", "max_connections=400"])
                .env("STRATA_PG_REMOVE", &pgdata);
        } else {
            cmd.args(["-c", "max_connections=200"]);
        }
        cmd.stdin(Stdio::piped())
            .stdout(log.try_clone()?)
            .stderr(log)
            .current_dir(&data_dir)
            // Its own process group: Ctrl-C reaches this process, which then
            // stops the server in order (HTTP first, PostgreSQL last).
            .process_group(0);
        if let Some(user) = run_as {
            cmd.uid(user.uid).gid(user.gid);
        }
        let mut watchdog = cmd.spawn().context("starting PostgreSQL")?;
        let stdin = watchdog.stdin.take();

        let mut pg = Self {
            base_url: format!("postgres://{SUPERUSER}:{password}@127.0.0.1:{port}"),
            fresh,
            log_path,
            watchdog,
            stdin,
            _lock: lock,
        };
        pg.wait_listening(port)?;
        Ok(pg)
    }

    /// URL of database `name` in this cluster.
    pub fn url(&self, name: &str) -> String {
        format!("{}/{name}", self.base_url)
    }

    fn wait_listening(&mut self, port: u16) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.watchdog.try_wait()? {
                bail!(
                    "the built-in PostgreSQL exited ({status}) while starting; its log ({}) ends:\n{}",
                    self.log_path.display(),
                    log_tail(&self.log_path)
                );
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "the built-in PostgreSQL did not start within 60 s; see {}",
                    self.log_path.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops PostgreSQL (fast shutdown) and waits for it to exit.
    pub fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> anyhow::Result<()> {
        if self.stdin.take().is_none() {
            return Ok(());
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.watchdog.try_wait()?.is_none() {
            if Instant::now() > deadline {
                // The watchdog leads its own process group, PostgreSQL included.
                let group = -(self.watchdog.id() as i32);
                // SAFETY: kill has no memory-safety preconditions.
                unsafe { libc::kill(group, libc::SIGQUIT) };
                let _ = self.watchdog.wait();
                bail!("PostgreSQL did not stop within 30 s; stopped it with SIGQUIT");
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        Ok(())
    }
}

impl Drop for EmbeddedPostgres {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::warn!(error = %e, "stopping the built-in PostgreSQL");
        }
    }
}

/// Creates database `name` in the cluster unless it exists.
pub async fn ensure_database(pg: &EmbeddedPostgres, name: &str) -> anyhow::Result<()> {
    use diesel_async::{RunQueryDsl as _, SimpleAsyncConnection as _};
    let mut conn = super::connect_with_retry(&pg.url("postgres"), Duration::from_secs(60)).await?;
    let exists: i64 = diesel::sql_query("SELECT 1 AS one FROM pg_database WHERE datname = $1")
        .bind::<diesel::sql_types::Text, _>(name)
        .execute(&mut conn)
        .await? as i64;
    if exists == 0 {
        // `name` is ours, never a client's; quoted all the same.
        conn.batch_execute(&format!(
            "CREATE DATABASE \"{}\"",
            name.replace('"', "\"\"")
        ))
        .await?;
    }
    Ok(())
}

fn find_binaries() -> anyhow::Result<Binaries> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    // Debian and Ubuntu keep the server binaries off PATH, one folder per major version.
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut versions: Vec<PathBuf> = entries.flatten().map(|e| e.path().join("bin")).collect();
        versions.sort_by_key(|p| {
            std::cmp::Reverse(
                p.parent()
                    .and_then(|v| v.file_name())
                    .and_then(|v| v.to_str())
                    .and_then(|v| v.parse::<u32>().ok())
                    .unwrap_or(0),
            )
        });
        dirs.extend(versions);
    }
    for dir in dirs {
        let (initdb, postgres) = (dir.join("initdb"), dir.join("postgres"));
        if initdb.is_file() && postgres.is_file() {
            return Ok(Binaries { initdb, postgres });
        }
    }
    bail!(
        "no PostgreSQL server binaries (initdb, postgres) found on PATH or in /usr/lib/postgresql; \
         install them (Debian/Ubuntu: apt-get install postgresql) or set DATABASE_URL"
    )
}

/// Open files PostgreSQL may keep per backend (`max_files_per_process`).
const FILES_PER_BACKEND: u64 = 16384;

/// Raises this process's soft limit on open files to its hard limit, so the
/// cluster started from it inherits room for `max_files_per_process`.
///
/// A login shell's soft limit is usually 1,024, while its hard limit is far
/// higher; PostgreSQL 15 does not raise the soft limit itself, so under 1,024
/// every backend would keep at most about 1,000 files open and reopen the
/// rest on every request. Returns the soft limit now in force.
fn raise_open_file_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit for the call's duration.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "reading the open-file limit");
        return 0;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: `raised` is a valid rlimit; raising the soft limit up to the
        // hard one needs no privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            tracing::debug!(
                from = limit.rlim_cur,
                to = raised.rlim_cur,
                "raised the open-file limit"
            );
            limit = raised;
        } else {
            tracing::warn!(error = %std::io::Error::last_os_error(), "raising the open-file limit");
        }
    }
    if limit.rlim_cur < FILES_PER_BACKEND {
        tracing::warn!(
            limit = limit.rlim_cur,
            "the open-file limit is below the built-in PostgreSQL's {FILES_PER_BACKEND} files per \
             backend; over many tenants it will reopen relation files on every request (raise the \
             hard limit: `ulimit -Hn`, or LimitNOFILE= under systemd)"
        );
    }
    limit.rlim_cur
}

fn run_as() -> anyhow::Result<Option<RunAs>> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let id = |flag: &str| -> anyhow::Result<u32> {
        let out = Command::new("id").args([flag, "postgres"]).output()?;
        if !out.status.success() {
            bail!(
                "running as root, the built-in PostgreSQL needs a 'postgres' system user \
                 (Debian/Ubuntu: apt-get install postgresql creates it)"
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
    };
    Ok(Some(RunAs {
        uid: id("-u")?,
        gid: id("-g")?,
    }))
}

fn lock_data_dir(dir: &Path) -> anyhow::Result<File> {
    let path = dir.join("strata.lock");
    let mut file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            bail!(
                "data directory {} is in use by another strata process (pid {}); stop it, \
                 or point STRATA_DATA_DIR somewhere else",
                dir.display(),
                holder.trim()
            );
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("locking {}", path.display()));
        }
    }
    file.set_len(0)?;
    write!(file, "{}", std::process::id())?;
    Ok(file)
}

fn init_cluster(
    bins: &Binaries,
    run_as: Option<RunAs>,
    pgdata: &Path,
    password_path: &Path,
    ephemeral: bool,
) -> anyhow::Result<()> {
    // A cluster without PG_VERSION is a half-made one (initdb was interrupted).
    if pgdata.exists() {
        std::fs::remove_dir_all(pgdata)
            .with_context(|| format!("removing unfinished cluster {}", pgdata.display()))?;
    }
    std::fs::create_dir_all(pgdata)?;
    std::fs::set_permissions(pgdata, std::fs::Permissions::from_mode(0o700))?;
    let password = crate::config::random_secret();
    crate::config::write_private(password_path, &password)?;
    // initdb reads the password from a file PostgreSQL's user can read; it
    // sits beside the (still empty) cluster directory for the run.
    let staged = pgdata.with_extension("initdb-password");
    crate::config::write_private(&staged, &password)?;
    if let Some(user) = run_as {
        std::os::unix::fs::chown(pgdata, Some(user.uid), Some(user.gid))?;
        std::os::unix::fs::chown(&staged, Some(user.uid), Some(user.gid))?;
    }
    let mut cmd = Command::new(&bins.initdb);
    cmd.arg("-D")
        .arg(pgdata)
        .args([
            "-U",
            SUPERUSER,
            "-A",
            "scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C",
        ])
        .arg(format!("--pwfile={}", staged.display()));
    if ephemeral {
        cmd.arg("--no-sync");
    }
    if let Some(user) = run_as {
        cmd.uid(user.uid).gid(user.gid);
        if let Some(parent) = staged.parent() {
            cmd.current_dir(parent);
        }
    }
    let out = cmd.output().context("running initdb")?;
    let _ = std::fs::remove_file(&staged);
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(pgdata);
        bail!(
            "initdb failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(listener.local_addr()?.port())
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgresql_started_after_the_raise_inherits_the_hard_open_file_limit() {
        let soft = raise_open_file_limit();
        // A child, as PostgreSQL's watchdog is, sees the raised soft limit.
        let out = Command::new("sh")
            .args(["-c", "ulimit -Sn; ulimit -Hn"])
            .output()
            .expect("running sh");
        let text = String::from_utf8(out.stdout).expect("utf-8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0], lines[1], "soft limit not raised to the hard one");
        assert_eq!(lines[0], soft.to_string());
    }
}
