//! Free space under `storage.path`, watched so that a sysadmin hears of a filling disk before it
//! is full. A full disk refuses every write: requests get 503 `storage_full` and mail waits on
//! the server (see `StoreError::is_storage_full`). Nothing is lost then, but nothing comes in
//! either; a warning in the log days earlier, and a gauge to alert on, are what prevent that.
//!
//! Every `CHECK_EVERY` the filesystem is asked (statvfs, as the service's user sees it: root's
//! reserve does not count). Below the low mark, 10 % of the filesystem and at most 5 GiB, the
//! log warns, and warns again each time the free space has halved since; it says so once the
//! space is back above the mark. `switchboard_storage_available_bytes{path}` and
//! `switchboard_storage_filesystem_bytes{path}` are the figures at the last check.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

const CHECK_EVERY: Duration = Duration::from_secs(10);
const GIB: u64 = 1 << 30;

/// The filesystem holding a path: bytes available to an unprivileged user, and its size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Space {
    pub available: u64,
    pub total: u64,
}

pub fn space(path: &Path) -> io::Result<Space> {
    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let mut stats = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c_path` is NUL-terminated and `stats` is written in full on success.
    let stats = unsafe {
        if libc::statvfs(c_path.as_ptr(), stats.as_mut_ptr()) != 0 {
            return Err(io::Error::last_os_error());
        }
        stats.assume_init()
    };
    let block = stats.f_frsize as u64;
    Ok(Space { available: stats.f_bavail as u64 * block, total: stats.f_blocks as u64 * block })
}

/// Below this much free space the log warns: 10 % of the filesystem, at most 5 GiB.
pub fn low_mark(total: u64) -> u64 {
    (total / 10).min(5 * GIB)
}

/// Whether a check should warn, given the free space when it last warned (if it is still low).
fn warn_again(available: u64, last_warned: Option<u64>) -> bool {
    last_warned.is_none_or(|before| available <= before / 2)
}

/// Checks the space under `path` every `CHECK_EVERY` until `shutdown`.
pub async fn watch(path: PathBuf, shutdown: CancellationToken) {
    let label = path.display().to_string();
    let mut last_warned: Option<u64> = None;
    loop {
        match space(&path) {
            Ok(Space { available, total }) => {
                metrics::gauge!("switchboard_storage_available_bytes", "path" => label.clone()).set(available as f64);
                metrics::gauge!("switchboard_storage_filesystem_bytes", "path" => label.clone()).set(total as f64);
                let low = low_mark(total);
                if available < low {
                    if warn_again(available, last_warned) {
                        tracing::warn!(
                            path = %label,
                            available = %human(available),
                            low_mark = %human(low),
                            "little free space under storage.path: when it is full, requests are refused (503) and mail waits on the server; free some or give it a larger disk"
                        );
                        last_warned = Some(available);
                    }
                } else if last_warned.take().is_some() {
                    tracing::info!(path = %label, available = %human(available), "free space under storage.path is back above its low mark");
                }
            }
            Err(e) => tracing::debug!(path = %label, error = %e, "cannot read the free space under storage.path"),
        }
        tokio::select! {
            _ = tokio::time::sleep(CHECK_EVERY) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// `812 MiB`, `4.2 GiB`: bytes as a sysadmin reads them in a log line.
fn human(bytes: u64) -> String {
    match bytes {
        b if b >= GIB => format!("{:.1} GiB", b as f64 / GIB as f64),
        b if b >= 1 << 20 => format!("{} MiB", b >> 20),
        b => format!("{} KiB", b >> 10),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_low_mark_is_a_tenth_of_the_disk_and_at_most_5_gib() {
        assert_eq!(low_mark(20 * GIB), 2 * GIB);
        assert_eq!(low_mark(2000 * GIB), 5 * GIB);
        assert_eq!(low_mark(16 << 20), (16 << 20) / 10);
    }

    #[test]
    fn it_warns_once_and_again_only_when_the_space_has_halved() {
        assert!(warn_again(900, None));
        assert!(!warn_again(600, Some(900)));
        assert!(warn_again(450, Some(900)));
    }

    #[test]
    fn the_space_of_a_real_directory_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let found = space(dir.path()).unwrap();
        assert!(found.total > 0 && found.available <= found.total, "{found:?}");
        assert!(space(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn sizes_read_as_a_sysadmin_reads_them() {
        assert_eq!(human(812 << 20), "812 MiB");
        assert_eq!(human(4 * GIB + GIB / 5), "4.2 GiB");
        assert_eq!(human(3000), "2 KiB");
    }
}
