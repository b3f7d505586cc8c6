//! Attachment bytes beside the database, addressed by SHA-256.
//!
//! A batch's new blobs are appended to one new pack file, `blobs/packs/<ulid>.pack`, which is
//! fsynced with its directory before the transaction that refers to them commits; that same
//! transaction indexes each blob (`blobs` table: sha256 → pack, offset, size). So a committed
//! message never points at missing bytes, a crash in between leaves only an unindexed pack, and
//! a batch of 500 attachments costs one file and two fsyncs: creating a file per attachment
//! (inode allocation, rename, sync) was most of what importing a mail backlog cost. A pack is
//! never modified once written. Blobs stored before packs existed are files
//! `blobs/ab/abcdef…`; a hash with no index row is read from there.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt};

use super::StoreError;

pub(super) const PACKS: &str = "packs";

#[derive(Clone, Debug)]
pub struct Blobs {
    root: PathBuf,
    /// Whether the directory holds blob files from before packs (checked once: only older
    /// versions wrote them).
    has_loose_files: bool,
}

/// Where an indexed blob's bytes are: `size` bytes at `offset` of pack `pack`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub pack: String,
    pub offset: u64,
    pub size: u64,
}

/// A blob written to a pack and not yet indexed: `index` it in the transaction that refers to it.
#[derive(Clone, Debug)]
pub struct Packed {
    pub sha256: String,
    pub location: Location,
}

/// The bytes of one stored blob, wherever they are.
#[derive(Clone, Debug)]
pub struct BlobFile {
    pub path: PathBuf,
    pub offset: u64,
    pub size: u64,
}

impl Blobs {
    pub(super) fn open(root: PathBuf) -> io::Result<Self> {
        fs::create_dir_all(root.join(PACKS))?;
        let mut has_loose_files = false;
        for entry in fs::read_dir(&root)? {
            let name = entry?.file_name();
            has_loose_files |= name != PACKS && name != "tmp";
        }
        Ok(Blobs { root, has_loose_files })
    }

    pub fn hash(bytes: &[u8]) -> String {
        hex(&Sha256::digest(bytes))
    }

    /// Whether `sha256` is stored as a file from before packs.
    pub fn is_loose(&self, sha256: &str) -> bool {
        self.has_loose_files && self.loose_path(sha256).is_file()
    }

    /// Writes `blobs` (hash, bytes; each hash once) into one new pack and makes it durable;
    /// returns where each landed.
    pub fn write_pack(&self, blobs: &[(String, bytes::Bytes)]) -> io::Result<Vec<Packed>> {
        if blobs.is_empty() {
            return Ok(Vec::new());
        }
        let pack = format!("{}.pack", crate::model::ids::ulid());
        let dir = self.root.join(PACKS);
        let file = File::options().write(true).create_new(true).open(dir.join(&pack))?;
        let written = (|| {
            let mut out = BufWriter::with_capacity(1 << 20, file);
            let mut packed = Vec::with_capacity(blobs.len());
            let mut offset = 0;
            for (sha256, bytes) in blobs {
                out.write_all(bytes)?;
                let size = bytes.len() as u64;
                packed.push(Packed { sha256: sha256.clone(), location: Location { pack: pack.clone(), offset, size } });
                offset += size;
            }
            out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            File::open(&dir)?.sync_all()?;
            Ok(packed)
        })();
        // A pack cut short (a full disk) is of no use, and its space is wanted.
        if written.is_err() {
            self.remove_pack(&pack);
        }
        written
    }

    /// Where the file of `pack` is.
    pub(super) fn pack_path(&self, pack: &str) -> PathBuf {
        self.root.join(PACKS).join(pack)
    }

    /// Removes `pack`, which nothing refers to.
    pub(super) fn remove_pack(&self, pack: &str) {
        if let Err(e) = fs::remove_file(self.root.join(PACKS).join(pack)) {
            tracing::warn!(pack, error = %e, "cannot remove an unused blob pack; the next start removes it");
        }
    }

    /// Removes the packs not in `indexed` (left by batches that never committed); returns how
    /// many. Only while no batch is in flight: a pack is indexed only when its batch commits.
    pub(super) fn sweep_packs(&self, indexed: &HashSet<String>) -> io::Result<usize> {
        let mut swept = 0;
        for entry in fs::read_dir(self.root.join(PACKS))? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".pack") && !indexed.contains(&name) {
                fs::remove_file(entry.path())?;
                swept += 1;
            }
        }
        Ok(swept)
    }

    /// Where the bytes of `sha256` are: in its pack when indexed (`location`), else in a file
    /// from before packs (`size` is the attachment's size).
    pub fn file(&self, sha256: &str, location: Option<Location>, size: u64) -> BlobFile {
        file_under(&self.root, sha256, location, size)
    }

    fn loose_path(&self, sha256: &str) -> PathBuf {
        loose_path(&self.root, sha256)
    }
}

/// `Blobs::file` for the blobs directory `root` (also a backup's copy).
pub(super) fn file_under(root: &Path, sha256: &str, location: Option<Location>, size: u64) -> BlobFile {
    match location {
        Some(l) => BlobFile { path: root.join(PACKS).join(l.pack), offset: l.offset, size: l.size },
        None => BlobFile { path: loose_path(root, sha256), offset: 0, size },
    }
}

fn loose_path(root: &Path, sha256: &str) -> PathBuf {
    let (head, _) = sha256.split_at(2.min(sha256.len()));
    root.join(head).join(sha256)
}

impl BlobFile {
    /// A reader of exactly the blob's bytes.
    pub async fn open(&self) -> io::Result<impl AsyncRead + Send + Unpin + 'static> {
        let mut file = tokio::fs::File::open(&self.path).await?;
        file.seek(io::SeekFrom::Start(self.offset)).await?;
        Ok(file.take(self.size))
    }

    /// All of the blob's bytes (tokio's file reads run on the blocking pool as well).
    pub async fn read(&self) -> io::Result<Vec<u8>> {
        let file = self.clone();
        tokio::task::spawn_blocking(move || file.read_blocking()).await.map_err(io::Error::other)?
    }

    /// `read` for code on a blocking thread.
    pub fn read_blocking(&self) -> io::Result<Vec<u8>> {
        use std::io::{Read, Seek};
        let mut file = File::open(&self.path)?;
        file.seek(io::SeekFrom::Start(self.offset))?;
        let mut bytes = Vec::with_capacity(self.size as usize);
        file.take(self.size).read_to_end(&mut bytes)?;
        if bytes.len() as u64 != self.size {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("{} is cut short", self.path.display())));
        }
        Ok(bytes)
    }

    /// Whether the file holds all of the blob (for checking a backup).
    pub fn is_complete(&self) -> bool {
        fs::metadata(&self.path).is_ok_and(|m| m.is_file() && m.len() >= self.offset + self.size)
    }
}

/// The hashes of `shas` that are indexed already.
pub fn indexed(conn: &Connection, shas: &[String]) -> Result<HashSet<String>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT 1 FROM blobs WHERE sha256 = ?1")?;
    let mut found = HashSet::new();
    for sha in shas {
        if stmt.exists([sha])? {
            found.insert(sha.clone());
        }
    }
    Ok(found)
}

/// Indexes packed blobs (a blob packed twice by concurrent batches keeps its first location).
pub fn index(conn: &Connection, packed: &[Packed]) -> Result<(), StoreError> {
    let mut stmt =
        conn.prepare_cached("INSERT OR IGNORE INTO blobs (sha256, pack, offset, size) VALUES (?1, ?2, ?3, ?4)")?;
    for p in packed {
        stmt.execute(params![p.sha256, p.location.pack, p.location.offset as i64, p.location.size as i64])?;
    }
    Ok(())
}

pub fn location(conn: &Connection, sha256: &str) -> Result<Option<Location>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT pack, offset, size FROM blobs WHERE sha256 = ?1")?
        .query_row([sha256], |r| {
            Ok(Location { pack: r.get(0)?, offset: r.get::<_, i64>(1)? as u64, size: r.get::<_, i64>(2)? as u64 })
        })
        .optional()?)
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

    #[tokio::test]
    async fn a_pack_holds_each_blob_at_its_location_and_reads_back_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::open(dir.path().join("blobs")).unwrap();
        let items: Vec<(String, bytes::Bytes)> = ["one", "", "three"]
            .into_iter()
            .map(|s| (Blobs::hash(s.as_bytes()), bytes::Bytes::from(s.as_bytes().to_vec())))
            .collect();
        let packed = blobs.write_pack(&items).unwrap();
        assert_eq!(
            packed.iter().map(|p| (p.location.offset, p.location.size)).collect::<Vec<_>>(),
            [(0, 3), (3, 0), (3, 5)]
        );
        assert_eq!(packed[0].location.pack, packed[2].location.pack, "one pack per batch");
        for (p, (sha, bytes)) in packed.iter().zip(&items) {
            assert_eq!(&p.sha256, sha);
            let file = blobs.file(sha, Some(p.location.clone()), 0);
            assert!(file.is_complete());
            assert_eq!(file.read().await.unwrap(), bytes.to_vec());
        }
        assert!(blobs.write_pack(&[]).unwrap().is_empty(), "nothing new, no pack");
    }

    #[tokio::test]
    async fn a_blob_from_before_packs_is_read_from_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let sha = Blobs::hash(b"legacy");
        std::fs::create_dir_all(dir.path().join("blobs").join(&sha[..2])).unwrap();
        std::fs::write(dir.path().join("blobs").join(&sha[..2]).join(&sha), b"legacy").unwrap();
        let blobs = Blobs::open(dir.path().join("blobs")).unwrap();
        assert!(blobs.is_loose(&sha));
        assert!(!blobs.is_loose(&Blobs::hash(b"other")));
        assert_eq!(blobs.file(&sha, None, 6).read().await.unwrap(), b"legacy");
        let cut = blobs.file(&sha, None, 10);
        assert!(!cut.is_complete());
        assert_eq!(cut.read().await.unwrap_err().kind(), std::io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn a_pack_that_cannot_be_written_fails() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::open(dir.path().join("blobs")).unwrap();
        // The packs directory replaced by a file: no pack can be created.
        std::fs::remove_dir(dir.path().join("blobs/packs")).unwrap();
        std::fs::write(dir.path().join("blobs/packs"), b"").unwrap();
        let error = blobs.write_pack(&[(Blobs::hash(b"lost"), bytes::Bytes::from_static(b"lost"))]).unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::NotADirectory, "{error}");
    }

    #[test]
    fn hex_is_lowercase_two_digits_per_byte() {
        assert_eq!(super::hex(&[0x00, 0x0f, 0xab, 0xff]), "000fabff");
    }
}
