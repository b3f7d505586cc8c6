//! Content-addressed attachment files beside the database: `blobs/ab/cdef…` named by SHA-256.
//!
//! Blobs are stored a batch at a time, durably, before the messages that refer to them are
//! committed, so a committed message never points at a missing file; a crash in between leaves
//! only unreferenced blobs. Each new blob is written to a temporary file; then one `syncfs`
//! makes all their contents durable, they are renamed into place, and a second `syncfs` makes
//! the names durable. A file under its final name is therefore always complete (which is what
//! lets a later `put` trust that the name exists), and a batch of 500 attachments costs two
//! filesystem syncs instead of a thousand fsyncs.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use sha2::{Digest, Sha256};

#[derive(Clone, Debug)]
pub struct Blobs {
    root: PathBuf,
}

impl Blobs {
    pub(super) fn open(root: PathBuf) -> std::io::Result<Self> {
        fs::create_dir_all(root.join("tmp"))?;
        Ok(Blobs { root })
    }

    /// Stores every item durably; returns the hex SHA-256 that names each, in order.
    pub fn put_all(&self, all: &[bytes::Bytes]) -> io::Result<Vec<String>> {
        let staged = self.stage(all)?;
        self.publish(&staged.pending)?;
        Ok(staged.names)
    }

    /// The first half of `put_all`, which several threads may run on parts of one batch: names
    /// every item and writes those not stored yet to temporary files (not yet durable).
    pub fn stage(&self, all: &[bytes::Bytes]) -> io::Result<Staged> {
        let mut staged = Staged { names: Vec::with_capacity(all.len()), pending: Vec::new() };
        let mut new_here = HashSet::new();
        for bytes in all {
            let sha = hex(&Sha256::digest(bytes));
            let path = self.path(&sha);
            if !path.exists() && new_here.insert(sha.clone()) {
                let tmp = self.root.join("tmp").join(format!("{sha}.{}", crate::model::ids::ulid()));
                File::create(&tmp)?.write_all(bytes)?;
                staged.pending.push((tmp, path));
            }
            staged.names.push(sha);
        }
        Ok(staged)
    }

    /// The second half: makes staged files durable and moves them under their names (a blob
    /// staged twice in one batch just lands twice, with the same content).
    pub fn publish(&self, pending: &[(PathBuf, PathBuf)]) -> io::Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        let root = File::open(&self.root)?;
        sync_filesystem(&root)?;
        for (tmp, path) in pending {
            fs::create_dir_all(path.parent().expect("blob paths have a parent"))?;
            fs::rename(tmp, path)?;
        }
        sync_filesystem(&root)
    }

    pub fn path(&self, sha256: &str) -> PathBuf {
        let (head, _) = sha256.split_at(2.min(sha256.len()));
        self.root.join(head).join(sha256)
    }
}

/// A part of a batch written by `Blobs::stage`: each item's name, and the temporary files
/// (with their final paths) that `Blobs::publish` must still make durable.
pub struct Staged {
    pub names: Vec<String>,
    pub pending: Vec<(PathBuf, PathBuf)>,
}

/// Flushes the whole filesystem that holds `file` (data and metadata). Since Linux 5.8 it
/// reports a write-back error of any file on it since `file` was opened, so a blob that failed
/// to reach the disk fails its batch.
fn sync_filesystem(file: &File) -> io::Result<()> {
    // SAFETY: syncfs only reads the descriptor, which `file` keeps open for the call.
    if unsafe { libc::syncfs(file.as_raw_fd()) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::Blobs;

    #[test]
    fn a_batch_is_named_by_content_stored_once_and_leaves_no_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::open(dir.path().join("blobs")).unwrap();
        let first = blobs.put_all(&[bytes::Bytes::from_static(b"one")]).unwrap();
        let all = ["two", "one", "two", "three"].map(|s| bytes::Bytes::from(s.as_bytes().to_vec()));
        let names = blobs.put_all(&all).unwrap();
        assert_eq!(names[1], first[0], "an existing blob keeps its name");
        assert_eq!(names[0], names[2], "a blob twice in a batch is one blob");
        assert_eq!(names[0], "3fc4ccfe745870e2c0d99f71f30ff0656c8dedd41cc1d7d3d376b0dbe685e2f3");
        for (name, content) in names.iter().zip(["two", "one", "two", "three"]) {
            assert_eq!(std::fs::read(blobs.path(name)).unwrap(), content.as_bytes());
        }
        assert_eq!(std::fs::read_dir(dir.path().join("blobs/tmp")).unwrap().count(), 0);
    }

    #[test]
    fn a_batch_that_cannot_be_written_fails_and_names_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::open(dir.path().join("blobs")).unwrap();
        // The temporary directory replaced by a file: no blob can be written.
        std::fs::remove_dir(dir.path().join("blobs/tmp")).unwrap();
        std::fs::write(dir.path().join("blobs/tmp"), b"").unwrap();
        let error = blobs.put_all(&[bytes::Bytes::from_static(b"lost")]).unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::NotADirectory, "{error}");
        let name = super::hex(&<sha2::Sha256 as sha2::Digest>::digest(b"lost"));
        assert!(!blobs.path(&name).exists());
    }

    #[test]
    fn hex_is_lowercase_two_digits_per_byte() {
        assert_eq!(super::hex(&[0x00, 0x0f, 0xab, 0xff]), "000fabff");
    }
}
