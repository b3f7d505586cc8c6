//! Online backup: a consistent copy of a state directory, taken while the service runs.
//!
//! A plain file copy of a live SQLite database in WAL mode can miss committed transactions (a
//! checkpoint between copying the database and its `-wal` file), so the database is copied with
//! `VACUUM INTO`, which writes a transactionally consistent snapshot through SQLite's own
//! locking and leaves the running service undisturbed. Blobs are copied afterwards: packs (and
//! files from before packs) are immutable and written (and fsynced) before the transaction that
//! refers to them commits, so every blob the snapshot refers to exists by the time it is
//! copied. The result is checked (`PRAGMA integrity_check`, every referenced blob present and
//! whole) before it is reported done.

use std::fs;
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

    // Blobs: `blobs/packs/*.pack`, and files `blobs/ab/abcdef…` from before packs; `blobs/tmp`
    // held unfinished writes of those older versions and is skipped.
    let mut bytes = fs::metadata(&final_db).map_err(io("cannot stat", &final_db))?.len();
    let source_blobs = state.join("blobs");
    let dest_blobs = dest.join("blobs");
    fs::create_dir_all(dest_blobs.join(super::blobs::PACKS)).map_err(io("cannot create", &dest_blobs))?;
    if source_blobs.is_dir() {
        for dir in fs::read_dir(&source_blobs).map_err(io("cannot read", &source_blobs))? {
            let dir = dir.map_err(io("cannot read", &source_blobs))?;
            if dir.file_name() == "tmp" || !dir.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                continue;
            }
            let into = dest_blobs.join(dir.file_name());
            fs::create_dir_all(&into).map_err(io("cannot create", &into))?;
            for file in fs::read_dir(dir.path()).map_err(io("cannot read", &dir.path()))? {
                let file = file.map_err(io("cannot read", &dir.path()))?;
                bytes += copy_durably(&file.path(), &into.join(file.file_name()))?;
            }
            fs::File::open(&into).and_then(|d| d.sync_all()).map_err(io("cannot fsync", &into))?;
        }
    }
    fs::File::open(&dest_blobs).and_then(|d| d.sync_all()).map_err(io("cannot fsync", &dest_blobs))?;
    fs::File::open(dest).and_then(|d| d.sync_all()).map_err(io("cannot fsync", dest))?;

    // Check what was written.
    let copy = Connection::open_with_flags(&final_db, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let integrity: String = copy.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    if integrity != "ok" {
        return Err(StoreError::Corrupt(format!("the copy fails its integrity check: {integrity}")));
    }
    let mut stmt = copy.prepare("SELECT sha256, max(size) FROM attachments GROUP BY sha256")?;
    let shas = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))?;
    let mut blobs = 0;
    for row in shas {
        let (sha, size) = row?;
        let location = super::blobs::location(&copy, &sha)?;
        if !super::blobs::file_under(&dest_blobs, &sha, location, size).is_complete() {
            return Err(StoreError::Corrupt(format!("attachment blob {sha} is missing from the copy")));
        }
        blobs += 1;
    }
    let count = |table: &str| -> Result<u64, StoreError> {
        Ok(copy.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get::<_, i64>(0))? as u64)
    };
    Ok(BackupReport { messages: count("messages")?, events: count("events")?, blobs, bytes })
}

fn copy_durably(from: &Path, to: &Path) -> Result<u64, StoreError> {
    let copied = fs::copy(from, to).map_err(io("cannot copy", from))?;
    fs::File::open(to).and_then(|f| f.sync_all()).map_err(io("cannot fsync", to))?;
    Ok(copied)
}
