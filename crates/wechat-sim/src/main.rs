//! `wechat-sim`: the fake WeChat as a standalone server, serving the demo apps.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use wechat_sim::{SimConfig, Simulator};

/// A fake WeChat server for local runs and demos. No credentials needed.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: SocketAddr,
    /// Milliseconds added before every WeChat endpoint answer.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_filter(log_filter()))
        .init();
    let args = Args::parse();
    let mut config = SimConfig::demo();
    config.latency = Duration::from_millis(args.latency_ms);
    let apps = config.apps.clone();
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("wechat-sim: cannot listen on {}: {error}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    let running = match Simulator::new(config).spawn_on(listener).await {
        Ok(running) => running,
        Err(error) => {
            eprintln!("wechat-sim: cannot serve on {}: {error}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(base_url = %running.base_url, latency_ms = args.latency_ms, "wechat-sim listening");
    for app in &apps {
        tracing::info!(app_id = %app.app_id, kind = ?app.kind, open_platform = ?app.open_platform, "demo app");
    }
    if let Err(error) = tokio::signal::ctrl_c().await {
        eprintln!("wechat-sim: cannot wait for Ctrl-C: {error}");
    }
    tracing::info!("shutting down");
    running.shutdown().await;
    ExitCode::SUCCESS
}

/// `RUST_LOG` as a list of `target=level` (a bare level is the default), or
/// `info` when unset or unreadable.
#[allow(clippy::disallowed_methods)] // the simulator's one setting from the environment
fn log_filter() -> Targets {
    std::env::var("RUST_LOG")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO))
}
