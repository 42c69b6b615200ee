//! SQLite WAL checkpoints off the commit path.
//!
//! By default SQLite checkpoints inside the `COMMIT` that grows the WAL past
//! 1,000 pages: that commit copies the WAL into the database file and syncs
//! both, and every write queued behind it waits (measured: 30–45 ms stalls
//! on the writer, the p90 of writes at half load). Here a task with its own
//! connection runs a passive checkpoint every [`INTERVAL`], which copies
//! what no reader still needs without taking the write lock, so the writer
//! only appends. The writer keeps an automatic checkpoint at
//! [`BACKSTOP_PAGES`] in case this task cannot keep up or cannot connect.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::{AnyConnection, Connection};

/// How often the WAL is checkpointed. A checkpoint's syncs stall the
/// writer's appends for about as long as they take, which grows with what
/// the WAL gathered since the last one: every 100 ms instead of 500 ms cut
/// the p99 of writes at half load to about a third (BENCHMARKS.md, issue 16).
const INTERVAL: Duration = Duration::from_millis(100);

/// The writer's own automatic checkpoint, as a backstop (pages of 4 KiB).
pub(crate) const BACKSTOP_PAGES: u32 = 20_000;

/// The checkpointing task; stops when dropped.
#[derive(Debug)]
pub(crate) struct Checkpointer {
    task: tokio::task::JoinHandle<()>,
    done: Arc<AtomicU64>,
}

impl Checkpointer {
    /// Starts checkpointing the database at `url` (a SQLite file).
    pub(crate) fn start(url: String) -> Self {
        let done = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(run(url, done.clone()));
        Self { task, done }
    }

    /// Checkpoints completed so far.
    pub(crate) fn completed(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(url: String, done: Arc<AtomicU64>) {
    let mut conn: Option<AnyConnection> = None;
    let mut ticks = tokio::time::interval(INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if conn.is_none() {
            match AnyConnection::connect(&url).await {
                Ok(fresh) => conn = Some(fresh),
                Err(error) => {
                    tracing::warn!(%error, "WAL checkpointer cannot connect; the writer checkpoints itself");
                    continue;
                }
            }
        }
        let Some(connection) = conn.as_mut() else {
            continue;
        };
        match sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&mut *connection)
            .await
        {
            Ok(_) => {
                done.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => {
                tracing::warn!(%error, "WAL checkpoint failed; reconnecting");
                conn = None;
            }
        }
    }
}
