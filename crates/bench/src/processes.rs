//! The servers under load, each a process of its own as in production: the
//! baseline echo server (this binary's `echo-server` command) and the real
//! `wechat-identity` with the simulator in-process, on SQLite or on a fresh
//! PostgreSQL database.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The key the benchmark's caller presents.
pub(crate) const CALLER_KEY: &str = "bench-caller-key-000000000000000000000";
/// The demo mini program the scenarios log in to.
pub(crate) const MINI: &str = "wxd000000000000001";
/// The demo Official Account whose browser login the flood aims at.
pub(crate) const OFFICIAL: &str = "wxd000000000000002";

/// A server process under load.
#[derive(Debug)]
pub(crate) struct ServerProcess {
    child: Child,
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
    _dir: tempfile::TempDir,
    database: Option<(String, String)>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// The `wechat-identity` binary built beside this one.
fn identity_binary() -> Result<PathBuf, String> {
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let path = me.parent().ok_or("no folder")?.join("wechat-identity");
    if path.exists() {
        Ok(path)
    } else {
        Err(format!(
            "{} is missing: build it with the same profile (cargo build --release -p server)",
            path.display()
        ))
    }
}

async fn wait_until_serving(child: &mut Child, line: &str) -> Result<(), String> {
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let next = tokio::time::timeout_at(deadline, lines.next_line())
            .await
            .map_err(|_| format!("no '{line}' within 30 s"))?
            .map_err(|e| e.to_string())?;
        match next {
            Some(text) if text.contains(line) => break,
            Some(_) => {}
            None => return Err(format!("exited before '{line}'")),
        }
    }
    // Keep draining so the process never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(())
}

impl ServerProcess {
    /// The baseline: this binary's bare tonic echo server.
    ///
    /// # Errors
    /// It could not start.
    pub(crate) async fn echo() -> Result<Self, String> {
        let port = free_port();
        let started = Instant::now();
        let mut child = Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
            .args(["echo-server", "--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| e.to_string())?;
        wait_until_serving(&mut child, "echo serving").await?;
        Ok(Self {
            child,
            grpc: format!("http://127.0.0.1:{port}"),
            http: String::new(),
            admin: String::new(),
            database_url: String::new(),
            sim: String::new(),
            _simulator: None,
            startup: started.elapsed(),
            _dir: tempfile::tempdir().map_err(|e| e.to_string())?,
            database: None,
        })
    }

    /// `wechat-identity` on `database` (`sqlite` or a PostgreSQL admin URL),
    /// with WeChat simulated in this process (so the server's RSS is its
    /// own), answering after `sim_latency`.
    ///
    /// # Errors
    /// It could not start, or PostgreSQL is unreachable.
    pub(crate) async fn identity(database: &str, sim_latency: Duration) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let (url, created) = if database == "sqlite" {
            (
                format!("sqlite://{}", dir.path().join("bench.db").display()),
                None,
            )
        } else {
            let name = format!("wi_bench_{}", uuid::Uuid::now_v7().simple());
            admin(database, &format!("CREATE DATABASE {name}")).await?;
            let base = database.rsplit_once('/').map_or(database, |(base, _)| base);
            (format!("{base}/{name}"), Some((database.to_owned(), name)))
        };
        let (grpc, http, admin_port) = (free_port(), free_port(), free_port());
        let mut sim_config = wechat_sim::SimConfig::demo();
        sim_config.latency = sim_latency;
        let simulator = wechat_sim::Simulator::new(sim_config)
            .spawn()
            .await
            .map_err(|e| format!("simulator: {e}"))?;
        let sim = simulator.base_url.clone();
        let key = {
            use secrecy::ExposeSecret;
            server::app::generate_encryption_key()
                .expose_secret()
                .to_owned()
        };
        let config = format!(
            r#"
            [server]
            grpc_listen = "127.0.0.1:{grpc}"
            http_listen = "127.0.0.1:{http}"
            admin_listen = "127.0.0.1:{admin_port}"
            public_base_url = "http://127.0.0.1:{http}"
            # The flood speaks for many client addresses through X-Forwarded-For.
            trusted_proxies = ["127.0.0.1"]
            [database]
            url = "{url}"
            [encryption]
            current_key_id = "bench"
            keys = [{{ id = "bench", key = {{ value = "{key}" }} }}]
            [[apps]]
            app_id = "{MINI}"
            kind = "mini_program"
            secret = {{ value = "demo-mini-program-secret-0001" }}
            [[apps]]
            app_id = "{OFFICIAL}"
            kind = "official_account"
            secret = {{ value = "demo-official-account-secret-02" }}
            allowed_return_to = ["https://app.example/cb"]
            [[callers]]
            name = "bench"
            key = {{ value = "{CALLER_KEY}" }}
            permissions = ["core", "admin"]
            [wechat]
            api_base = "{sim}"
            api_fallback = ""
            open_base = "{sim}"
            "#
        );
        let path = dir.path().join("config.toml");
        std::fs::write(&path, config).map_err(|e| e.to_string())?;
        let started = Instant::now();
        let mut child = Command::new(identity_binary()?)
            .arg("--config")
            .arg(&path)
            .env_clear()
            .env("RUST_LOG", "warn,wechat_identity=info")
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| e.to_string())?;
        wait_until_serving(&mut child, "wechat-identity serving").await?;
        Ok(Self {
            child,
            grpc: format!("http://127.0.0.1:{grpc}"),
            http: format!("http://127.0.0.1:{http}"),
            admin: format!("http://127.0.0.1:{admin_port}"),
            database_url: url,
            sim,
            _simulator: Some(simulator),
            startup: started.elapsed(),
            _dir: dir,
            database: created,
        })
    }

    /// The process's peak resident memory (`VmHWM`), in bytes.
    pub(crate) fn peak_rss(&self) -> Option<u64> {
        let pid = self.child.id()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }

    /// Stops the process and drops its database.
    pub(crate) async fn stop(mut self) {
        let _ = self.child.kill().await;
        if let Some((admin_url, name)) = self.database.take() {
            let _ = admin(
                &admin_url,
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            )
            .await;
        }
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

async fn admin(admin_url: &str, statement: &str) -> Result<(), String> {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(admin_url)
        .await
        .map_err(|e| format!("PostgreSQL at {}: {e}", host_of(admin_url)))?;
    sqlx::query(sqlx::AssertSqlSafe(statement.to_owned()))
        .execute(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// The host part of a database URL, for messages: no user, password or query.
fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    rest.split('?').next().unwrap_or(rest)
}
