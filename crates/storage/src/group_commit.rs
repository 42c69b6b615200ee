//! Group commit for SQLite's one writer connection: the hot writes (refresh
//! token rotations, logins) queued at the same moment run one after another in
//! one transaction, from one writer task.
//!
//! SQLite allows one writer at a time, so those writes were serial anyway; what
//! made them slow was not SQLite but the hops around it. Every statement is a
//! round trip to sqlx's connection thread, and every transaction paid for
//! `BEGIN`, `COMMIT` and a hand-over of the pool's one connection to the next
//! waiting task. Here the statements of a batch run back to back from one
//! task, and `BEGIN`, `COMMIT` and the hand-over are paid once per batch.
//!
//! A job runs exactly as it would alone: it sees every earlier job's writes,
//! as it would have after their commits. When any job of a batch fails, or the
//! batch cannot commit, the whole batch is rolled back and every job runs
//! again in its own transaction (retried as `write_tx!` does), so one job's
//! failure is reported to that job alone and no partial write survives.
//! Results reach the callers only after the commit that holds their writes.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use futures::FutureExt;
use futures::future::BoxFuture;
use sqlx::AnyConnection;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use crate::error::{DbFailure, StorageError};
use crate::{Inner, Storage, session_epoch, write_tx};

/// At most this many jobs share a transaction: the first job of a batch
/// waits for the last, so a batch is kept short.
const MAX_BATCH: usize = 64;

/// The work of one write on `input`: run on the open transaction's
/// connection, as often as needed (a batch that failed runs it again alone).
pub(crate) trait Work<I, T>:
    for<'c> Fn(&'c Storage, &'c mut AnyConnection, &'c I) -> BoxFuture<'c, Result<T, DbFailure>>
    + Send
    + Sync
    + 'static
{
}

impl<I, T, F> Work<I, T> for F where
    F: for<'c> Fn(&'c Storage, &'c mut AnyConnection, &'c I) -> BoxFuture<'c, Result<T, DbFailure>>
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
        conn: &'c mut AnyConnection,
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
        conn: &'c mut AnyConnection,
    ) -> BoxFuture<'c, Result<(), DbFailure>> {
        let Self {
            input,
            work,
            output,
            ..
        } = self;
        Box::pin(async move {
            *output = None;
            // A panicking write must not take the writer task (and with it
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

/// The handle the storage keeps: jobs go in, the writer task runs them.
#[derive(Debug)]
pub(crate) struct GroupCommit {
    jobs: mpsc::UnboundedSender<Box<dyn Job>>,
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
    /// WAL checkpoints run off the commit path (see `checkpoint`).
    pub checkpoints: u64,
}

#[derive(Debug, Default)]
struct Counters {
    commits: AtomicU64,
    writes: AtomicU64,
    rollbacks: AtomicU64,
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
    /// Starts the writer task for the storage behind `storage`, on the
    /// current runtime. The task holds the storage only while it runs a
    /// batch, and ends once the storage is dropped.
    pub(crate) fn start(storage: Weak<Inner>) -> Self {
        let (jobs, queue) = mpsc::unbounded_channel();
        let counters = Arc::new(Counters::default());
        tokio::spawn(serve(storage, queue, counters.clone()));
        Self { jobs, counters }
    }

    /// What it did so far.
    pub(crate) fn stats(&self) -> GroupCommitStats {
        GroupCommitStats {
            commits: self.counters.commits.load(Ordering::Relaxed),
            writes: self.counters.writes.load(Ordering::Relaxed),
            rollbacks: self.counters.rollbacks.load(Ordering::Relaxed),
            checkpoints: 0,
        }
    }

    /// Queues `work` on `input` and waits for the commit that holds it.
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
        if self.jobs.send(job).is_err() {
            return Err(StorageError::Unavailable);
        }
        answer.await.unwrap_or(Err(StorageError::Unavailable))
    }
}

async fn serve(
    storage: Weak<Inner>,
    mut queue: mpsc::UnboundedReceiver<Box<dyn Job>>,
    counters: Arc<Counters>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        // Gone only when every handle was dropped with writes still queued.
        let Some(inner) = storage.upgrade() else {
            for job in batch.drain(..) {
                job.deliver(Some(StorageError::Unavailable));
            }
            continue;
        };
        let storage = Storage { inner };
        if batch.len() == 1 || !run_together(&storage, &counters, &mut batch).await {
            if batch.len() > 1 {
                counters.rollbacks.fetch_add(1, Ordering::Relaxed);
            }
            for mut job in batch.drain(..) {
                let span = job.span().clone();
                let outcome = run_alone(&storage, job.as_mut()).instrument(span).await;
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
async fn run_together(
    storage: &Storage,
    counters: &Counters,
    batch: &mut Vec<Box<dyn Job>>,
) -> bool {
    let Ok(mut tx) = storage.begin_write().await else {
        return false;
    };
    let (ran, sessions_changed) = session_epoch::tracking(async {
        for job in batch.iter_mut() {
            let span = job.span().clone();
            if let Err(failure) = job.run(storage, &mut tx).instrument(span).await {
                tracing::debug!(%failure, jobs = batch.len(), "a grouped write failed: each runs alone");
                return false;
            }
        }
        true
    })
    .await;
    if !ran {
        if let Err(error) = tx.rollback().await {
            tracing::warn!(%error, "rolling back a failed group of writes failed");
        }
        return false;
    }
    if let Err(error) = tx.commit().await {
        tracing::debug!(%error, "a group commit failed: each write runs alone");
        return false;
    }
    if sessions_changed {
        storage.sessions_changed();
    }
    counters.committed(batch.len());
    for job in batch.drain(..) {
        job.deliver(None);
    }
    true
}

async fn run_alone(storage: &Storage, job: &mut dyn Job) -> Result<(), StorageError> {
    write_tx!(storage, |tx| job.run(storage, &mut tx).await)
}

#[cfg(test)]
mod tests;
