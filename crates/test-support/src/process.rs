//! The real `wechat-identity` binary as a child process: its output captured
//! line by line, ready when it says so, SIGTERM on demand, and its exit code;
//! and ports handed out once.
//!
//! The binary is the one Cargo builds beside the running executable
//! (`target/<profile>/wechat-identity`, next to the bench or one folder up
//! from a test in `deps/`); `WECHAT_IDENTITY_BIN` names another. A binary
//! older than the sources it is built from is refused: it would test
//! yesterday's code.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

/// The variable that overrides where the binary is.
pub const BIN_ENV: &str = "WECHAT_IDENTITY_BIN";

/// The binary under test, checked once per test process against its sources.
///
/// # Panics
/// When it is missing or older than its sources, saying what to build.
pub fn binary() -> PathBuf {
    try_binary().unwrap_or_else(|problem| panic!("{problem}"))
}

/// As [`binary`], with the problem as an error, for the bench.
///
/// # Errors
/// The binary is missing or older than its sources.
pub fn try_binary() -> Result<PathBuf, String> {
    static CHECKED: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    CHECKED.get_or_init(find_binary).clone()
}

#[allow(clippy::disallowed_methods)] // a test's own override, not the service's config
fn find_binary() -> Result<PathBuf, String> {
    if let Ok(path) = std::env::var(BIN_ENV) {
        return Ok(PathBuf::from(path));
    }
    let me = std::env::current_exe().unwrap();
    // target/<profile>/bench, or target/<profile>/deps/<test>.
    let folder = me.parent().unwrap();
    let beside = folder.join("wechat-identity");
    let path = if beside.exists() {
        beside
    } else {
        folder.parent().unwrap().join("wechat-identity")
    };
    let Some(built) = modified(&path) else {
        return Err(format!(
            "no {}: run the README's test command (cargo test --workspace), or cargo build -p server with the same profile",
            path.display()
        ));
    };
    // Cargo lists every input of the binary in its dep-info file beside it.
    let newest_source = std::fs::read_to_string(path.with_extension("d"))
        .ok()
        .and_then(|deps| dep_info_inputs(&deps).filter_map(|p| newest(&p)).max());
    if newest_source.is_some_and(|source| source > built) {
        return Err(format!(
            "{} is older than the sources it is built from: run cargo test --workspace (or cargo build -p server) first",
            path.display()
        ));
    }
    Ok(path)
}

fn modified(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The newest modification time at or below `path` (a build script may
/// watch a whole folder, such as `proto/`, which dep-info lists as one path).
fn newest(path: &Path) -> Option<std::time::SystemTime> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_dir() {
        return meta.modified().ok();
    }
    std::fs::read_dir(path)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| newest(&entry.path()))
        .max()
}

/// The inputs a Cargo dep-info file (`target: input input ...`, spaces in
/// paths escaped as `\ `) names.
fn dep_info_inputs(deps: &str) -> impl Iterator<Item = PathBuf> + '_ {
    let inputs = deps
        .lines()
        .next()
        .and_then(|line| line.split_once(": "))
        .map_or("", |(_, inputs)| inputs);
    inputs
        .split(' ')
        .scan(String::new(), |pending, part| {
            if let Some(escaped) = part.strip_suffix('\\') {
                pending.push_str(escaped);
                pending.push(' ');
                return Some(None);
            }
            pending.push_str(part);
            Some(Some(PathBuf::from(std::mem::take(pending))))
        })
        .flatten()
        .filter(|path| !path.as_os_str().is_empty())
}

/// A running `wechat-identity`.
#[derive(Debug)]
pub struct Running {
    child: Child,
    output: Arc<Mutex<String>>,
}

impl Running {
    /// Starts the binary with `args` in `dir`, with only `env` (plus `PATH`
    /// and `HOME`) in its environment.
    pub fn start(args: &[&str], dir: &Path, env: &[(&str, &str)]) -> Self {
        Self::start_program(&binary(), args, dir, env)
    }

    /// [`Running::start`] for another program (the bench's echo server).
    #[allow(clippy::disallowed_methods)] // PATH and HOME pass through, nothing else
    pub fn start_program(program: &Path, args: &[&str], dir: &Path, env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(program);
        command
            .args(args)
            .current_dir(dir)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for name in ["PATH", "HOME"] {
            if let Ok(value) = std::env::var(name) {
                command.env(name, value);
            }
        }
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().unwrap();
        let output = Arc::new(Mutex::new(String::new()));
        collect(child.stdout.take().unwrap(), output.clone());
        collect(child.stderr.take().unwrap(), output.clone());
        Self { child, output }
    }

    /// Everything it printed so far, stdout and stderr interleaved by line.
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Waits until its output contains `needle`; panics with the output after
    /// `limit` or when the process exits first.
    pub async fn wait_for(&mut self, needle: &str, limit: Duration) {
        if let Err(why) = self.ready_when(needle, limit).await {
            panic!("{why}");
        }
    }

    /// Waits until its output contains `needle`.
    ///
    /// # Errors
    /// The process exited first, or `limit` passed; with its output.
    pub async fn ready_when(&mut self, needle: &str, limit: Duration) -> Result<(), String> {
        let start = Instant::now();
        while !self.output().contains(needle) {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "exited ({status}) before printing {needle:?}:\n{}",
                    self.output()
                ));
            }
            if start.elapsed() >= limit {
                return Err(format!(
                    "no {needle:?} within {limit:?}:\n{}",
                    self.output()
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Kills it at once (no drain), and waits for it to be gone.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// Sends SIGTERM, as Kubernetes does.
    pub fn terminate(&self) {
        let pid = self.child.id().unwrap().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(sent.success());
    }

    /// Waits for the exit, at most `limit`.
    pub async fn exit(&mut self, limit: Duration) -> ExitStatus {
        let status = tokio::time::timeout(limit, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("still running after {limit:?}:\n{}", self.output()))
            .unwrap();
        // Let the readers drain what was printed last.
        tokio::time::sleep(Duration::from_millis(100)).await;
        status
    }
}

fn collect(stream: impl AsyncRead + Unpin + Send + 'static, into: Arc<Mutex<String>>) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let mut output = into.lock().unwrap();
            output.push_str(&line);
            output.push('\n');
        }
    });
}

/// Runs the binary to completion (`check-config`, `migrate`): exit status and output.
pub async fn run(args: &[&str], dir: &Path, env: &[(&str, &str)]) -> (ExitStatus, String) {
    let mut running = Running::start(args, dir, env);
    let status = running.exit(Duration::from_secs(30)).await;
    (status, running.output())
}

/// A port free on 127.0.0.1 right now, for a process that binds its own;
/// never the same one twice in this test process (the kernel may hand a port
/// just released to the next `bind(0)`, and two processes of one test would
/// then collide). Processes started by tests bind every port they are given,
/// and none on port 0, for the same reason.
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut handed_out = HANDED_OUT.lock().unwrap();
        if !handed_out.contains(&port) {
            handed_out.push(port);
            return port;
        }
    }
}
