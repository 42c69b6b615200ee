//! The `wechat-identity` command line. Reads the environment once, then
//! `serve` (default), `migrate`, `check-config` or `rekey`. With no config
//! file and no `WECHAT_IDENTITY__` variables it runs the demo on the built-in
//! simulator.
//!
//! It lives in the library, and `main.rs` only calls [`main`], so the serving
//! stack is compiled once, here, instead of again in the binary.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use storage::RekeyOptions;

use crate::app::{Application, open_storage};
use crate::config::{self, CONFIG_FILE_ENV, Config, ENV_PREFIX, ResolvedConfig};
use crate::http::demo_page::{DemoPage, demo_routes};
use crate::telemetry::{self, LogFormat, OtlpConfig};
use crate::{demo, keys};

#[derive(Debug, Parser)]
#[command(
    name = "wechat-identity",
    version,
    about = "The WeChat identity service"
)]
struct Cli {
    /// The TOML config file (also `WECHAT_IDENTITY_CONFIG`). Without one, and
    /// without `WECHAT_IDENTITY__` variables, the demo runs.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve gRPC and the HTTP shim (the default).
    Serve,
    /// Apply database migrations, then exit.
    Migrate,
    /// Check the configuration and its secrets, count the values each
    /// encryption key protects in the database, then exit (2 when invalid).
    CheckConfig,
    /// Re-encrypt every value at rest under the current encryption key, in
    /// batches; safe to stop and run again, and beside running servers.
    Rekey {
        /// Rows per batch (one transaction each).
        #[arg(long, default_value_t = 500)]
        batch_size: u32,
        /// Stop after this many batches; the next run goes on from there.
        #[arg(long)]
        max_batches: Option<u64>,
    },
}

/// The target of the binary's own log lines: the one they had when they were
/// logged from `main.rs`, so `RUST_LOG=wechat_identity=…` still selects them.
const LOG_TARGET: &str = "wechat_identity";

/// Exit code for a configuration an operator must fix.
const EXIT_CONFIG: u8 = 2;
/// Exit code for a failure at start or while serving.
const EXIT_FAILURE: u8 = 1;

/// Runs the command the process was started with; the exit code says how
/// it ended (0, 1 for a failure at start or while serving, 2 for a
/// configuration to fix).
pub fn main() -> ExitCode {
    let env = config::process_env();
    let cli = Cli::parse();
    let lookup = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let path = cli
        .config
        .clone()
        .or_else(|| lookup(CONFIG_FILE_ENV).map(PathBuf::from));
    let demo = path.is_none() && !env.iter().any(|(k, _)| k.starts_with(ENV_PREFIX));
    let format = if demo {
        LogFormat::Pretty
    } else {
        LogFormat::Json
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("wechat-identity: cannot start the runtime: {error}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let otlp = OtlpConfig::from_env(&env);
    // The OTLP exporter runs on the runtime, so telemetry starts inside it.
    let telemetry = match runtime
        .block_on(async { telemetry::init(format, lookup("RUST_LOG").as_deref(), otlp.as_ref()) })
    {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("wechat-identity: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let resolved = match load(path.as_deref(), demo, &env) {
        Ok(resolved) => resolved,
        Err(message) => {
            eprintln!("wechat-identity: {message}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let result = runtime.block_on(async move {
        let failed = |message: String| (EXIT_FAILURE, message);
        match cli.command.unwrap_or(Command::Serve) {
            Command::CheckConfig => check_config(&resolved).await,
            Command::Migrate => open_storage(&resolved, true)
                .await
                .map(|_| println!("migrations applied"))
                .map_err(|e| failed(e.to_string())),
            Command::Rekey {
                batch_size,
                max_batches,
            } => rekey(&resolved, batch_size, max_batches)
                .await
                .map_err(failed),
            Command::Serve => serve(resolved).await.map_err(failed),
        }
    });
    // Outside the workers, with the runtime still alive for the exporter.
    telemetry.shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, message)) => {
            tracing::error!(target: LOG_TARGET, error = %message, "wechat-identity stopped");
            eprintln!("wechat-identity: {message}");
            ExitCode::from(code)
        }
    }
}

/// Prints what the config holds and what each encryption key protects;
/// values no configured key can read are a config problem.
async fn check_config(resolved: &ResolvedConfig) -> Result<(), (u8, String)> {
    for warning in &resolved.warnings {
        eprintln!("wechat-identity: warning: {warning}");
    }
    println!(
        "config ok: {} app(s), {} caller(s), {} warning(s), database {}",
        resolved.apps.len(),
        resolved.callers.len(),
        resolved.warnings.len(),
        resolved.database_for_display()
    );
    let configured: Vec<String> = resolved
        .encryption_keys
        .iter()
        .map(|(id, _)| id.clone())
        .collect();
    match keys::usage(resolved).await {
        Ok(Some(usage)) => {
            let check = keys::describe_usage(&usage, &configured);
            check.lines.iter().for_each(|line| println!("{line}"));
            if !check.problems.is_empty() {
                let problems: Vec<String> =
                    check.problems.iter().map(|p| format!("  - {p}")).collect();
                return Err((
                    EXIT_CONFIG,
                    format!(
                        "the stored data needs keys the config lacks:\n{}",
                        problems.join("\n")
                    ),
                ));
            }
        }
        Ok(None) => println!("encryption keys: no database yet, no value encrypted"),
        Err(why) => println!("encryption keys: values not counted ({why})"),
    }
    Ok(())
}

/// Runs `rekey` with a progress line per batch on stderr and a summary on stdout.
async fn rekey(
    resolved: &ResolvedConfig,
    batch_size: u32,
    max_batches: Option<u64>,
) -> Result<(), String> {
    let current = resolved
        .encryption_keys
        .first()
        .map(|(id, _)| id.clone())
        .unwrap_or_default();
    eprintln!("rekey: re-encrypting under key {current:?}, {batch_size} rows per batch");
    let options = RekeyOptions {
        batch_size: batch_size.max(1),
        max_batches,
    };
    let summary = keys::rekey(resolved, &options, |line| eprintln!("{line}")).await?;
    println!(
        "rekey {}: {} value(s) re-encrypted under key {current:?}, {} changed meanwhile by a running server, {} unreadable",
        if summary.finished {
            "done"
        } else {
            "stopped after --max-batches; run it again to go on"
        },
        summary.rekeyed,
        summary.changed_meanwhile,
        summary.unreadable,
    );
    if summary.unreadable > 0 {
        return Err(format!(
            "{} value(s) could not be decrypted with the configured keys (the warnings above name their columns); \
             they stay under their old key",
            summary.unreadable
        ));
    }
    println!("`wechat-identity check-config` shows what each retired key still protects");
    Ok(())
}

fn load(
    path: Option<&std::path::Path>,
    demo: bool,
    env: &[(String, String)],
) -> Result<ResolvedConfig, String> {
    let config = if demo {
        demo::config(std::path::Path::new(demo::DATA_DIR))?
    } else {
        Config::load(path, env).map_err(|e| e.to_string())?
    };
    config
        .resolve(env)
        .map_err(|e: config::ConfigError| e.to_string())
}

async fn serve(resolved: ResolvedConfig) -> Result<(), String> {
    let simulator = match &resolved.config.simulator {
        Some(sim) => {
            let config = wechat_sim::SimConfig {
                latency: sim.latency,
                ..wechat_sim::SimConfig::demo()
            };
            let listener = tokio::net::TcpListener::bind(sim.listen)
                .await
                .map_err(|e| format!("cannot listen on {} for the simulator: {e}", sim.listen))?;
            Some(
                wechat_sim::Simulator::new(config)
                    .spawn_on(listener)
                    .await
                    .map_err(|e| e.to_string())?,
            )
        }
        None => None,
    };
    let wechat_base = simulator.as_ref().map(|s| s.base_url.clone());
    let web_apps = demo_web_apps(&resolved);
    let mut app = Application::build(resolved, wechat_base.clone())
        .await
        .map_err(|e| e.to_string())?;
    if wechat_base.is_some()
        && let Some((official_account, website)) = web_apps
    {
        let page = DemoPage {
            http_base: format!("http://{}", app.http_addr()),
            grpc: app.grpc_addr(),
            official_account,
            website,
        };
        app = app.with_http_routes(demo_routes(page));
    }
    if let Some(base) = &wechat_base {
        println!(
            "{}",
            demo::banner(
                app.grpc_addr(),
                app.http_addr(),
                app.admin_addr(),
                base,
                app.open_mode()
            )
        );
    }
    if app.open_mode() {
        tracing::warn!(target: LOG_TARGET, "no caller keys configured: accepting unauthenticated calls on loopback");
    }
    tracing::info!(
        target: LOG_TARGET,
        grpc = %app.grpc_addr(),
        http = %app.http_addr(),
        admin = %app.admin_addr(),
        "wechat-identity serving"
    );
    app.run_until_stopped(shutdown_signal())
        .await
        .map_err(|e| e.to_string())
}

/// The first Official Account and website app, for the simulator's landing page.
fn demo_web_apps(resolved: &ResolvedConfig) -> Option<(String, String)> {
    let first = |kind| {
        resolved
            .apps
            .iter()
            .find(|app| app.kind == kind)
            .map(|app| app.app_id.to_string())
    };
    Some((
        first(config::AppKind::OfficialAccount)?,
        first(config::AppKind::Website)?,
    ))
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
