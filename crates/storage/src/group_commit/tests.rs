//! The group committer's promises, on a SQLite file (the engine it runs on).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use tokio::sync::{Notify, mpsc};

use crate::error::{Constraint, DbFailure, StorageError};
use crate::sql::{Conn, query};
use crate::{KeyRing, Storage, StorageConfig};

async fn sqlite() -> (Storage, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("group.db").display());
    let keys = KeyRing::new(("k1".to_owned(), KeyRing::generate_key()), vec![]).expect("keys");
    let storage = Storage::connect(&StorageConfig::new(url), keys)
        .await
        .expect("connect");
    storage.migrate().await.expect("migrate");
    (storage, dir)
}

async fn insert(conn: &mut dyn Conn, name: &str) -> Result<(), DbFailure> {
    query("INSERT INTO key_material (name, ciphertext, created_at) VALUES ($1, $2, 0)")
        .bind(name.to_owned())
        .bind(vec![0u8])
        .execute(conn)
        .await?;
    Ok(())
}

/// The names in `key_material`, read through the reader pool: only what
/// was committed.
async fn committed(storage: &Storage) -> Vec<String> {
    query("SELECT name FROM key_material WHERE name LIKE 'job-%' ORDER BY name")
        .fetch_all(storage.reader())
        .await
        .expect("read")
        .iter()
        .map(|row| row.get::<String>("name").expect("a name"))
        .collect()
}

/// Holds the writer thread inside a job until released, so that the jobs
/// submitted meanwhile queue up and run as one batch.
async fn hold_the_writer(storage: &Storage) -> (Arc<Notify>, tokio::task::JoinHandle<()>) {
    let release = Arc::new(Notify::new());
    let (started, mut running) = mpsc::unbounded_channel();
    let holder = {
        let (storage, release) = (storage.clone(), release.clone());
        tokio::spawn(async move {
            storage
                .write((), move |_, _conn, ()| {
                    let (release, started) = (release.clone(), started.clone());
                    Box::pin(async move {
                        let _ = started.send(());
                        release.notified().await;
                        Ok(())
                    })
                })
                .await
                .expect("holder");
        })
    };
    running.recv().await.expect("holder started");
    (release, holder)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_failing_job_fails_alone_and_leaves_no_write() {
    let (storage, _dir) = sqlite().await;
    let (release, holder) = hold_the_writer(&storage).await;

    let retries = Arc::new(AtomicU32::new(0));
    let mut jobs = Vec::new();
    for name in ["job-a", "job-b", "job-c", "job-d"] {
        let (storage, retries) = (storage.clone(), retries.clone());
        jobs.push(tokio::spawn(async move {
            storage
                .write((), move |_, conn, ()| {
                    let retries = retries.clone();
                    Box::pin(async move {
                        insert(conn, name).await?;
                        match name {
                            // Fails after writing: the write must not survive.
                            "job-b" => {
                                Err(DbFailure::Fatal(StorageError::Conflict(Constraint::Other)))
                            }
                            // Loses a race once, then succeeds when run again.
                            "job-d" if retries.fetch_add(1, Ordering::SeqCst) < 2 => {
                                Err(DbFailure::Retry)
                            }
                            _ => Ok(name),
                        }
                    })
                })
                .await
        }));
        // Queued in this order behind the held writer.
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    release.notify_one();
    holder.await.expect("holder");

    let mut answers = Vec::new();
    for job in jobs {
        answers.push(job.await.expect("joined"));
    }
    assert!(matches!(answers[0], Ok("job-a")));
    assert!(matches!(
        answers[1],
        Err(StorageError::Conflict(Constraint::Other))
    ));
    assert!(matches!(answers[2], Ok("job-c")));
    assert!(matches!(answers[3], Ok("job-d")));
    assert_eq!(committed(&storage).await, ["job-a", "job-c", "job-d"]);
    let stats = storage.group_commit_stats().expect("sqlite groups");
    // The holder alone, then the four as one batch, rolled back, then the
    // three that succeed alone.
    assert_eq!(stats.rollbacks, 1, "{stats:?}");
    assert_eq!((stats.commits, stats.writes), (4, 4), "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_of_one_batch_see_each_others_writes_and_answer_after_commit() {
    let (storage, _dir) = sqlite().await;
    let (release, holder) = hold_the_writer(&storage).await;
    let mut jobs = Vec::new();
    for i in 0..10 {
        let storage = storage.clone();
        jobs.push(tokio::spawn(async move {
            let seen = storage
                .write((), move |_, conn, ()| {
                    Box::pin(async move {
                        let before: i64 =
                            query("SELECT COUNT(*) FROM key_material WHERE name LIKE 'job-%'")
                                .fetch_one(&mut *conn)
                                .await?
                                .get(0)?;
                        insert(conn, &format!("job-{i:02}")).await?;
                        Ok(before)
                    })
                })
                .await
                .expect("job");
            // Answered only once committed: another connection sees the row.
            let visible = committed(&storage).await;
            assert!(visible.contains(&format!("job-{i:02}")), "{visible:?}");
            seen
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    release.notify_one();
    holder.await.expect("holder");
    let mut seen = Vec::new();
    for job in jobs {
        seen.push(job.await.expect("joined"));
    }
    // One after another, each seeing every earlier write.
    seen.sort_unstable();
    assert_eq!(seen, (0..10).collect::<Vec<i64>>());
    assert_eq!(committed(&storage).await.len(), 10);
    let stats = storage.group_commit_stats().expect("sqlite groups");
    // The holder alone, then the ten in one transaction.
    assert_eq!(
        (stats.commits, stats.writes, stats.rollbacks),
        (2, 11, 0),
        "{stats:?}"
    );
}

fn a_bug() -> Result<(), DbFailure> {
    panic!("a bug in a write")
}

#[tokio::test]
async fn a_panicking_write_fails_alone_and_the_writer_goes_on() {
    let (storage, _dir) = sqlite().await;
    let panicked = storage
        .write((), |_, conn, ()| {
            Box::pin(async move {
                insert(conn, "job-panic").await?;
                a_bug()
            })
        })
        .await;
    assert!(
        matches!(panicked, Err(StorageError::Internal)),
        "{panicked:?}"
    );
    storage
        .write((), |_, conn, ()| {
            Box::pin(async move { insert(conn, "job-after").await })
        })
        .await
        .expect("the writer still runs");
    assert_eq!(committed(&storage).await, ["job-after"]);
}

#[tokio::test]
async fn a_closed_storage_answers_unavailable() {
    let (storage, _dir) = sqlite().await;
    storage.close().await;
    assert!(matches!(
        storage.ping().await,
        Err(StorageError::Unavailable)
    ));
    let answer = storage
        .write((), |_, conn, ()| {
            Box::pin(async move { insert(conn, "job-x").await })
        })
        .await;
    assert!(
        matches!(answer, Err(StorageError::Unavailable)),
        "{answer:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_is_checkpointed_off_the_commit_path() {
    let (storage, dir) = sqlite().await;
    for i in 0..50 {
        storage
            .write((), move |_, conn, ()| {
                Box::pin(async move { insert(conn, &format!("job-{i:02}")).await })
            })
            .await
            .expect("write");
    }
    // An immutable connection reads the database file alone, not the WAL:
    // it sees the rows once a checkpoint copied them there. Fifty small
    // writes are far below any automatic checkpoint of the writer's own.
    let file = format!(
        "sqlite://{}?immutable=1",
        dir.path().join("group.db").display()
    );
    let mut checkpointed = 0;
    for _ in 0..50 {
        let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&file)
            .await
            .expect("open the file");
        checkpointed = sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM key_material WHERE name LIKE 'job-%'",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap_or(0);
        if checkpointed == 50 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(checkpointed, 50, "rows still only in the WAL");
    let stats = storage.group_commit_stats().expect("sqlite");
    assert!(stats.checkpoints >= 1, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_refuses_at_once_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("group.db").display());
    let keys = KeyRing::new(("k1".to_owned(), KeyRing::generate_key()), vec![]).expect("keys");
    let config = StorageConfig {
        sqlite_write_queue: 2,
        ..StorageConfig::new(url)
    };
    let storage = Storage::connect(&config, keys).await.expect("connect");
    storage.migrate().await.expect("migrate");
    // The held job has left the queue; two more fill it.
    let (release, holder) = hold_the_writer(&storage).await;
    let mut queued = Vec::new();
    for name in ["job-1", "job-2"] {
        let storage = storage.clone();
        queued.push(tokio::spawn(async move {
            storage
                .write((), move |_, conn, ()| {
                    Box::pin(async move { insert(conn, name).await })
                })
                .await
        }));
    }
    // Let both reach the queue (each queues at its first poll).
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let refused = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        storage.write((), |_, conn, ()| {
            Box::pin(async move { insert(conn, "job-refused").await })
        }),
    )
    .await
    .expect("a write past a full queue is answered at once, not queued");
    assert!(
        matches!(refused, Err(StorageError::Overloaded)),
        "{refused:?}"
    );
    // A full queue is load, not an outage: readiness stays up.
    storage
        .ping()
        .await
        .expect("the storage answers a ping with its queue full");
    release.notify_one();
    holder.await.expect("holder");
    for job in queued {
        job.await.expect("joined").expect("a queued write commits");
    }
    assert_eq!(committed(&storage).await, ["job-1", "job-2"]);
    assert_eq!(
        storage.group_commit_stats().map(|stats| stats.refused),
        Some(1)
    );
}
