//! The load generator: a fixed number of concurrent streams for a fixed time;
//! every latency kept, errors counted by status code.
//!
//! Closed loop (no pace): each stream sends its next call as soon as the last
//! one answered, which finds the peak. Paced: the streams share a fixed rate,
//! each call has a scheduled send time, and its latency counts from that time
//! even when the stream is late (so a server that falls behind shows it in
//! the latencies, instead of silently lowering the load).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What one scenario run measured.
#[derive(Debug, Clone, Default)]
pub(crate) struct Measured {
    /// Successful calls.
    pub(crate) ok: u64,
    /// Failed calls by gRPC code name.
    pub(crate) errors: BTreeMap<String, u64>,
    /// How long the run took.
    pub(crate) elapsed: Duration,
    /// Latencies of the successful calls, sorted, in microseconds.
    pub(crate) latencies_us: Vec<u64>,
    /// Whether some stream stopped before the end for want of codes.
    pub(crate) ran_out: bool,
}

impl Measured {
    /// Successful calls per second.
    pub(crate) fn throughput(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }

    /// The `q` quantile (0..=1) of the latencies.
    pub(crate) fn quantile(&self, q: f64) -> Duration {
        if self.latencies_us.is_empty() {
            return Duration::ZERO;
        }
        let last = self.latencies_us.len() - 1;
        let index = ((last as f64) * q).round() as usize;
        Duration::from_micros(self.latencies_us[index.min(last)])
    }
}

/// Runs `streams` concurrent loops of `call` for `duration` (after `warmup`,
/// which is not measured), closed-loop or at `pace` calls per second in all.
/// `call(stream, n)` makes the n-th call of a stream; `None` ends that stream
/// early (it ran out of minted codes).
pub(crate) async fn run<F, Fut>(
    streams: usize,
    warmup: Duration,
    duration: Duration,
    pace: Option<f64>,
    call: F,
) -> Measured
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Option<Result<(), tonic::Code>>> + Send,
{
    let call = Arc::new(call);
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + duration;
    let mut tasks = tokio::task::JoinSet::new();
    // Each stream's share of the pace, its first call offset so the streams'
    // schedules interleave evenly.
    let interval = pace
        .filter(|rate| *rate > 0.0)
        .map(|rate| Duration::from_secs_f64(streams as f64 / rate));
    for stream in 0..streams {
        let call = call.clone();
        tasks.spawn(async move {
            let mut mine = Measured::default();
            let mut n = 0;
            loop {
                let sent = match interval {
                    Some(interval) => {
                        let offset = interval.mul_f64(stream as f64 / streams as f64);
                        let scheduled = start + offset + interval.mul_f64(n as f64);
                        tokio::time::sleep_until(scheduled.into()).await;
                        scheduled
                    }
                    None => Instant::now(),
                };
                if sent >= end {
                    break;
                }
                let Some(result) = call(stream, n).await else {
                    mine.ran_out = true;
                    break;
                };
                n += 1;
                if sent < measure_from {
                    continue;
                }
                match result {
                    Ok(()) => {
                        mine.ok += 1;
                        mine.latencies_us
                            .push(u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX));
                    }
                    Err(code) => *mine.errors.entry(format!("{code:?}")).or_default() += 1,
                }
            }
            mine
        });
    }
    let mut all = Measured::default();
    while let Some(done) = tasks.join_next().await {
        let Ok(part) = done else { continue };
        all.ok += part.ok;
        all.ran_out |= part.ran_out;
        for (code, count) in part.errors {
            *all.errors.entry(code).or_default() += count;
        }
        all.latencies_us.extend(part.latencies_us);
    }
    all.elapsed = Instant::now().saturating_duration_since(measure_from);
    all.latencies_us.sort_unstable();
    all
}
