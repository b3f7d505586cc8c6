//! systemd integration (`Type=notify`): `READY=1` once the store is open and the listener bound
//! (and again when a reload finished, after `RELOADING=1`),
//! `STOPPING=1` when shutdown starts, and `WATCHDOG=1` pings at half of `WatchdogSec` — each sent
//! only after a durable store write succeeded, so a hung writer gets the service restarted.
//! Outside systemd (no `NOTIFY_SOCKET`) every call is a no-op.

use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

use crate::store::Store;

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

/// Pings the watchdog while the store takes writes, until `shutdown`.
pub fn spawn_watchdog(store: Store, shutdown: CancellationToken) {
    let Some(period) = sd_notify::watchdog_enabled() else { return };
    let interval = (period / 2).max(Duration::from_millis(100));
    tracing::info!(every_ms = interval.as_millis() as u64, "systemd watchdog enabled");
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.cancelled() => return,
            }
            match tokio::time::timeout(interval, store.probe_write()).await {
                Ok(Ok(())) => send(&[NotifyState::Watchdog]),
                Ok(Err(e)) => tracing::error!(error = %e, "store write failed; withholding the watchdog ping"),
                Err(_) => tracing::error!("store write hung; withholding the watchdog ping"),
            }
        }
    });
}
