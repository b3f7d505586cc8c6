//! The durable store: SQLite in WAL mode under `storage.path`, plus attachment blobs.
//!
//! Invariant: only this module opens the database. Writes go through one writer thread with group
//! commit (`writer.rs`); a write returns only after its transaction is on disk. Reads use a small
//! pool of read-only connections, which WAL lets run beside the writer. The domain queries live in
//! the submodules (`messages`, `events`, `outbound`, `webhooks`) as plain functions over a
//! `&Connection`, so the pipeline composes them inside one `write` closure = one transaction.

pub mod backup;
pub mod blobs;
pub mod conversations;
pub mod events;
pub mod mail;
pub mod messages;
mod migrations;
pub mod outbound;
pub mod retention;
pub mod space;
pub mod webhooks;
mod writer;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use rusqlite::{Connection, OpenFlags};
use tokio::sync::watch;

pub use blobs::{hex, BlobFile, Blobs, Packed};

#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// A statement failed; the transaction (or the job's savepoint) was rolled back.
    #[error("database error: {0}")]
    Sqlite(String),
    /// The batch could not be committed: nothing of it is stored.
    #[error("commit failed: {0}")]
    Commit(String),
    /// The writer is gone (shutting down or crashed).
    #[error("the store is closed")]
    Closed,
    #[error("storage I/O error: {0}")]
    Io(String),
    #[error("{0}")]
    Schema(String),
    /// A conditional write found the state it depends on changed (a checkpoint moved).
    #[error("stale: {0}")]
    Stale(String),
    /// Stored data that does not parse: a bug or a hand-edited database.
    #[error("corrupt record: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// The disk (or the database's size limit) is full: nothing was stored, and a retry once
    /// space is freed will do.
    pub fn is_storage_full(&self) -> bool {
        match self {
            StoreError::Sqlite(e) | StoreError::Commit(e) | StoreError::Io(e) => {
                // SQLite's SQLITE_FULL, and ENOSPC as std::io::Error shows it.
                e.contains("database or disk is full") || e.contains("(os error 28)")
            }
            _ => false,
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Sqlite(e.to_string())
    }
}

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        StoreError::Io(e.to_string())
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}

/// What `Store::put_blobs` stored.
#[derive(Debug, Default)]
pub struct StoredBlobs {
    /// Each blob's SHA-256, in the order given.
    pub names: Vec<String>,
    /// The blobs new to the store, to index with what refers to them.
    pub packed: Vec<Packed>,
    /// The blobs found indexed already, and not packed again.
    pub reused: Vec<String>,
    /// How many prunes had removed blobs when the index was asked (`retention`).
    pub removals_seen: u64,
}

/// The store's side of a transaction that stores attachments (an inbound item or batch, a
/// send): the blobs `put_blobs` packed for it, which it indexes, and the `server.public_url` it
/// records when `Store::use_public_url` could not. One mechanism for every such transaction.
#[derive(Clone, Debug, Default)]
pub struct NewAttachments {
    packed: Vec<Packed>,
    unrecorded_public_url: Option<String>,
    /// Blobs referred to without being packed again, and whether a prune removed any blob
    /// since they were found indexed: then they are looked for again in the transaction.
    reused: Vec<String>,
    removals_seen: u64,
    blobs_removed: Arc<AtomicU64>,
}

impl NewAttachments {
    /// Inside the transaction, after what refers to the blobs is written. `needed`: the blobs
    /// the transaction's rows refer to, when not all are (a duplicate's are not): only those
    /// are indexed, so that no index row points at bytes nothing needs. Returns whether it
    /// indexed any new blob (or had none to index): if not, `settle` removes the pack.
    pub fn write(&self, conn: &Connection, needed: Option<&HashSet<String>>) -> Result<bool, StoreError> {
        if let Some(public_url) = &self.unrecorded_public_url {
            messages::former_public_urls(conn, public_url)?;
        }
        if self.blobs_removed.load(Ordering::SeqCst) != self.removals_seen {
            let mut stmt = conn.prepare_cached("SELECT 1 FROM blobs WHERE sha256 = ?1")?;
            for sha in &self.reused {
                if !stmt.exists([sha])? {
                    return Err(StoreError::Stale(format!("blob {sha} was removed by retention meanwhile")));
                }
            }
        }
        let Some(needed) = needed else {
            blobs::index(conn, &self.packed)?;
            return Ok(true);
        };
        let indexed: Vec<Packed> = self.packed.iter().filter(|p| needed.contains(&p.sha256)).cloned().collect();
        blobs::index(conn, &indexed)?;
        Ok(self.packed.is_empty() || !indexed.is_empty())
    }

    /// After it: `Ok(true)` if it committed having written these, `Ok(false)` if it committed
    /// without them (a refusal, an idempotent replay), `Err` if it failed. Packs nothing refers
    /// to are removed at once (on a full disk every retry would otherwise leave one more until
    /// the next start sweeps them), unless the writer is gone and whether it committed is
    /// unknown; a recorded URL is noted.
    pub async fn settle(self, store: &Store, written: Result<bool, &StoreError>) {
        match written {
            Ok(true) => {
                if self.unrecorded_public_url.is_some() {
                    *store.inner.unrecorded_public_url.lock().expect("public url lock") = None;
                }
            }
            Err(StoreError::Closed) => {}
            Ok(false) | Err(_) => {
                let mut packs: Vec<String> = self.packed.into_iter().map(|p| p.location.pack).collect();
                packs.dedup();
                if packs.is_empty() {
                    return;
                }
                let files = store.inner.blobs.clone();
                let _ = tokio::task::spawn_blocking(move || packs.iter().for_each(|p| files.remove_pack(p))).await;
            }
        }
    }
}

/// A cheap handle; clone it freely.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    db_path: PathBuf,
    writer: Mutex<Option<mpsc::Sender<writer::WriteJob>>>,
    writer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    checkpoint_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    readers: Mutex<Vec<Connection>>,
    last_seq: watch::Receiver<u64>,
    blobs: Blobs,
    /// Named locks for read-modify-write sequences that span a network call (see `lock`).
    named_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The open lock file that keeps other processes off this storage until `close`.
    lock: Mutex<Option<std::fs::File>>,
    /// When store migration 8 changed how mail is known for deduplication, if the store held
    /// mail then (read once: only that migration writes it).
    mail_source_keys_before: Option<i64>,
    /// Where stored files are downloaded now, and the bases stored URLs may still name.
    attachment_urls: std::sync::RwLock<Arc<crate::model::AttachmentUrls>>,
    /// The current `server.public_url`, until the store has recorded it (see `use_public_url`).
    unrecorded_public_url: Mutex<Option<String>>,
    /// The highest event `seq` retention removed (`retention`).
    events_pruned_through: AtomicU64,
    /// How many prunes removed blobs (see `NewAttachments`).
    blobs_removed: Arc<AtomicU64>,
}

const IDLE_READERS: usize = 8;

impl Store {
    /// Opens (creating if needed) the store under `dir` and starts the writer thread.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Io(format!("cannot create {}: {e}", dir.display())))?;
        let lock = lock_storage(dir)?;
        let db_path = dir.join("switchboard.db");
        let mut conn = Connection::open(&db_path)?;
        // The writer keeps savepoint journals in memory and up to 16 MiB of pages cached (a
        // fetched batch of mails touches many index pages; this cache made a backlog import
        // about 7 % faster than SQLite's 2 MiB default). Both are fixed bounds.
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA foreign_keys = ON;
             PRAGMA busy_timeout = 5000;
             PRAGMA temp_store = MEMORY;
             PRAGMA cache_size = -16384;",
        )?;
        migrations::migrate(&mut conn)?;
        let mail_source_keys_before = mail::source_keys_before(&conn)?;
        let checkpointer = Connection::open(&db_path)?;
        // Until it has read the database, a connection does not know it is in WAL mode (and
        // a checkpoint would silently do nothing).
        checkpointer.execute_batch("PRAGMA busy_timeout = 5000;")?;
        let mode: String = checkpointer.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
        if mode != "wal" {
            return Err(StoreError::Schema(format!("the database is in {mode} mode, not WAL")));
        }
        let blobs = Blobs::open(dir.join("blobs"))?;
        // Nothing is in flight yet (the lock keeps other processes out): a pack no index row
        // refers to was left by a batch that never committed.
        let indexed = conn
            .prepare("SELECT DISTINCT pack FROM blobs")?
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<Result<HashSet<_>, _>>()?;
        let swept = blobs.sweep_packs(&indexed)?;
        if swept > 0 {
            tracing::info!(packs = swept, "removed blob packs left by batches that never committed");
        }
        let events_pruned_through = retention::events_pruned_through(&conn)?;
        let checkpoint_thread = writer::hand_checkpoints_to(&mut conn, checkpointer)?;
        let seq: i64 = conn.query_row("SELECT coalesce(max(seq), 0) FROM events", [], |r| r.get(0))?;
        let (seq_tx, seq_rx) = watch::channel(seq as u64);
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer::run(conn, rx, seq_tx))
            .map_err(|e| StoreError::Io(e.to_string()))?;
        Ok(Store {
            inner: Arc::new(Inner {
                db_path,
                writer: Mutex::new(Some(tx)),
                writer_thread: Mutex::new(Some(thread)),
                checkpoint_thread: Mutex::new(Some(checkpoint_thread)),
                readers: Mutex::new(Vec::new()),
                last_seq: seq_rx,
                blobs,
                named_locks: Mutex::default(),
                lock: Mutex::new(Some(lock)),
                mail_source_keys_before,
                attachment_urls: std::sync::RwLock::default(),
                unrecorded_public_url: Mutex::default(),
                events_pruned_through: AtomicU64::new(events_pruned_through),
                blobs_removed: Arc::default(),
            }),
        })
    }

    /// Runs `f` inside the next group-committed transaction. Returns once the batch is durable
    /// (or with the error that made `f`'s savepoint, or the whole batch, roll back).
    pub async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        self.submit(f).await
    }

    /// `write`, queued at once: jobs run in the order `submit` was called, whenever their
    /// futures are awaited. A pull channel uses this to keep a second batch waiting behind the
    /// one being committed.
    pub fn submit<T, F>(&self, f: F) -> impl std::future::Future<Output = Result<T, StoreError>> + Send + 'static
    where
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let (job, rx) = writer::job(f);
        let sent = {
            let guard = self.inner.writer.lock().expect("writer lock");
            guard.as_ref().ok_or(StoreError::Closed).and_then(|s| s.send(job).map_err(|_| StoreError::Closed))
        };
        async move {
            sent?;
            rx.await.map_err(|_| StoreError::Closed)?
        }
    }

    /// Runs `f` on a read-only connection on the blocking pool.
    pub async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.read_blocking(f)).await.map_err(|_| StoreError::Closed)?
    }

    /// `read` for code already on a blocking thread.
    pub fn read_blocking<T>(&self, f: impl FnOnce(&Connection) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let conn = self.inner.readers.lock().expect("reader pool lock").pop();
        let conn = match conn {
            Some(c) => c,
            None => {
                let c = Connection::open_with_flags(
                    &self.inner.db_path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                c.execute_batch("PRAGMA busy_timeout = 5000;")?;
                c
            }
        };
        let result = f(&conn);
        let mut pool = self.inner.readers.lock().expect("reader pool lock");
        if pool.len() < IDLE_READERS {
            pool.push(conn);
        }
        result
    }

    /// The highest event `seq` that retention removed (0: none): a reader asking for events
    /// after an earlier one would miss some.
    pub fn events_pruned_through(&self) -> u64 {
        self.inner.events_pruned_through.load(Ordering::SeqCst)
    }

    /// Highest committed event `seq`; changes after every commit that appended events.
    pub fn last_seq(&self) -> watch::Receiver<u64> {
        self.inner.last_seq.clone()
    }

    /// When store migration 8 ran, if the store held mail then: mail that reached its mailbox
    /// before may be stored under its whole-source key (`RawInbound::superseded_dedup_key`).
    pub fn mail_source_keys_before(&self) -> Option<i64> {
        self.inner.mail_source_keys_before
    }

    /// Makes `public_url` the base of new attachment URLs, and remembers it, so that URLs stored
    /// under it are rewritten on the way out once it changes (`model::AttachmentUrls`).
    /// A store that cannot take the write (a full disk) still starts: then the first
    /// transaction that stores attachment URLs records it (`NewAttachments`), and the former
    /// bases are known from the next start.
    pub async fn use_public_url(&self, public_url: &str) {
        let current = public_url.to_owned();
        let former = match self.write(move |c| messages::former_public_urls(c, &current)).await {
            Ok(former) => former,
            Err(e) => {
                tracing::warn!(error = %e, "cannot record server.public_url in the store yet; the first attachment stored will");
                *self.inner.unrecorded_public_url.lock().expect("public url lock") = Some(public_url.to_owned());
                Vec::new()
            }
        };
        if !former.is_empty() {
            tracing::info!(former = ?former, now = public_url, "attachment URLs under a former server.public_url are given out under the current one");
        }
        let urls = Arc::new(crate::model::AttachmentUrls::new(public_url, &former));
        *self.inner.attachment_urls.write().unwrap_or_else(|e| e.into_inner()) = urls;
    }

    /// Where stored files are downloaded (`use_public_url`; until then, paths alone).
    pub fn attachment_urls(&self) -> Arc<crate::model::AttachmentUrls> {
        self.inner.attachment_urls.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn blobs(&self) -> &Blobs {
        &self.inner.blobs
    }

    /// What a transaction that stores the attachments `put_blobs` stored must write with them
    /// (`NewAttachments::write`), and settle after it.
    pub fn new_attachments(&self, stored: StoredBlobs) -> NewAttachments {
        let unrecorded_public_url = self.inner.unrecorded_public_url.lock().expect("public url lock").clone();
        NewAttachments {
            packed: stored.packed,
            unrecorded_public_url,
            reused: stored.reused,
            removals_seen: stored.removals_seen,
            blobs_removed: self.inner.blobs_removed.clone(),
        }
    }

    /// Stores blobs durably: the new ones (not indexed, not from before packs, each once) in one
    /// new pack. Returns every hash in order, and the new blobs, which the transaction that
    /// refers to them must index (`new_attachments`). A blob may come with its SHA-256 (hex)
    /// already known, which is then not computed again.
    pub async fn put_blobs(&self, all: Vec<(bytes::Bytes, Option<String>)>) -> Result<StoredBlobs, StoreError> {
        if all.is_empty() {
            return Ok(StoredBlobs::default());
        }
        let (all, names) = tokio::task::spawn_blocking(move || {
            let (all, known): (Vec<_>, Vec<_>) = all.into_iter().unzip();
            let names: Vec<String> =
                all.iter().zip(known).map(|(b, sha)| sha.unwrap_or_else(|| Blobs::hash(b))).collect();
            (all, names)
        })
        .await
        .map_err(|_| StoreError::Closed)?;
        let asked = names.clone();
        let removals_seen = self.inner.blobs_removed.load(Ordering::SeqCst);
        let indexed = self.read(move |c| blobs::indexed(c, &asked)).await?;
        let reused = indexed.iter().cloned().collect();
        let (files, names_in_order) = (self.inner.blobs.clone(), names.clone());
        let packed = tokio::task::spawn_blocking(move || {
            let mut seen = HashSet::new();
            let new: Vec<(String, bytes::Bytes)> = names
                .into_iter()
                .zip(all)
                .filter(|(sha, _)| !indexed.contains(sha) && !files.is_loose(sha) && seen.insert(sha.clone()))
                .collect();
            files.write_pack(&new)
        })
        .await
        .map_err(|_| StoreError::Closed)??;
        Ok(StoredBlobs { names: names_in_order, packed, reused, removals_seen })
    }

    /// Holds the lock named `name` until the guard drops: for a read-modify-write of stored state
    /// around a network call (refreshing an OAuth2 grant that IMAP and SMTP share), which a
    /// transaction cannot cover. Within this process only.
    pub async fn lock(&self, name: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = self.inner.named_locks.lock().expect("named locks").entry(name.to_owned()).or_default().clone();
        lock.lock_owned().await
    }

    /// Where an attachment's bytes are (`size`: its recorded size).
    pub async fn blob_file(&self, sha256: &str, size: u64) -> Result<BlobFile, StoreError> {
        let sha = sha256.to_owned();
        let location = self.read(move |c| blobs::location(c, &sha)).await?;
        Ok(self.inner.blobs.file(sha256, location, size))
    }

    /// Proves the writer is alive and the disk takes a durable write (for `/readyz`).
    pub async fn probe_write(&self) -> Result<(), StoreError> {
        self.write(|conn| {
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('probe', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [crate::model::time::now_ms().to_string()],
            )?;
            Ok(())
        })
        .await
    }

    /// Stops accepting writes and waits (blocking) until the writer has committed what it had.
    pub fn close(&self) {
        self.inner.writer.lock().expect("writer lock").take();
        if let Some(thread) = self.inner.writer_thread.lock().expect("writer thread lock").take() {
            let _ = thread.join();
        }
        // Ends once the writer's connection is closed; joined so the database is closed cleanly.
        if let Some(thread) = self.inner.checkpoint_thread.lock().expect("checkpoint thread lock").take() {
            let _ = thread.join();
        }
        self.inner.lock.lock().expect("storage lock").take();
    }
}

/// Takes `dir/switchboard.lock` (flock, released when the file closes): a second process on the
/// same storage would write beside this one and sweep its packs in flight.
fn lock_storage(dir: &Path) -> Result<std::fs::File, StoreError> {
    use std::os::fd::AsRawFd;
    let path = dir.join("switchboard.lock");
    let file = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| StoreError::Io(format!("cannot open {}: {e}", path.display())))?;
    // SAFETY: flock only reads the descriptor, which `file` keeps open for the call.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(StoreError::Io(if e.kind() == std::io::ErrorKind::WouldBlock {
            format!("{} is in use by another switchboard process", dir.display())
        } else {
            format!("cannot lock {}: {e}", path.display())
        }));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_store_remembers_the_public_urls_its_attachment_urls_were_built_under() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let former = |url: &'static str| {
            let store = store.clone();
            async move { store.write(move |c| messages::former_public_urls(c, url)).await.unwrap() }
        };
        // A store from before they were remembered: its newest attachment URL names its base.
        store
            .write(|c| {
                c.execute_batch(
                    r#"INSERT INTO contacts (id, created_at, updated_at) VALUES ('ctc_1', 0, 0);
                       INSERT INTO conversations (id, channel_id, channel_type, thread_key, contact_id,
                       peer_address, status, created_at, updated_at)
                       VALUES ('cnv_1', 'web', 'api', 'k', 'ctc_1', 'a', 'open', 0, 0);
                       INSERT INTO messages (id, conversation_id, channel_id, direction, status, created_at, body)
                       VALUES ('msg_1', 'cnv_1', 'web', 'inbound', 'received', 0,
                       '{"meta":{"url":"https://elsewhere.example/x"},"attachments":[{"url":"http://old:8080/v1/attachments/att_1"}]}');"#,
                )?;
                Ok(())
            })
            .await
            .unwrap();
        assert_eq!(former("http://new/").await, vec!["http://old:8080"]);
        assert_eq!(former("http://new").await, vec!["http://old:8080"], "the same again: nothing new");
        assert_eq!(former("http://newer").await, vec!["http://old:8080", "http://new"]);
        assert_eq!(former("http://old:8080").await, vec!["http://new", "http://newer"], "back to an old one");
        store.use_public_url("https://gw.example/").await;
        let urls = store.attachment_urls();
        assert_eq!(
            urls.url(&crate::model::AttachmentId::parse("att_2").unwrap()),
            "https://gw.example/v1/attachments/att_2"
        );
        assert_eq!(
            urls.rebase_json(r#"{"url":"http://newer/v1/attachments/att_3"}"#),
            r#"{"url":"https://gw.example/v1/attachments/att_3"}"#
        );
        store.close();
    }

    #[tokio::test]
    async fn a_second_process_cannot_open_the_storage_and_unindexed_packs_are_swept_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let kept = store.put_blobs(vec![(bytes::Bytes::from_static(b"committed"), None)]).await.unwrap();
        let packed = kept.packed.clone();
        store.write(move |c| blobs::index(c, &packed)).await.unwrap();
        // A batch whose transaction never commits leaves its pack behind.
        let lost = store.put_blobs(vec![(bytes::Bytes::from_static(b"never committed"), None)]).await.unwrap();
        let packs = dir.path().join("blobs/packs");
        assert_eq!(std::fs::read_dir(&packs).unwrap().count(), 2);

        let refused = Store::open(dir.path()).err().expect("the storage is in use");
        assert!(refused.to_string().contains("in use by another switchboard process"), "{refused}");
        store.close();

        let store = Store::open(dir.path()).unwrap();
        let left: Vec<String> =
            std::fs::read_dir(&packs).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        assert_eq!(left, vec![kept.packed[0].location.pack.clone()], "only the indexed pack stays");
        assert!(!lost.packed.is_empty());
        let file = store.blob_file(&kept.names[0], 0).await.unwrap();
        assert_eq!(file.read().await.unwrap(), b"committed");
        store.close();
    }

    #[tokio::test]
    async fn blob_files_from_before_packs_are_read_reused_and_backed_up() {
        let dir = tempfile::tempdir().unwrap();
        // An older version stored this attachment as its own file, with no index row.
        let bytes = b"an invoice from last year";
        let sha = Blobs::hash(bytes);
        std::fs::create_dir_all(dir.path().join("blobs").join(&sha[..2])).unwrap();
        std::fs::write(dir.path().join("blobs").join(&sha[..2]).join(&sha), bytes).unwrap();
        let store = Store::open(dir.path()).unwrap();
        let sha_row = sha.clone();
        store
            .write(move |c| {
                c.execute(
                    "INSERT INTO attachments (id, message_id, filename, content_type, size, sha256)
                     VALUES ('att_1', 'msg_1', 'invoice.pdf', 'application/pdf', 25, ?1)",
                    [&sha_row],
                )?;
                Ok(())
            })
            .await
            .unwrap();
        assert_eq!(store.blob_file(&sha, bytes.len() as u64).await.unwrap().read().await.unwrap(), bytes);
        // The same bytes arriving again are not packed a second time.
        let again = store.put_blobs(vec![(bytes::Bytes::from_static(bytes), None)]).await.unwrap();
        assert_eq!((again.names, again.packed.len()), (vec![sha.clone()], 0));
        store.close();
        let copy = dir.path().join("copy");
        let report = backup::backup(dir.path(), &copy).unwrap();
        assert_eq!(report.blobs, 1, "{report:?}");
        assert_eq!(std::fs::read(copy.join("blobs").join(&sha[..2]).join(&sha)).unwrap(), bytes);
    }

    #[tokio::test]
    async fn a_blob_is_packed_once_and_found_again_once_indexed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let logo = bytes::Bytes::from_static(b"the same logo in every mail");
        let first = store
            .put_blobs(vec![(logo.clone(), None), (bytes::Bytes::from_static(b"x"), None), (logo.clone(), None)])
            .await
            .unwrap();
        assert_eq!(first.names[0], first.names[2]);
        assert_eq!(first.packed.len(), 2, "a blob twice in a batch is packed once");
        // Not indexed yet (its transaction has not committed): a retry packs it again.
        assert_eq!(store.put_blobs(vec![(logo.clone(), None)]).await.unwrap().packed.len(), 1);
        let packed = first.packed;
        store.write(move |c| blobs::index(c, &packed)).await.unwrap();
        let again = store.put_blobs(vec![(logo.clone(), None)]).await.unwrap();
        assert_eq!((again.names, again.packed.len()), (vec![first.names[0].clone()], 0));
        let file = store.blob_file(&first.names[0], 0).await.unwrap();
        assert_eq!(file.read().await.unwrap(), logo.to_vec());
        store.close();
    }

    #[tokio::test]
    async fn a_panicking_write_rolls_back_alone_and_the_writer_survives() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let panicking = store.write(|c| -> Result<(), StoreError> {
            c.execute("INSERT INTO meta (key, value) VALUES ('a', '1')", [])?;
            panic!("a bug in a write closure");
        });
        let fine = store.write(|c| {
            c.execute("INSERT INTO meta (key, value) VALUES ('b', '2')", [])?;
            Ok(())
        });
        let (panicked, ok) = tokio::join!(panicking, fine);
        assert!(matches!(panicked, Err(StoreError::Closed)), "{panicked:?}");
        ok.unwrap();
        let keys = store
            .read(|c| {
                let mut stmt = c.prepare("SELECT key FROM meta ORDER BY key")?;
                let keys = stmt.query_map([], |r| r.get::<_, String>(0))?.collect::<Result<Vec<_>, _>>()?;
                Ok(keys)
            })
            .await
            .unwrap();
        assert_eq!(keys, vec!["b".to_string()], "the panicking job's insert was rolled back");
        // The writer still takes writes.
        store.probe_write().await.unwrap();
        store.close();
    }

    /// SQLite's automatic checkpoint is replaced by the checkpointer thread: committed pages
    /// still reach the database file while the store is open.
    #[tokio::test]
    async fn the_checkpointer_copies_committed_pages_into_the_database_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let db = dir.path().join("switchboard.db");
        let before = std::fs::metadata(&db).unwrap().len();
        for n in 0..24 {
            store
                .write(move |c| {
                    c.execute("INSERT INTO meta (key, value) VALUES (?1, ?2)", (format!("k{n}"), "x".repeat(1 << 20)))?;
                    Ok(())
                })
                .await
                .unwrap();
        }
        // 24 MB went into the WAL; the checkpointer (woken past 16 MB, below the writer's own
        // 32 MB backstop) copies it into the database file.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::fs::metadata(&db).unwrap().len() < before + (20 << 20) {
            assert!(std::time::Instant::now() < deadline, "no checkpoint reached the database file");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        store.close();
        let conn = Connection::open(&db).unwrap();
        let rows: i64 = conn.query_row("SELECT count(*) FROM meta WHERE key LIKE 'k%'", [], |r| r.get(0)).unwrap();
        assert_eq!(rows, 24);
    }

    /// Under steady writes the checkpointer and the writer's own backstop checkpoint meet: no
    /// write may fail because of that (a failed checkpoint once surfaced as a failed COMMIT of
    /// durable data), and the WAL restarts instead of growing with the data written.
    #[tokio::test]
    async fn steady_writes_never_fail_on_checkpoints_and_the_wal_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut writers = Vec::new();
        for w in 0..4 {
            let store = store.clone();
            writers.push(tokio::spawn(async move {
                for n in 0..40 {
                    store
                        .write(move |c| {
                            c.execute(
                                "INSERT INTO meta (key, value) VALUES (?1, ?2)",
                                (format!("w{w}-{n}"), "x".repeat(512 << 10)),
                            )?;
                            Ok(())
                        })
                        .await
                        .unwrap_or_else(|e| panic!("write {w}/{n} failed: {e}"));
                }
            }));
        }
        for writer in writers {
            writer.await.unwrap();
        }
        // 80 MB written; the WAL restarts at the latest once it passes the backstop (32 MB).
        let wal = std::fs::metadata(dir.path().join("switchboard.db-wal")).unwrap().len();
        assert!(wal < 48 << 20, "the WAL grew to {wal} bytes");
        store.close();
    }
}
