//! Group commit on SQLite's one writer: every write runs on the thread that
//! owns the writer connection (`sqlite.rs`), and the writes queued at
//! the same moment run one after another in one transaction.
//!
//! SQLite allows one writer at a time, so writes were serial anyway; what
//! made them slow was not SQLite but the hops around it (see BENCHMARKS.md).
//! Here a statement is a function call on the connection's own thread, and
//! `BEGIN`, `COMMIT` and the wake-up of the thread are paid once per batch.
//!
//! A job runs exactly as it would alone: it sees every earlier job's writes,
//! as it would have after their commits. When any job of a batch fails, or the
//! batch cannot commit, the whole batch is rolled back and every job runs
//! again in its own transaction (retried as any write is), so one job's
//! failure is reported to that job alone and no partial write survives.
//! Results reach the callers only after the commit that holds their writes.
//!
//! The queue is bounded: when it is full a write is refused at once with
//! [`StorageError::Overloaded`] instead of growing memory and everyone's wait.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use crate::error::{DbFailure, StorageError};
use crate::sql::Conn;
use crate::sqlite::SqliteConn;
use crate::{Inner, Storage, changes};

/// At most this many jobs share a transaction: the first job of a batch
/// waits for the last, so a batch is kept short.
const MAX_BATCH: usize = 64;

/// The work of one write on `input`: run on the open transaction's
/// connection, as often as needed (a batch that failed runs it again alone).
pub(crate) trait Work<I, T>:
    for<'c> Fn(&'c Storage, &'c mut dyn Conn, &'c I) -> BoxFuture<'c, Result<T, DbFailure>>
    + Send
    + Sync
    + 'static
{
}

impl<I, T, F> Work<I, T> for F where
    F: for<'c> Fn(&'c Storage, &'c mut dyn Conn, &'c I) -> BoxFuture<'c, Result<T, DbFailure>>
        + Send
        + Sync
        + 'static
{
}

/// A queued write, its output kept until the commit decides its fate.
trait Job: Send {
    fn run<'c>(
        &'c mut self,
        storage: &'c Storage,
        conn: &'c mut dyn Conn,
    ) -> BoxFuture<'c, Result<(), DbFailure>>;
    fn span(&self) -> &tracing::Span;
    /// Answers the caller: the kept output, or `failure`.
    fn deliver(self: Box<Self>, failure: Option<StorageError>);
}

struct Pending<I, T, F> {
    input: I,
    work: F,
    output: Option<T>,
    reply: oneshot::Sender<Result<T, StorageError>>,
    span: tracing::Span,
}

impl<I: Send + Sync + 'static, T: Send + 'static, F: Work<I, T>> Job for Pending<I, T, F> {
    fn run<'c>(
        &'c mut self,
        storage: &'c Storage,
        conn: &'c mut dyn Conn,
    ) -> BoxFuture<'c, Result<(), DbFailure>> {
        let Self {
            input,
            work,
            output,
            ..
        } = self;
        Box::pin(async move {
            *output = None;
            // A panicking write must not take the writer thread (and with it
            // every later write) down: it fails alone, like any error.
            let done = AssertUnwindSafe(work(storage, conn, input))
                .catch_unwind()
                .await
                .unwrap_or_else(|_| {
                    tracing::error!("a write panicked");
                    Err(DbFailure::Fatal(StorageError::Internal))
                })?;
            *output = Some(done);
            Ok(())
        })
    }

    fn span(&self) -> &tracing::Span {
        &self.span
    }

    fn deliver(self: Box<Self>, failure: Option<StorageError>) {
        let result = match (failure, self.output) {
            (Some(error), _) => Err(error),
            (None, Some(output)) => Ok(output),
            (None, None) => Err(StorageError::Internal),
        };
        // The caller may have gone; its writes are committed all the same.
        let _ = self.reply.send(result);
    }
}

/// The handle the storage keeps: jobs go in, the writer thread runs them.
#[derive(Debug)]
pub(crate) struct GroupCommit {
    /// `None` once closed: the thread finishes what is queued and ends.
    jobs: std::sync::RwLock<Option<mpsc::Sender<Box<dyn Job>>>>,
    /// Told when the thread ended (and the connection is closed).
    ended: tokio::sync::Mutex<Option<oneshot::Receiver<()>>>,
    /// Whether the writer thread still runs.
    running: Arc<std::sync::atomic::AtomicBool>,
    counters: Arc<Counters>,
}

/// What the group committer did since the process started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupCommitStats {
    /// Transactions committed (a batch, or one write alone).
    pub commits: u64,
    /// Writes committed by them: `writes / commits` is the mean batch size.
    pub writes: u64,
    /// Batches rolled back because one of their writes (or the commit)
    /// failed; their writes then ran again one by one.
    pub rollbacks: u64,
    /// Writes refused because the queue was full.
    pub refused: u64,
    /// WAL checkpoints run off the commit path (see `checkpoint`).
    pub checkpoints: u64,
}

#[derive(Debug, Default)]
struct Counters {
    commits: AtomicU64,
    writes: AtomicU64,
    rollbacks: AtomicU64,
    refused: AtomicU64,
}

impl Counters {
    fn committed(&self, writes: usize) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.writes
            .fetch_add(u64::try_from(writes).unwrap_or(u64::MAX), Ordering::Relaxed);
    }
}

impl std::fmt::Debug for dyn Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Job")
    }
}

impl GroupCommit {
    /// Starts the writer thread on `conn`, for the storage behind `storage`;
    /// at most `capacity` writes wait in its queue. The thread holds the
    /// storage only while it runs a batch, and ends once the storage is
    /// dropped. It enters the current runtime, so a write may use tokio.
    pub(crate) fn start(
        storage: Weak<Inner>,
        conn: SqliteConn,
        capacity: usize,
    ) -> Result<Self, StorageError> {
        let (jobs, queue) = mpsc::channel(capacity.max(1));
        let counters = Arc::new(Counters::default());
        let runtime = tokio::runtime::Handle::current();
        let thread_counters = counters.clone();
        let (end, ended) = oneshot::channel();
        let running = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let thread_running = running.clone();
        std::thread::Builder::new()
            .name("sqlite-writer".to_owned())
            .spawn(move || {
                let _runtime = runtime.enter();
                serve(&storage, conn, queue, &thread_counters);
                thread_running.store(false, Ordering::Release);
                let _ = end.send(());
            })
            .map_err(|error| {
                tracing::error!(%error, "cannot start the SQLite writer thread");
                StorageError::Internal
            })?;
        Ok(Self {
            jobs: std::sync::RwLock::new(Some(jobs)),
            ended: tokio::sync::Mutex::new(Some(ended)),
            running,
            counters,
        })
    }

    /// Whether the writer takes writes: its thread runs and it was not closed.
    /// (A full queue is not a failure: it answers `Overloaded` and drains.)
    pub(crate) fn is_running(&self) -> bool {
        self.running.load(Ordering::Acquire) && self.jobs.read().is_ok_and(|jobs| jobs.is_some())
    }

    /// Refuses new writes ([`StorageError::Unavailable`]), lets the queued
    /// ones finish, and waits for the writer to close its connection.
    pub(crate) async fn close(&self) {
        if let Ok(mut jobs) = self.jobs.write() {
            jobs.take();
        }
        if let Some(ended) = self.ended.lock().await.take() {
            let _ = ended.await;
        }
    }

    /// What it did so far.
    pub(crate) fn stats(&self) -> GroupCommitStats {
        GroupCommitStats {
            commits: self.counters.commits.load(Ordering::Relaxed),
            writes: self.counters.writes.load(Ordering::Relaxed),
            rollbacks: self.counters.rollbacks.load(Ordering::Relaxed),
            refused: self.counters.refused.load(Ordering::Relaxed),
            checkpoints: 0,
        }
    }

    /// Queues `work` on `input` and waits for the commit that holds it;
    /// [`StorageError::Overloaded`] at once when the queue is full.
    pub(crate) async fn submit<I: Send + Sync + 'static, T: Send + 'static>(
        &self,
        input: I,
        work: impl Work<I, T>,
    ) -> Result<T, StorageError> {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(Pending {
            input,
            work,
            output: None,
            reply,
            span: tracing::Span::current(),
        });
        let sent = match self.jobs.read().as_deref() {
            Ok(Some(jobs)) => jobs.try_send(job),
            _ => return Err(StorageError::Unavailable),
        };
        match sent {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.counters.refused.fetch_add(1, Ordering::Relaxed);
                return Err(StorageError::Overloaded);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(StorageError::Unavailable),
        }
        answer.await.unwrap_or(Err(StorageError::Unavailable))
    }
}

fn serve(
    storage: &Weak<Inner>,
    mut conn: SqliteConn,
    mut queue: mpsc::Receiver<Box<dyn Job>>,
    counters: &Counters,
) {
    let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = queue.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            let Ok(job) = queue.try_recv() else { break };
            batch.push(job);
        }
        // Gone only when every handle was dropped with writes still queued.
        let Some(inner) = storage.upgrade() else {
            for job in batch.drain(..) {
                job.deliver(Some(StorageError::Unavailable));
            }
            continue;
        };
        let storage = Storage { inner };
        if batch.len() == 1 || !run_together(&storage, &mut conn, counters, &mut batch) {
            if batch.len() > 1 {
                counters.rollbacks.fetch_add(1, Ordering::Relaxed);
            }
            for mut job in batch.drain(..) {
                let span = job.span().clone();
                span.record("db.operation.batch.size", 1);
                let outcome = span.in_scope(|| run_alone(&storage, &mut conn, job.as_mut()));
                if outcome.is_ok() {
                    counters.committed(1);
                }
                job.deliver(outcome.err());
            }
        }
    }
}

/// Runs the batch in one transaction and answers every job; `false` (nothing
/// answered, nothing written) when a job or the commit failed.
fn run_together(
    storage: &Storage,
    conn: &mut SqliteConn,
    counters: &Counters,
    batch: &mut Vec<Box<dyn Job>>,
) -> bool {
    if let Err(error) = conn.begin() {
        tracing::debug!(%error, "a group of writes could not begin: each runs alone");
        return false;
    }
    let jobs = batch.len();
    for job in batch.iter() {
        job.span().record("db.operation.batch.size", jobs);
    }
    let (ran, changes) = futures::executor::block_on(changes::tracking(async {
        for job in batch.iter_mut() {
            let span = job.span().clone();
            if let Err(failure) = job.run(storage, &mut *conn).instrument(span).await {
                tracing::debug!(%failure, jobs, "a grouped write failed: each runs alone");
                return false;
            }
        }
        true
    }));
    if !ran {
        conn.rollback();
        return false;
    }
    if let Err(error) = conn.commit() {
        tracing::debug!(%error, "a group commit failed: each write runs alone");
        conn.rollback();
        return false;
    }
    storage.committed(&changes);
    counters.committed(batch.len());
    for job in batch.drain(..) {
        job.deliver(None);
    }
    true
}

/// Runs one job in a transaction of its own, again when it lost a race.
fn run_alone(
    storage: &Storage,
    conn: &mut SqliteConn,
    job: &mut dyn Job,
) -> Result<(), StorageError> {
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        conn.begin()?;
        let (outcome, changes) =
            futures::executor::block_on(changes::tracking(job.run(storage, &mut *conn)));
        let outcome = outcome.and_then(|()| conn.commit().map_err(DbFailure::from));
        if outcome.is_err() {
            conn.rollback();
        } else {
            storage.committed(&changes);
        }
        if let Some(answer) = DbFailure::settle(outcome, attempt) {
            return answer;
        }
    }
}

#[cfg(test)]
mod tests;
