//! `bench`: drives the real `wechat-identity` binary and a bare tonic echo
//! server with the same load in the same run, and writes a markdown table
//! with every figure as an absolute number and as a ratio to the echo.
//!
//!   cargo build --release -p server -p bench
//!   cargo run --release -p bench -- --out BENCHMARKS.md
//!
//! `--quick` runs every scenario for a moment (CI, so the harness cannot
//! rot); numbers are never asserted.

mod echo;
mod flood;
mod load;
mod processes;
mod scenarios;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::flood::{Flood, FloodReport};
use crate::load::Measured;
use crate::processes::ServerProcess;
use crate::scenarios::{Load, Scenario, measure};

#[derive(Debug, Parser)]
#[command(
    name = "bench",
    about = "wechat-identity against a bare tonic echo, side by side"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Concurrent streams.
    #[arg(long, default_value_t = 32)]
    streams: usize,
    /// Measured seconds per scenario.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Unmeasured warm-up seconds per scenario.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Databases: `sqlite`, `postgres`, or both (comma-separated).
    #[arg(long, default_value = "sqlite,postgres")]
    databases: String,
    /// The PostgreSQL admin URL (a database per run is created and dropped).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    postgres: String,
    /// Simulated WeChat latencies in milliseconds (comma-separated).
    #[arg(long, default_value = "0,20")]
    sim_latency_ms: String,
    /// Only these wechat-identity scenarios (comma-separated report names,
    /// e.g. `VerifyToken,GetProfile`, and `flood` for the shim flood); all
    /// when absent.
    #[arg(long)]
    scenarios: Option<String>,
    /// A very short run of everything, for CI.
    #[arg(long)]
    quick: bool,
    /// A configuration override for the server, as its environment variable
    /// without the `WECHAT_IDENTITY__` prefix (`PROFILES__CACHE_ENTRIES=0`);
    /// repeatable. For A/B runs of one build with a lever on and off.
    #[arg(long = "server-env", value_name = "KEY=VALUE")]
    server_env: Vec<String>,
    /// Where to write the markdown report (also printed).
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the baseline echo (the harness starts it itself).
    EchoServer {
        /// Where to listen.
        #[arg(long)]
        listen: SocketAddr,
    },
}

impl Cli {
    /// Whether `--scenarios` (when given) names the flood.
    fn wants_flood(&self) -> bool {
        self.scenarios.as_deref().is_none_or(|names| {
            names
                .split(',')
                .any(|name| name.trim().eq_ignore_ascii_case("flood"))
        })
    }

    /// Whether `--scenarios` (when given) names `scenario`.
    fn wants(&self, scenario: Scenario) -> bool {
        self.scenarios.as_deref().is_none_or(|names| {
            names
                .split(',')
                .any(|name| name.trim().eq_ignore_ascii_case(scenario.name()))
        })
    }
}

/// One row of the report.
struct Row {
    scenario: &'static str,
    database: String,
    sim_latency: Duration,
    measured: Measured,
    /// The same scenario paced at half of `measured`'s throughput.
    half: Measured,
}

/// gRPC scenarios measured alone and under a flood of the shim, on one server.
struct FloodRow {
    database: String,
    /// (scenario, alone, under the flood).
    scenarios: Vec<(Scenario, Measured, Measured)>,
    flood: FloodReport,
    /// Requests the flood's time allowed at the shim's limit.
    offered: f64,
    /// Browser logins claimed or declined: the callback path's writes.
    callback_writes: f64,
    /// Logins started by the flood's authorize requests (nothing written).
    started: f64,
    /// Rows in `web_logins` afterwards, counted from outside the server.
    rows: i64,
}

/// VerifyToken and MiniProgramLogin alone, then with the shim flooded.
async fn under_flood(
    database: &str,
    server: &ServerProcess,
    load: Load,
) -> Result<FloodRow, String> {
    let mut scenarios = Vec::new();
    let mut report = FloodReport::default();
    let mut flooded_for = Duration::ZERO;
    for scenario in [Scenario::VerifyToken, Scenario::MiniProgramLogin] {
        let alone = measure(scenario, &server.grpc, &server.sim, load).await?;
        let flood = Flood::start(&server.http)?;
        let started = std::time::Instant::now();
        let flooded = measure(scenario, &server.grpc, &server.sim, load).await?;
        let part = flood.stop().await;
        flooded_for += started.elapsed();
        for (status, n) in part.statuses {
            *report.statuses.entry(status).or_default() += n;
        }
        eprintln!(
            "{} on {database} under a shim flood: {:.0} calls/s (alone {:.0})",
            scenario.name(),
            flooded.throughput(),
            alone.throughput()
        );
        scenarios.push((scenario, alone, flooded));
    }
    let events = "wechat_identity_web_login_events_total";
    let callback_writes = processes::counter(&server.admin, events, "event=\"claimed\"").await?
        + processes::counter(&server.admin, events, "event=\"declined\"").await?;
    let started = processes::counter(&server.admin, events, "event=\"started\"").await?;
    Ok(FloodRow {
        database: database.to_owned(),
        scenarios,
        flood: report,
        offered: flooded_for.as_secs_f64() * f64::from(flood::ADDRESSES * flood::PER_ADDRESS),
        callback_writes,
        started,
        rows: processes::count_rows(&server.database_url, "web_logins").await?,
    })
}

/// Measures `scenario` closed-loop, then paced at half the peak it found.
async fn peak_and_half(
    scenario: Scenario,
    url: &str,
    sim: &str,
    load: Load,
) -> Result<(Measured, Measured), String> {
    let peak = measure(scenario, url, sim, load).await?;
    let half = Load {
        pace: Some(peak.throughput() / 2.0),
        ..load
    };
    let paced = measure(scenario, url, sim, half).await?;
    Ok((peak, paced))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // reqwest (minting codes) is built without a default TLS provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("bench: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Some(Command::EchoServer { listen }) => echo::serve(listen).await,
            None => benchmark(&cli).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn benchmark(cli: &Cli) -> Result<(), String> {
    let (seconds, warmup) = if cli.quick {
        (0.5, 0.2)
    } else {
        (cli.seconds, cli.warmup)
    };
    let streams = if cli.quick {
        cli.streams.min(8)
    } else {
        cli.streams
    }
    .max(1);
    let load = Load {
        streams,
        warmup: Duration::from_secs_f64(warmup),
        duration: Duration::from_secs_f64(seconds),
        // Enough codes for 6,000 code-spending calls a second over all streams;
        // a stream that runs out stops, and the report says so.
        codes_per_stream: ((seconds + warmup) * 6000.0 / streams as f64).ceil() as usize + 50,
        pace: None,
    };
    let latencies: Vec<Duration> = cli
        .sim_latency_ms
        .split(',')
        .filter_map(|ms| ms.trim().parse().ok())
        .map(Duration::from_millis)
        .collect();

    let echo = ServerProcess::echo().await?;
    let (baseline, baseline_half) = peak_and_half(Scenario::Echo, &echo.grpc, "", load).await?;
    let echo_rss = echo.peak_rss();
    echo.stop().await;
    eprintln!("echo: {:.0} calls/s", baseline.throughput());

    let mut rows = vec![Row {
        scenario: Scenario::Echo.name(),
        database: "-".into(),
        sim_latency: Duration::ZERO,
        measured: baseline.clone(),
        half: baseline_half,
    }];
    let mut servers = Vec::new();
    let mut floods = Vec::new();
    for database in cli
        .databases
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
    {
        let target = match database {
            "sqlite" => "sqlite",
            "postgres" => cli.postgres.as_str(),
            other => return Err(format!("unknown database {other}")),
        };
        for &latency in &latencies {
            let server = ServerProcess::identity(target, latency, &cli.server_env).await?;
            for scenario in Scenario::IDENTITY {
                if !cli.wants(scenario) {
                    continue;
                }
                // With simulated latency, only the scenarios that call WeChat say anything new.
                if !latency.is_zero()
                    && !matches!(
                        scenario,
                        Scenario::MiniProgramLogin | Scenario::GetPhoneNumber
                    )
                {
                    continue;
                }
                let (measured, half) =
                    peak_and_half(scenario, &server.grpc, &server.sim, load).await?;
                eprintln!(
                    "{} on {database}, WeChat +{} ms: {:.0} calls/s",
                    scenario.name(),
                    latency.as_millis(),
                    measured.throughput()
                );
                rows.push(Row {
                    scenario: scenario.name(),
                    database: database.to_owned(),
                    sim_latency: latency,
                    measured,
                    half,
                });
            }
            if latency.is_zero() && cli.wants_flood() {
                floods.push(under_flood(database, &server, load).await?);
            }
            servers.push((
                database.to_owned(),
                latency,
                server.startup,
                server.peak_rss(),
            ));
            server.stop().await;
        }
    }

    let mut report = render(cli, load, &baseline, &rows, echo_rss, &servers);
    render_floods(&mut report, &floods);
    println!("{report}");
    if let Some(path) = &cli.out {
        std::fs::write(path, &report).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

/// A run's errors by code, or `none`.
fn errors(m: &Measured) -> String {
    if m.errors.is_empty() {
        return if m.ran_out {
            "none (ran out of codes)".to_owned()
        } else {
            "none".to_owned()
        };
    }
    m.errors
        .iter()
        .map(|(code, n)| format!("{code}: {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn ms(duration: Duration) -> String {
    format!("{:.2}", duration.as_secs_f64() * 1000.0)
}

fn mib(bytes: Option<u64>) -> String {
    bytes.map_or_else(|| "?".into(), |b| format!("{:.1}", b as f64 / 1_048_576.0))
}

fn render_floods(out: &mut String, floods: &[FloodRow]) {
    if floods.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\n## Under a flood of the public shim\n\n{} client addresses, each at the shim's default limit ({}/s), send forged callbacks (a well-formed state with a wrong MAC, a random cookie or none) and authorize requests, alternately, while the gRPC scenario runs; the same scenario alone just before, on the same server.\n",
        flood::ADDRESSES,
        flood::PER_ADDRESS
    );
    let _ = writeln!(
        out,
        "| database | scenario | calls/s alone | calls/s under the flood | ratio | p99 ms alone | p99 ms under the flood |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|");
    for row in floods {
        for (scenario, alone, flooded) in &row.scenarios {
            let _ = writeln!(
                out,
                "| {} | {} | {:.0} | {:.0} | {:.2} | {} | {} |",
                row.database,
                scenario.name(),
                alone.throughput(),
                flooded.throughput(),
                flooded.throughput() / alone.throughput().max(f64::EPSILON),
                ms(alone.quantile(0.99)),
                ms(flooded.quantile(0.99)),
            );
        }
    }
    let _ = writeln!(
        out,
        "\n| database | flood requests offered | sent | answers | logins started (no write) | callback writes | `web_logins` rows |"
    );
    let _ = writeln!(out, "|---|---:|---:|---|---:|---:|---:|");
    for row in floods {
        let _ = writeln!(
            out,
            "| {} | {:.0} | {} | {} | {:.0} | {:.0} | {} |",
            row.database,
            row.offered,
            row.flood.sent(),
            row.flood.summary(),
            row.started,
            row.callback_writes,
            row.rows,
        );
    }
}

fn render(
    cli: &Cli,
    load: Load,
    baseline: &Measured,
    rows: &[Row],
    echo_rss: Option<u64>,
    servers: &[(String, Duration, Duration, Option<u64>)],
) -> String {
    let mut out = String::new();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let _ = writeln!(out, "# Benchmarks\n");
    let _ = writeln!(
        out,
        "{} streams, {:.1} s measured after {:.1} s warm-up per scenario; client, servers and PostgreSQL share one machine ({cores} cores). Ratios are to the bare tonic echo measured in the same run.{}\n",
        load.streams,
        load.duration.as_secs_f64(),
        load.warmup.as_secs_f64(),
        if cli.quick {
            " **Quick run: figures are not meaningful.**"
        } else {
            ""
        },
    );
    let _ = writeln!(
        out,
        "| scenario | database | WeChat latency | calls/s | ratio to echo | p50 ms | p90 ms | p99 ms | max ms | errors |"
    );
    let _ = writeln!(out, "|---|---|---|---:|---:|---:|---:|---:|---:|---|");
    for row in rows {
        let m = &row.measured;
        let _ = writeln!(
            out,
            "| {} | {} | {} ms | {:.0} | {:.2} | {} | {} | {} | {} | {} |",
            row.scenario,
            row.database,
            row.sim_latency.as_millis(),
            m.throughput(),
            m.throughput() / baseline.throughput().max(f64::EPSILON),
            ms(m.quantile(0.5)),
            ms(m.quantile(0.9)),
            ms(m.quantile(0.99)),
            ms(m.quantile(1.0)),
            errors(m),
        );
    }
    let _ = writeln!(
        out,
        "\nThe same scenarios paced at half of each one's peak above (the streams share a fixed rate; a latency counts from the call's scheduled send time, so a server falling behind shows; tokio's timer adds up to 1 ms):\n"
    );
    let _ = writeln!(
        out,
        "| scenario | database | WeChat latency | offered calls/s | answered calls/s | p50 ms | p90 ms | p99 ms | max ms | errors |"
    );
    let _ = writeln!(out, "|---|---|---|---:|---:|---:|---:|---:|---:|---|");
    for row in rows {
        let m = &row.half;
        let _ = writeln!(
            out,
            "| {} | {} | {} ms | {:.0} | {:.0} | {} | {} | {} | {} | {} |",
            row.scenario,
            row.database,
            row.sim_latency.as_millis(),
            row.measured.throughput() / 2.0,
            m.throughput(),
            ms(m.quantile(0.5)),
            ms(m.quantile(0.9)),
            ms(m.quantile(0.99)),
            ms(m.quantile(1.0)),
            errors(m),
        );
    }
    let _ = writeln!(out, "\n| server | start-up to serving | peak RSS MiB |");
    let _ = writeln!(out, "|---|---:|---:|");
    let _ = writeln!(out, "| echo | - | {} |", mib(echo_rss));
    for (database, latency, startup, rss) in servers {
        let _ = writeln!(
            out,
            "| wechat-identity on {database}, WeChat +{} ms | {} ms | {} |",
            latency.as_millis(),
            ms(*startup),
            mib(*rss)
        );
    }
    out
}
