//! The single writer: one thread owns the write connection and commits in groups.
//!
//! Callers hand over closures. The thread takes every closure waiting in its queue, runs each in
//! its own savepoint inside one transaction, commits once (WAL + `synchronous=FULL`: the commit
//! returns after fsync), and only then answers each caller. A closure that fails rolls back its
//! own savepoint and nobody else's. One fsync thus acknowledges a whole batch: that is the group
//! commit that keeps "acknowledged means durable" fast.

use std::sync::mpsc;
use std::time::Instant;

use rusqlite::Connection;
use tokio::sync::{oneshot, watch};

use super::StoreError;

/// What a job hands back after running: a finisher told whether the batch committed.
type Finisher = Box<dyn FnOnce(Option<&StoreError>) + Send>;
/// A job runs against the open transaction and says whether its savepoint should be kept.
pub(super) type WriteJob = Box<dyn FnOnce(&Connection) -> (bool, Finisher) + Send>;

/// Largest number of jobs committed together; bounds the latency a batch adds.
const MAX_BATCH: usize = 512;

pub(super) fn job<T, F>(f: F) -> (WriteJob, oneshot::Receiver<Result<T, StoreError>>)
where
    F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    T: Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    let job: WriteJob = Box::new(move |conn| {
        let result = f(conn);
        let ok = result.is_ok();
        let finish: Finisher = Box::new(move |commit_error| {
            let _ = tx.send(match commit_error {
                None => result,
                Some(e) => Err(e.clone()),
            });
        });
        (ok, finish)
    });
    (job, rx)
}

/// Runs until every sender is dropped. `last_seq` is updated after each commit with the highest
/// event sequence number, which wakes webhook workers and SSE streams.
pub(super) fn run(mut conn: Connection, queue: mpsc::Receiver<WriteJob>, last_seq: watch::Sender<u64>) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let started = Instant::now();
        run_batch(&mut conn, batch);
        metrics::histogram!("switchboard_store_commit_seconds").record(started.elapsed().as_secs_f64());
        if let Ok(seq) = conn.query_row("SELECT coalesce(max(seq), 0) FROM events", [], |r| r.get::<_, i64>(0)) {
            last_seq.send_if_modified(|current| {
                let changed = *current != seq as u64;
                *current = seq as u64;
                changed
            });
        }
    }
    tracing::debug!("store writer stopped: all handles dropped");
}

fn run_batch(conn: &mut Connection, batch: Vec<WriteJob>) {
    let tx = match conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => {
            // Dropping the jobs unanswered makes every caller see `StoreError::Closed`.
            tracing::error!(error = %e, jobs = batch.len(), "cannot begin a write transaction");
            return;
        }
    };
    // A job alone needs no savepoint: if it fails, the whole transaction is rolled back.
    // Savepoints are not free: SQLite journals every page a savepoint changes, which for a large
    // job (a fetched batch of mails) is a copy of everything it writes.
    let alone = batch.len() == 1;
    let mut finishers = Vec::with_capacity(batch.len());
    let mut kept = 0;
    for (n, job) in batch.into_iter().enumerate() {
        let name = format!("j{n}");
        if !alone {
            if let Err(e) = tx.execute_batch(&format!("SAVEPOINT {name}")) {
                tracing::error!(error = %e, "cannot open a savepoint; the job is dropped");
                continue;
            }
        }
        // A panicking job (a bug) must not take the only writer down with it: its savepoint is
        // rolled back and its caller sees `StoreError::Closed`; the other jobs go on.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&tx)));
        let (keep, finish) = match outcome {
            Ok((keep, finish)) => (keep, Some(finish)),
            Err(_) => {
                tracing::error!("a store write panicked; its changes are rolled back");
                (false, None)
            }
        };
        if !alone {
            let end = if keep { format!("RELEASE {name}") } else { format!("ROLLBACK TO {name}; RELEASE {name}") };
            if let Err(e) = tx.execute_batch(&end) {
                tracing::error!(error = %e, "cannot close a savepoint");
            }
        }
        kept += usize::from(keep);
        finishers.extend(finish);
    }
    if alone && kept == 0 {
        // Dropping the transaction rolls it back; the caller gets the job's own error.
        drop(tx);
        finishers.into_iter().for_each(|f| f(None));
        return;
    }
    commit(tx, finishers);
}

fn commit(tx: rusqlite::Transaction<'_>, finishers: Vec<Finisher>) {
    match tx.commit() {
        Ok(()) => finishers.into_iter().for_each(|f| f(None)),
        Err(e) => {
            let error = StoreError::Commit(e.to_string());
            tracing::error!(error = %error, "commit failed; every job of the batch is refused");
            finishers.into_iter().for_each(|f| f(Some(&error)));
        }
    }
}

/// Frames in the WAL (4 KiB pages, so 16 MB) after which a checkpoint is asked for. SQLite's own
/// default is 1,000; a larger WAL means a page changed by many commits is copied once.
const CHECKPOINT_PAGES: i32 = 4096;
/// Frames after which the writer finishes the checkpoint itself. Under steady load the
/// checkpointer never quite catches up with the frames appended meanwhile, and the WAL can only
/// restart from its beginning once every frame is copied; the writer, appending nothing while it
/// does so, copies the (small) remainder, and the next transaction restarts the WAL.
const BACKSTOP_PAGES: i32 = 2 * CHECKPOINT_PAGES;

/// Moves WAL checkpoints off the writer thread. SQLite's automatic checkpoint runs inside the
/// commit that crosses the threshold, so the writer (and every caller waiting for it) would
/// spend that time copying pages into the database file. Instead the commit only wakes the
/// checkpointer thread, which runs a PASSIVE checkpoint beside the next transactions (WAL allows
/// that). The WAL restarts from its beginning at the first write after a complete checkpoint.
pub(super) fn hand_checkpoints_to(
    conn: &mut Connection,
    checkpointer: Connection,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let (wake, woken) = mpsc::sync_channel::<()>(1);
    // Held by whichever of the two threads is checkpointing. The writer, past the backstop,
    // waits for the checkpointer's pass to end and then copies the rest: were it to skip (SQLite
    // answers BUSY to a second checkpoint) and go on appending, a checkpointer slowed down by a
    // busy machine would let the WAL grow well past the backstop.
    let pass = std::sync::Arc::new(std::sync::Mutex::new(()));
    let writer_pass = pass.clone();
    let installed = conn.wal_hook(Some(move |wal: &mut rusqlite::hooks::Wal, pages: std::ffi::c_int| {
        // Never return an error from here: SQLite would report it as the result of a COMMIT
        // that is already durable, and the callers would be told their write failed.
        if pages >= BACKSTOP_PAGES {
            let _pass = writer_pass.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Err(e) = wal.checkpoint_v2(rusqlite::wal::CheckpointMode::PASSIVE) {
                tracing::debug!(error = %e, pages, "the writer's own WAL checkpoint did not run");
            }
        } else if pages >= CHECKPOINT_PAGES {
            // Full means a wake-up is already pending.
            let _ = wake.try_send(());
        }
        Ok(())
    }));
    if let Err(e) = installed {
        return Err(std::io::Error::other(format!("cannot install the WAL hook: {e}")));
    }
    // The thread ends when the writer's connection (which owns the hook and `wake`) is closed.
    std::thread::Builder::new().name("store-checkpoint".into()).spawn(move || {
        while woken.recv().is_ok() {
            let _pass = pass.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            match checkpointer.wal_checkpoint_v2(Some(rusqlite::MAIN_DB), rusqlite::wal::CheckpointMode::PASSIVE) {
                Ok(_) => {}
                // Another connection is checkpointing (one closing does): nothing is wrong.
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if matches!(e.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) =>
                {
                    tracing::debug!("WAL checkpoint skipped: another one is running");
                }
                Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed; it is retried after the next commits"),
            }
        }
    })
}
