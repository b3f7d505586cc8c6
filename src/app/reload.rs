//! Live reload (SIGHUP, `systemctl reload`): re-read the config file, validate it exactly as
//! `switchboard check` does, and apply the difference without dropping work.
//!
//! - A config with problems is refused whole: every problem is logged and the running config
//!   stays.
//! - Tokens and channels are swapped (`Live`): a request or a send in flight keeps the snapshot it
//!   took. Unchanged channels keep their adapter (SMTP pool, OAuth2 access token) and their rate
//!   buckets; a channel whose pull loop (IMAP) changed has the old loop stopped, which ends after
//!   its current batch is committed and checkpointed, before the new one starts, so nothing is
//!   imported twice or skipped.
//! - Webhook consumers are reconfigured in their own worker, between two steps: attempts in flight
//!   finish and are recorded once; every later attempt uses the new URL, secret and limits.
//! - What is bound at start (`server.*`, `storage.path`, `log.*`, `outbound.max_in_flight`) is
//!   reported in the log and kept until a restart.

use std::fmt::Debug;
use std::path::Path;

use super::{Server, DRAIN};
use crate::channels::Registry;
use crate::config::{self, Config};

/// What a reload did, as logged.
#[derive(Debug, Default)]
pub struct Reloaded {
    pub applied: Vec<String>,
    /// Changed settings that only a restart applies.
    pub restart_needed: Vec<String>,
}

impl Server {
    /// Reads and validates the file at `path`, then applies it; refuses it, keeping the running
    /// config, when it has problems (returned, one line each).
    pub(super) async fn reload_from(&mut self, path: &Path) -> Result<(), Vec<String>> {
        let owned = path.to_owned();
        let loaded = tokio::task::spawn_blocking(move || config::load(&owned)).await;
        match loaded {
            Ok(Ok(config)) => {
                self.reload(config).await;
                metrics::counter!("switchboard_config_reloads_total", "result" => "applied").increment(1);
                Ok(())
            }
            Ok(Err(problems)) => {
                for problem in &problems {
                    tracing::error!(config = %path.display(), "{problem}");
                }
                tracing::error!(
                    config = %path.display(),
                    problems = problems.len(),
                    "configuration refused; the running configuration is kept (see `switchboard check`)"
                );
                metrics::counter!("switchboard_config_reloads_total", "result" => "refused").increment(1);
                Err(problems.iter().map(ToString::to_string).collect())
            }
            Err(e) => {
                tracing::error!(error = %e, "reading the configuration failed; the running one is kept");
                Err(vec![format!("reading the configuration failed: {e}")])
            }
        }
    }

    /// Applies a validated config to the running gateway.
    pub async fn reload(&mut self, mut wanted: Config) -> Reloaded {
        let mut report = Reloaded::default();
        keep_restart_only(&self.running.config, &mut wanted, &mut report.restart_needed);
        let running = &self.running.config;

        if wanted.storage.retention != running.storage.retention {
            self.running.keep.store(wanted.storage.retention.map(|r| r.0));
            let now = wanted.storage.retention.map_or("unset: everything is kept".to_owned(), |r| format!("{:?}", r.0));
            report.applied.push(format!("storage.retention changed ({now}; the next prune applies it)"));
        }
        if wanted.tokens != running.tokens {
            self.running.tokens.store(wanted.tokens.clone());
            report.applied.push(format!("tokens replaced ({} configured)", wanted.tokens.len()));
        }

        let mut restart_loops = Vec::new();
        if wanted.channels != running.channels || wanted.outbound != running.outbound {
            for channel in &running.channels {
                match wanted.channel(channel.id()) {
                    None => {
                        report.applied.push(format!(
                            "channel `{}` removed (messages queued to it wait for it through the retry schedule, then fail as channel_unavailable)",
                            channel.id()
                        ));
                        restart_loops.push(channel.id().to_owned());
                    }
                    Some(c) if c != channel => {
                        report.applied.push(format!("channel `{}` reconfigured", channel.id()));
                        restart_loops.push(channel.id().to_owned());
                    }
                    Some(_) => {}
                }
            }
            for channel in wanted.channels.iter().filter(|c| running.channel(c.id()).is_none()) {
                report.applied.push(format!("channel `{}` added", channel.id()));
                restart_loops.push(channel.id().to_owned());
            }
            let registry = Registry::rebuild(
                &self.running.registry.load(),
                &wanted.channels,
                wanted.outbound.timeout.0,
                &self.store,
            );
            let retired = self.running.registry.load().retired(&registry);
            self.running.registry.store(registry);
            // Sends in flight on a retired adapter finish with it; its idle sessions end now.
            tokio::spawn(async move {
                futures_util::future::join_all(retired.iter().map(|o| o.close())).await;
            });
            let changed = restart_loops.clone();
            if let Err(e) = self.running.outbound.reconfigure(wanted.outbound.clone(), changed).await {
                tracing::error!(error = %e, "queued sends of changed channels keep their old due times");
            }
            if wanted.outbound != running.outbound {
                report.applied.push("outbound settings replaced".to_owned());
            }
        }
        for id in &restart_loops {
            if let Some(pull) = self.running.pull_loops.remove(id) {
                pull.stop.cancel();
                if tokio::time::timeout(DRAIN, pull.handle).await.is_err() {
                    tracing::warn!(channel = %id, "the old pull loop did not stop in time; it is left to finish");
                }
            }
            self.running.health.forget(id);
            if let Some(channel) = wanted.channel(id).cloned() {
                self.start_pull_loop(&channel);
            }
        }

        match self.running.webhooks.apply(&wanted.webhooks, &wanted.delivery).await {
            Ok(changes) => report.applied.extend(changes),
            Err(e) => {
                tracing::error!(error = %e, "webhook consumers could not all be started; retry with another reload")
            }
        }
        self.running.config = wanted;

        for change in &report.restart_needed {
            tracing::warn!("{change}");
        }
        for change in &report.applied {
            tracing::info!("reload: {change}");
        }
        tracing::info!(
            applied = report.applied.len(),
            restart_needed = report.restart_needed.len(),
            "configuration reloaded"
        );
        report
    }
}

/// Settings bound at start: a changed value is reported and the running one put back into
/// `wanted`, so the next reload compares against what really runs.
fn keep_restart_only(running: &Config, wanted: &mut Config, notes: &mut Vec<String>) {
    fn keep<T: PartialEq + Debug + Clone>(key: &str, running: &T, wanted: &mut T, notes: &mut Vec<String>) {
        if running != wanted {
            notes.push(format!("{key} changed to {wanted:?} but applies only after a restart (running: {running:?})"));
            *wanted = running.clone();
        }
    }
    keep("server.listen", &running.server.listen, &mut wanted.server.listen, notes);
    keep("server.public_url", &running.server.public_url, &mut wanted.server.public_url, notes);
    keep("server.max_body_bytes", &running.server.max_body_bytes, &mut wanted.server.max_body_bytes, notes);
    keep(
        "server.max_attachment_bytes",
        &running.server.max_attachment_bytes,
        &mut wanted.server.max_attachment_bytes,
        notes,
    );
    keep("storage.path", &running.storage.path, &mut wanted.storage.path, notes);
    keep("log.format", &running.log.format, &mut wanted.log.format, notes);
    keep("log.level", &running.log.level, &mut wanted.log.level, notes);
    keep("outbound.max_in_flight", &running.outbound.max_in_flight, &mut wanted.outbound.max_in_flight, notes);
}
