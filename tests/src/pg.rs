//! A throwaway PostgreSQL cluster for tests and benchmarks: `initdb` into a temporary
//! folder, a server on a free loopback port, removed when dropped.
//!
//! The server binaries come from `pg_config --bindir` (Debian's `postgresql-15` package puts
//! them in `/usr/lib/postgresql/15/bin`). `initdb` refuses to run as root, so as root every
//! server command runs as the `postgres` user (`runuser`), in a folder that user owns.
//! Nothing is mocked: tests talk to a real server, and may stop it abruptly
//! ([`PgCluster::crash`]) and start it again.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// A running throwaway cluster; stopped (immediately) and removed when dropped.
#[derive(Debug)]
pub struct PgCluster {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    as_root: bool,
}

/// Why a cluster could not be set up.
#[derive(Debug)]
pub struct PgError(pub String);

impl std::fmt::Display for PgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PgError {}

fn bindir() -> Result<PathBuf, PgError> {
    if let Ok(dir) = std::env::var("OACIS_PG_BINDIR") {
        return Ok(PathBuf::from(dir));
    }
    let out = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .map_err(|e| PgError(format!("pg_config not found ({e}); install PostgreSQL 15's server (postgresql-15)")))?;
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if dir.join("initdb").exists() {
        return Ok(dir);
    }
    // Debian's pg_config may come from libpq-dev and name the client folder.
    for version in ["17", "16", "15"] {
        let candidate = PathBuf::from(format!("/usr/lib/postgresql/{version}/bin"));
        if candidate.join("initdb").exists() {
            return Ok(candidate);
        }
    }
    Err(PgError(format!("no initdb in {}; install PostgreSQL 15's server (postgresql-15)", dir.display())))
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

fn free_port() -> Result<u16, PgError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| PgError(format!("no free port: {e}")))?;
    listener.local_addr().map(|a| a.port()).map_err(|e| PgError(e.to_string()))
}

static CLUSTERS: AtomicU32 = AtomicU32::new(0);

impl PgCluster {
    /// `initdb` and start a cluster (trust authentication on loopback, user `postgres`).
    ///
    /// # Errors
    /// When the server binaries are missing or a step fails (its output is in the message).
    pub fn start() -> Result<PgCluster, PgError> {
        let bin = bindir()?;
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!(
            "oacis-pg-{}-{}-{nanos}",
            std::process::id(),
            CLUSTERS.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).map_err(|e| PgError(format!("cannot create {}: {e}", dir.display())))?;
        let as_root = is_root();
        let cluster = PgCluster { dir, bin, port: free_port()?, as_root };
        if as_root {
            cluster.run(Command::new("chown").args(["postgres:postgres"]).arg(&cluster.dir), false)?;
        }
        let data = cluster.data();
        cluster.run(
            Command::new(cluster.bin.join("initdb"))
                .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync", "-D"])
                .arg(&data),
            as_root,
        )?;
        cluster.start_again()?;
        Ok(cluster)
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn run(&self, command: &mut Command, as_postgres: bool) -> Result<(), PgError> {
        let mut command = if as_postgres {
            let mut wrapped = Command::new("runuser");
            wrapped.args(["-u", "postgres", "--"]).arg(command.get_program()).args(command.get_args());
            wrapped
        } else {
            std::mem::replace(command, Command::new("true"))
        };
        let out = command.output().map_err(|e| PgError(format!("cannot run {command:?}: {e}")))?;
        if !out.status.success() {
            return Err(PgError(format!(
                "{command:?} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(())
    }

    /// Starts the server (again, after [`PgCluster::crash`] or [`PgCluster::stop`]), and
    /// waits until it accepts connections.
    ///
    /// # Errors
    /// When `pg_ctl start` fails (the server's log is in the message).
    pub fn start_again(&self) -> Result<(), PgError> {
        // The server's default cache unless `OACIS_PG_SHARED_BUFFERS` names another (a
        // benchmark giving PostgreSQL the cache the sled backend has: 1GB).
        let shared_buffers = std::env::var("OACIS_PG_SHARED_BUFFERS").unwrap_or_else(|_| "128MB".into());
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c max_connections=200 -c shared_buffers={shared_buffers}",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("server.log");
        self.run(
            Command::new(self.bin.join("pg_ctl"))
                .args(["-w", "-t", "60", "-D"])
                .arg(self.data())
                .arg("-l")
                .arg(&log)
                .args(["-o", &options, "start"]),
            self.as_root,
        )
        .map_err(|e| PgError(format!("{e}\n{}", std::fs::read_to_string(&log).unwrap_or_default())))
    }

    /// Stops the server the way a crash does (`pg_ctl stop -m immediate`: no checkpoint, WAL
    /// recovery on the next start).
    ///
    /// # Errors
    /// When `pg_ctl stop` fails.
    pub fn crash(&self) -> Result<(), PgError> {
        self.run(
            Command::new(self.bin.join("pg_ctl")).args(["-w", "-D"]).arg(self.data()).args(["-m", "immediate", "stop"]),
            self.as_root,
        )
    }

    /// Stops the server cleanly.
    ///
    /// # Errors
    /// When `pg_ctl stop` fails.
    pub fn stop(&self) -> Result<(), PgError> {
        self.run(
            Command::new(self.bin.join("pg_ctl")).args(["-w", "-D"]).arg(self.data()).args(["-m", "fast", "stop"]),
            self.as_root,
        )
    }

    /// Freezes (`true`: SIGSTOP) or thaws (`false`: SIGCONT) the server and all its processes,
    /// as a database that hangs rather than fails: connections stay open and nothing answers.
    ///
    /// # Errors
    /// When the server's process is not found or `kill` fails.
    pub fn freeze(&self, frozen: bool) -> Result<(), PgError> {
        let pid_file = std::fs::read_to_string(self.data().join("postmaster.pid"))
            .map_err(|e| PgError(format!("the server's pid file: {e}")))?;
        let postmaster = pid_file.lines().next().unwrap_or_default().trim().to_owned();
        // Its children (backends, writer, checkpointer, WAL writer), from /proc.
        let mut pids = vec![postmaster.clone()];
        for entry in std::fs::read_dir("/proc").map_err(|e| PgError(format!("/proc: {e}")))?.flatten() {
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            // `pid (comm) state ppid ...`: the fields after the last ')'.
            let parent = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1));
            if parent == Some(postmaster.as_str()) {
                pids.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        let signal = if frozen { "-STOP" } else { "-CONT" };
        let status =
            Command::new("kill").arg(signal).args(&pids).status().map_err(|e| PgError(format!("kill: {e}")))?;
        if status.success() {
            Ok(())
        } else {
            Err(PgError(format!("kill {signal} {pids:?} failed")))
        }
    }

    /// The port it listens on (127.0.0.1).
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A URL for database `name` as user `postgres`.
    #[must_use]
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Creates database `name` and returns its URL (`psql` from the same folder, or PATH).
    ///
    /// # Errors
    /// When `CREATE DATABASE` fails.
    pub fn database(&self, name: &str) -> Result<String, PgError> {
        self.sql("postgres", &format!("CREATE DATABASE \"{name}\""))?;
        Ok(self.url(name))
    }

    /// Runs `sql` (one or more statements, stopping at the first error) in database `name`,
    /// with `psql` from the same folder, or PATH.
    ///
    /// # Errors
    /// When a statement fails.
    pub fn sql(&self, name: &str, sql: &str) -> Result<(), PgError> {
        let psql = if self.bin.join("psql").exists() { self.bin.join("psql") } else { PathBuf::from("psql") };
        self.run(
            Command::new(psql).args(["-q", "-v", "ON_ERROR_STOP=1", "-d"]).arg(self.url(name)).args(["-c", sql]),
            false,
        )
    }

    /// The cluster's folder (data and server log).
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self.crash();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
