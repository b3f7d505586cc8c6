//! Online backup: a consistent copy of a state directory, taken while the service runs.
//!
//! A plain file copy of a live SQLite database in WAL mode can miss committed transactions (a
//! checkpoint between copying the database and its `-wal` file), so the database is copied with
//! `VACUUM INTO`, which writes a transactionally consistent snapshot through SQLite's own
//! locking and leaves the running service undisturbed. Blobs are copied afterwards: they are
//! immutable and written (and fsynced) before the transaction that refers to them commits, so
//! every blob the snapshot refers to exists by the time it is copied. The result is checked
//! (`PRAGMA integrity_check`, every referenced blob present) before it is reported done.

use std::fs;
use std::io::Write;
use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use super::StoreError;

const DB_FILE: &str = "switchboard.db";

/// What a backup holds.
#[derive(Debug)]
pub struct BackupReport {
    pub messages: u64,
    pub events: u64,
    pub blobs: u64,
    pub bytes: u64,
}

fn io<'a>(what: &str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    let what = what.to_owned();
    move |e| StoreError::Io(format!("{what} {}: {e}", path.display()))
}

/// Copies the state directory `state` into `dest`, which must not exist or be empty.
pub fn backup(state: &Path, dest: &Path) -> Result<BackupReport, StoreError> {
    let source_db = state.join(DB_FILE);
    if !source_db.is_file() {
        return Err(StoreError::Io(format!("{} does not exist: is storage.path right?", source_db.display())));
    }
    if dest.exists() && fs::read_dir(dest).map_err(io("cannot read", dest))?.next().is_some() {
        return Err(StoreError::Io(format!("{} is not empty; back up into a new directory", dest.display())));
    }
    fs::create_dir_all(dest).map_err(io("cannot create", dest))?;

    // The snapshot, written under a temporary name and renamed once durable.
    let partial = dest.join(format!("{DB_FILE}.partial"));
    let source = Connection::open_with_flags(&source_db, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    source.busy_timeout(std::time::Duration::from_secs(30))?;
    let target = partial.to_str().ok_or_else(|| StoreError::Io(format!("{} is not UTF-8", partial.display())))?;
    source.execute("VACUUM INTO ?1", [target])?;
    drop(source);
    fs::File::open(&partial).and_then(|f| f.sync_all()).map_err(io("cannot fsync", &partial))?;
    let final_db = dest.join(DB_FILE);
    fs::rename(&partial, &final_db).map_err(io("cannot rename", &partial))?;

    // Blobs: `blobs/ab/abcdef…`; `blobs/tmp` holds unfinished writes and is skipped.
    let mut blobs = 0;
    let mut bytes = fs::metadata(&final_db).map_err(io("cannot stat", &final_db))?.len();
    let source_blobs = state.join("blobs");
    let dest_blobs = dest.join("blobs");
    fs::create_dir_all(dest_blobs.join("tmp")).map_err(io("cannot create", &dest_blobs))?;
    if source_blobs.is_dir() {
        for shard in fs::read_dir(&source_blobs).map_err(io("cannot read", &source_blobs))? {
            let shard = shard.map_err(io("cannot read", &source_blobs))?;
            if shard.file_name() == "tmp" || !shard.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                continue;
            }
            let into = dest_blobs.join(shard.file_name());
            fs::create_dir_all(&into).map_err(io("cannot create", &into))?;
            for blob in fs::read_dir(shard.path()).map_err(io("cannot read", &shard.path()))? {
                let blob = blob.map_err(io("cannot read", &shard.path()))?;
                let to = into.join(blob.file_name());
                bytes += copy_durably(&blob.path(), &to)?;
                blobs += 1;
            }
            fs::File::open(&into).and_then(|d| d.sync_all()).map_err(io("cannot fsync", &into))?;
        }
    }
    fs::File::open(dest).and_then(|d| d.sync_all()).map_err(io("cannot fsync", dest))?;

    // Check what was written.
    let copy = Connection::open_with_flags(&final_db, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let integrity: String = copy.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    if integrity != "ok" {
        return Err(StoreError::Corrupt(format!("the copy fails its integrity check: {integrity}")));
    }
    let mut stmt = copy.prepare("SELECT DISTINCT sha256 FROM attachments")?;
    let shas = stmt.query_map([], |r| r.get::<_, String>(0))?;
    for sha in shas {
        let sha = sha?;
        let path = dest_blobs.join(&sha[..2.min(sha.len())]).join(&sha);
        if !path.is_file() {
            return Err(StoreError::Corrupt(format!("attachment blob {sha} is missing from the copy")));
        }
    }
    let count = |table: &str| -> Result<u64, StoreError> {
        Ok(copy.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get::<_, i64>(0))? as u64)
    };
    Ok(BackupReport { messages: count("messages")?, events: count("events")?, blobs, bytes })
}

fn copy_durably(from: &Path, to: &Path) -> Result<u64, StoreError> {
    let data = fs::read(from).map_err(io("cannot read", from))?;
    let mut file = fs::File::create(to).map_err(io("cannot create", to))?;
    file.write_all(&data).and_then(|_| file.sync_all()).map_err(io("cannot write", to))?;
    Ok(data.len() as u64)
}
