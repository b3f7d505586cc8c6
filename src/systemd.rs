//! systemd integration (`Type=notify`): `READY=1` once the store is open and the listener bound
//! (and again when a reload finished, after `RELOADING=1`),
//! `STOPPING=1` when shutdown starts, and `WATCHDOG=1` pings at half of `WatchdogSec` — each sent
//! only after a durable store write succeeded, so a hung writer gets the service restarted.
//! Outside systemd (no `NOTIFY_SOCKET`) every call is a no-op.
//!
//! `systemctl reload` runs `switchboard reload $MAINPID` (the unit's ExecReload), which signals
//! the gateway and waits for its verdict in `$RUNTIME_DIRECTORY/reload.status`: the running
//! gateway is the one to read and judge the file, because systemd gives ExecReload= commands
//! no LoadCredential= secrets when the unit has a mount namespace (systemd issue 35227), so a
//! `switchboard check` there fails on any config that uses them.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

use crate::store::{Store, StoreError};

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

pub fn ready(listen: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(&format!("listening on {listen}"))]);
}

/// A reload starts; `ready` ends it. MONOTONIC_USEC lets `Type=notify-reload` (systemd 253+)
/// match the two; older systemd ignores it.
pub fn reloading() {
    let mut states = vec![NotifyState::Reloading, NotifyState::Status("reloading the configuration")];
    if let Ok(now) = NotifyState::monotonic_usec_now() {
        states.push(now);
    }
    send(&states);
}

pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping: draining work in flight")]);
}

/// Pings the watchdog while the store's writer answers, until `shutdown`. A writer that hangs
/// or is gone gets no ping, and systemd restarts the service. One that answers with an error —
/// above all a full disk — still gets it: a restart would not free space, and a gateway that
/// refuses writes with 503 and takes them again by itself once space is freed is better than
/// one systemd gives up on after its start limit.
pub fn spawn_watchdog(store: Store, shutdown: CancellationToken) {
    let Some(period) = sd_notify::watchdog_enabled() else { return };
    let interval = (period / 2).max(Duration::from_millis(100));
    tracing::info!(every_ms = interval.as_millis() as u64, "systemd watchdog enabled");
    tokio::spawn(async move {
        let mut failing = false;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.cancelled() => return,
            }
            let probe = tokio::time::timeout(interval, store.probe_write()).await.ok();
            match &probe {
                Some(Ok(())) if std::mem::take(&mut failing) => tracing::info!("the store takes writes again"),
                Some(Err(e)) if !matches!(e, StoreError::Closed) && !std::mem::replace(&mut failing, true) => {
                    tracing::error!(error = %e, full = e.is_storage_full(), "the store refuses writes; requests are refused until it takes them again")
                }
                Some(Err(StoreError::Closed)) => {
                    tracing::error!("the store's writer is gone; withholding the watchdog ping")
                }
                None => tracing::error!("store write hung; withholding the watchdog ping"),
                _ => {}
            }
            if writer_answers(&probe) {
                send(&[NotifyState::Watchdog]);
            }
        }
    });
}

/// Whether a write probe (`None`: it did not finish in time) shows the store's writer alive: it
/// answered, even if with an error such as a full disk.
fn writer_answers(probe: &Option<Result<(), StoreError>>) -> bool {
    matches!(probe, Some(result) if !matches!(result, Err(StoreError::Closed)))
}

/// Where the gateway leaves each reload's verdict: `$RUNTIME_DIRECTORY` (the unit's
/// `RuntimeDirectory=`, readable by ExecReload= commands too).
fn reload_status_path() -> Option<PathBuf> {
    std::env::var_os("RUNTIME_DIRECTORY").map(|dir| Path::new(&dir).join("reload.status"))
}

/// Records a reload's verdict for `switchboard reload`: `<pid> <n> applied|refused`, then one
/// problem per line. `n` counts this process's reloads, so a waiting command knows the answer to
/// its own signal from an older one. Without `$RUNTIME_DIRECTORY` (not under systemd) nothing is
/// written: the log tells.
pub fn reloaded(outcome: &Result<(), Vec<String>>) {
    static RELOADS: AtomicU64 = AtomicU64::new(0);
    let Some(path) = reload_status_path() else { return };
    let n = RELOADS.fetch_add(1, Ordering::Relaxed) + 1;
    let mut text = match outcome {
        Ok(()) => format!("{} {n} applied\n", std::process::id()),
        Err(_) => format!("{} {n} refused\n", std::process::id()),
    };
    for problem in outcome.as_ref().err().into_iter().flatten() {
        text.push_str(&problem.replace('\n', " "));
        text.push('\n');
    }
    // Written whole, then renamed: a reader never sees half a verdict.
    let partial = path.with_extension("partial");
    if let Err(e) = std::fs::write(&partial, text).and_then(|()| std::fs::rename(&partial, &path)) {
        tracing::warn!(error = %e, path = %path.display(), "cannot record the reload's outcome for `switchboard reload`");
    }
}

/// What the gateway said about a reload `ask_reload` asked for.
#[derive(Debug, PartialEq, Eq)]
pub enum ReloadVerdict {
    Applied,
    /// Refused, with its problems; the running configuration is kept.
    Refused(Vec<String>),
}

/// The verdict `reload.status` holds for process `pid`, with its reload count.
fn read_verdict(path: &Path, pid: u32) -> Option<(u64, ReloadVerdict)> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut lines = text.lines();
    let mut head = lines.next()?.split(' ');
    let (who, n, result) = (head.next()?.parse::<u32>().ok()?, head.next()?.parse().ok()?, head.next()?);
    if who != pid {
        return None;
    }
    let verdict = match result {
        "applied" => ReloadVerdict::Applied,
        _ => ReloadVerdict::Refused(lines.map(str::to_owned).collect()),
    };
    Some((n, verdict))
}

/// `switchboard reload PID`: sends SIGHUP to the gateway `pid` and waits (up to `wait`) for its
/// verdict on the reload it caused.
pub fn ask_reload(pid: u32, wait: Duration) -> Result<ReloadVerdict, String> {
    let path = reload_status_path()
        .ok_or("RUNTIME_DIRECTORY is not set: this is the systemd unit's ExecReload, run by `systemctl reload switchboard`; without systemd, send SIGHUP (kill -HUP PID) and read the log")?;
    let before = read_verdict(&path, pid).map_or(0, |(n, _)| n);
    // kill(2) takes 0 as "my process group" and 1 is init: neither is a gateway.
    let target =
        i32::try_from(pid).ok().filter(|p| *p > 1).ok_or_else(|| format!("{pid} is no gateway's process id"))?;
    // SAFETY: kill(2) with a plain signal number has no memory effects.
    if unsafe { libc::kill(target, libc::SIGHUP) } != 0 {
        return Err(format!("cannot signal process {pid}: {}", std::io::Error::last_os_error()));
    }
    let deadline = Instant::now() + wait;
    loop {
        if let Some((n, verdict)) = read_verdict(&path, pid) {
            if n > before {
                return Ok(verdict);
            }
        }
        if Instant::now() >= deadline {
            return Err(format!("process {pid} did not report the reload within {}s; see its log", wait.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::{writer_answers, StoreError};

    #[test]
    fn a_full_disk_still_feeds_the_watchdog_a_hung_or_gone_writer_does_not() {
        assert!(writer_answers(&Some(Ok(()))));
        assert!(writer_answers(&Some(Err(StoreError::Commit("database or disk is full".into())))));
        assert!(writer_answers(&Some(Err(StoreError::Io("No space left on device (os error 28)".into())))));
        assert!(!writer_answers(&Some(Err(StoreError::Closed))));
        assert!(!writer_answers(&None), "hung");
    }
}
