//! `wechat-sim`: the fake WeChat as a standalone server, serving the demo apps.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
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
