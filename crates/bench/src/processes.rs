//! The servers under load, each a process of its own as in production: the
//! baseline echo server (this binary's `echo-server` command) and the real
//! `wechat-identity` with the simulator in-process, on SQLite or on a fresh
//! PostgreSQL database.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use server::config::Permission;
use test_support::config::{ServiceConfig, loopback};
use test_support::postgres::{TestDatabase, host_of};
use test_support::process::{Running, free_port, try_binary};

/// The key the benchmark's caller presents.
pub(crate) const CALLER_KEY: &str = "bench-caller-key-000000000000000000000";
pub(crate) use test_support::config::{MINI, OFFICIAL};

/// How long a server may take to say it serves.
const START: Duration = Duration::from_secs(30);

/// A server process under load.
#[derive(Debug)]
pub(crate) struct ServerProcess {
    process: Running,
    /// Its gRPC address, `http://127.0.0.1:PORT`.
    pub(crate) grpc: String,
    /// Its HTTP shim, `http://127.0.0.1:PORT` (wechat-identity only).
    pub(crate) http: String,
    /// Its admin listener (`/metrics`), `http://127.0.0.1:PORT` (wechat-identity only).
    pub(crate) admin: String,
    /// Its database URL (wechat-identity only).
    pub(crate) database_url: String,
    /// The simulator's base URL (wechat-identity only).
    pub(crate) sim: String,
    /// From spawn to the first answer on gRPC.
    pub(crate) startup: Duration,
    /// WeChat, simulated in the bench process (wechat-identity only).
    _simulator: Option<wechat_sim::RunningSim>,
    _dir: ScratchDir,
    /// A PostgreSQL database of its own, dropped with it.
    _database: Option<TestDatabase>,
}

/// A folder of its own under the system's temp dir, removed when dropped.
///
/// Not `tempfile`: it would turn on `std` features of crates the server
/// shares (bitflags, fastrand), so that `cargo build --release -p bench -p
/// server` would compile the server a second time beside the image's `-p
/// server` build, in CI.
#[derive(Debug)]
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new() -> Result<Self, String> {
        let path = std::env::temp_dir().join(format!("wi-bench-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Self(path))
    }

    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl ServerProcess {
    /// The baseline: this binary's bare tonic echo server.
    ///
    /// # Errors
    /// It could not start.
    pub(crate) async fn echo() -> Result<Self, String> {
        let port = free_port();
        let dir = ScratchDir::new()?;
        let me = std::env::current_exe().map_err(|e| e.to_string())?;
        let started = Instant::now();
        let listen = format!("127.0.0.1:{port}");
        let mut process =
            Running::start_program(&me, &["echo-server", "--listen", &listen], dir.path(), &[]);
        process.ready_when("echo serving", START).await?;
        Ok(Self {
            process,
            grpc: format!("http://127.0.0.1:{port}"),
            http: String::new(),
            admin: String::new(),
            database_url: String::new(),
            sim: String::new(),
            _simulator: None,
            startup: started.elapsed(),
            _dir: dir,
            _database: None,
        })
    }

    /// `wechat-identity` on `database` (`sqlite` or a PostgreSQL admin URL),
    /// with WeChat simulated in this process (so the server's RSS is its
    /// own), answering after `sim_latency`, with `overrides` (`KEY=VALUE`,
    /// the server's environment overrides without their prefix).
    ///
    /// # Errors
    /// It could not start, PostgreSQL is unreachable, or an override is not
    /// `KEY=VALUE`.
    pub(crate) async fn identity(
        database: &str,
        sim_latency: Duration,
        overrides: &[String],
    ) -> Result<Self, String> {
        let overrides = overrides
            .iter()
            .map(|pair| match pair.split_once('=') {
                Some((key, value)) if !key.is_empty() => Ok((
                    format!("{}{key}", server::config::ENV_PREFIX),
                    value.to_owned(),
                )),
                _ => Err(format!("--server-env {pair}: expected KEY=VALUE")),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let dir = ScratchDir::new()?;
        let (url, created) = if database == "sqlite" {
            (
                format!("sqlite://{}", dir.path().join("bench.db").display()),
                None,
            )
        } else {
            let created = TestDatabase::create_at(database).await?;
            (created.url.clone(), Some(created))
        };
        let (grpc, http, admin) = (free_port(), free_port(), free_port());
        let mut sim_config = wechat_sim::SimConfig::demo();
        sim_config.latency = sim_latency;
        let simulator = wechat_sim::Simulator::new(sim_config)
            .spawn()
            .await
            .map_err(|e| format!("simulator: {e}"))?;
        let sim = simulator.base_url.clone();
        let mut config = ServiceConfig::new(&url)
            .listening(loopback(grpc), loopback(http), loopback(admin))
            .wechat_at(&sim)
            .with_caller("bench", CALLER_KEY, &[Permission::Core, Permission::Admin])
            .only_apps(&[MINI, OFFICIAL]);
        // The flood speaks for many client addresses through X-Forwarded-For.
        config.config.server.trusted_proxies = vec!["127.0.0.1".into()];
        let path = config.write(dir.path());
        let path = path.to_str().ok_or("the temp dir's path is not UTF-8")?;
        let mut env = config.env_pairs();
        env.push(("RUST_LOG", "warn,wechat_identity=info"));
        env.extend(
            overrides
                .iter()
                .map(|(key, value)| (key.as_str(), value.as_str())),
        );
        let started = Instant::now();
        let mut process =
            Running::start_program(&try_binary()?, &["--config", path], dir.path(), &env);
        process.ready_when("wechat-identity serving", START).await?;
        Ok(Self {
            process,
            grpc: format!("http://127.0.0.1:{grpc}"),
            http: format!("http://127.0.0.1:{http}"),
            admin: format!("http://127.0.0.1:{admin}"),
            database_url: url,
            sim,
            _simulator: Some(simulator),
            startup: started.elapsed(),
            _dir: dir,
            _database: created,
        })
    }

    /// The process's peak resident memory (`VmHWM`), in bytes.
    pub(crate) fn peak_rss(&self) -> Option<u64> {
        let pid = self.process.pid()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }

    /// Stops the process (its database goes with it).
    pub(crate) async fn stop(mut self) {
        self.process.kill().await;
    }
}

/// Rows in `table` of the server's database (a table the browser login
/// writes), counted from outside the server.
pub(crate) async fn count_rows(database_url: &str, table: &str) -> Result<i64, String> {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(database_url)
        .await
        .map_err(|e| format!("database at {}: {e}", host_of(database_url)))?;
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
        .fetch_one(&mut conn)
        .await
        .map_err(|e| e.to_string())
}

/// The value of the counter `name` with `label` in the metrics of the
/// server whose admin listener is `admin` (0 when absent).
pub(crate) async fn counter(admin: &str, name: &str, label: &str) -> Result<f64, String> {
    let text = reqwest::get(format!("{admin}/metrics"))
        .await
        .map_err(|e| e.to_string())?
        .text()
        .await
        .map_err(|e| e.to_string())?;
    Ok(text
        .lines()
        .filter(|line| line.starts_with(name) && line.contains(label))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(0.0, |total, value| total + value))
}
