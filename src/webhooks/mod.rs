//! Webhook consumers: signed, per-conversation ordered, retried, replayable delivery of the
//! event log.
//!
//! Each `[[webhooks]]` entry gets one worker task (`consumer.rs`) that reads the log from its
//! durable cursor. Standard Webhooks headers (`signing.rs`), the envelope as body; 2xx = done,
//! 410 = consumer disabled (kept in status, resumed by `enable`), anything else retried on the
//! schedule with jitter and `Retry-After`, then dead-lettered (listed, retryable). Per consumer,
//! one event per conversation is in flight at a time; conversations proceed concurrently. A body
//! over the consumer's `max_body_bytes` is cut to fit (`body.rs`), since the 413 of a proxy in
//! front of the consumer would never go away.
//! Invariant: webhooks only read the log; they never change messages or conversations.

mod attempt;
pub mod body;
mod consumer;
mod queue;
pub mod signing;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use consumer::ConsumerStatus;
use consumer::{Command, Worker};
use signing::SigningKey;

use crate::config::{DeliveryConfig, WebhookConfig};
use crate::model::event::EventFilter;
use crate::store::{Store, StoreError};

/// A consumer's settings with defaults applied and secrets decoded.
#[derive(Debug, PartialEq)]
pub struct ConsumerConfig {
    pub id: String,
    pub url: String,
    pub keys: Vec<SigningKey>,
    /// Its `events` globs and `channels` list.
    pub filter: EventFilter,
    pub timeout: Duration,
    pub max_in_flight: usize,
    pub schedule: Vec<Duration>,
    pub max_retry_after: Duration,
    /// Larger events are cut to fit (`body.rs`).
    pub max_body_bytes: usize,
    /// Certificates trusted besides the webpki roots (`ca_file`).
    pub ca_pem: Option<Vec<u8>>,
}

impl ConsumerConfig {
    pub fn new(hook: &WebhookConfig, defaults: &DeliveryConfig) -> ConsumerConfig {
        let keys = hook
            .secret
            .iter()
            .chain(hook.previous_secrets.iter())
            .filter_map(|s| SigningKey::parse(s.expose()))
            .collect();
        ConsumerConfig {
            id: hook.id.clone(),
            url: hook.url.clone(),
            keys,
            filter: EventFilter { types: hook.events.clone(), channels: hook.channels.clone() },
            timeout: hook.timeout.unwrap_or(defaults.timeout).0,
            max_in_flight: hook.max_in_flight.unwrap_or(defaults.max_in_flight),
            schedule: hook.retry_schedule.as_ref().unwrap_or(&defaults.retry_schedule).iter().map(|d| d.0).collect(),
            max_retry_after: defaults.max_retry_after.0,
            max_body_bytes: hook.max_body_bytes.unwrap_or(defaults.max_body_bytes),
            ca_pem: hook.ca_pem.clone(),
        }
    }
}

/// Handles to the running consumers. A reload (`apply`) starts, reconfigures and stops workers;
/// handlers always reach the current set.
#[derive(Clone)]
pub struct Webhooks {
    inner: Arc<Inner>,
}

struct Inner {
    consumers: RwLock<HashMap<String, Consumer>>,
    store: Store,
    shutdown: CancellationToken,
    grace: Duration,
    tasks: TaskTracker,
}

struct Consumer {
    commands: mpsc::Sender<Command>,
    config: Arc<ConsumerConfig>,
    /// Cancelled when a reload removes the consumer (a child of the process shutdown).
    stop: CancellationToken,
    /// The worker's backlog, as last published.
    backlog: Arc<std::sync::atomic::AtomicU64>,
}

/// A consumer id that is not configured.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("no webhook consumer with this id")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Webhooks {
    /// Starts one worker per consumer, on `tasks` (which the shutdown waits for).
    pub async fn start(
        store: &Store,
        hooks: &[WebhookConfig],
        defaults: &DeliveryConfig,
        shutdown: &CancellationToken,
        grace: Duration,
        tasks: &TaskTracker,
    ) -> Result<Webhooks, StoreError> {
        let inner = Inner {
            consumers: RwLock::new(HashMap::new()),
            store: store.clone(),
            shutdown: shutdown.clone(),
            grace,
            tasks: tasks.clone(),
        };
        let webhooks = Webhooks { inner: Arc::new(inner) };
        webhooks.apply(hooks, defaults).await?;
        Ok(webhooks)
    }

    /// Makes the running consumers match `hooks`: new ones start from the current end of the log
    /// (or from their stored cursor, if they ran before), changed ones take the new settings
    /// for every attempt that starts from now on (attempts in flight finish and are recorded
    /// once), removed ones stop after their attempts in flight; their owed deliveries stay in the
    /// store for when they are configured again. Returns one line per change, for the log.
    pub async fn apply(&self, hooks: &[WebhookConfig], defaults: &DeliveryConfig) -> Result<Vec<String>, StoreError> {
        let mut changes = Vec::new();
        let wanted: HashMap<&str, Arc<ConsumerConfig>> =
            hooks.iter().map(|h| (h.id.as_str(), Arc::new(ConsumerConfig::new(h, defaults)))).collect();
        let removed: Vec<(String, Consumer)> = {
            let mut consumers = self.inner.consumers.write().unwrap_or_else(|e| e.into_inner());
            let gone: Vec<String> = consumers.keys().filter(|id| !wanted.contains_key(id.as_str())).cloned().collect();
            gone.into_iter().filter_map(|id| consumers.remove(&id).map(|c| (id, c))).collect()
        };
        for (id, consumer) in removed {
            consumer.stop.cancel();
            changes.push(format!("webhook consumer `{id}` removed"));
        }
        for hook in hooks {
            let config = wanted[hook.id.as_str()].clone();
            match self.consumer(&hook.id) {
                Some((_, old)) if *old == *config => {}
                Some((commands, _)) => {
                    // The worker owns its schedule; it swaps the settings between two steps and
                    // answers, so that once `apply` returns no new attempt uses the old ones.
                    let (done, applied) = oneshot::channel();
                    let command = Command::Reconfigure { config: config.clone(), done };
                    if commands.send(command).await.is_ok() && applied.await.is_ok() {
                        self.set_config(&hook.id, config);
                        changes.push(format!("webhook consumer `{}` reconfigured", hook.id));
                    }
                }
                None => {
                    let worker = Worker::start(config.clone(), self.inner.store.clone()).await?;
                    let (commands, rx) = mpsc::channel(16);
                    let stop = self.inner.shutdown.child_token();
                    let backlog = worker.backlog();
                    self.inner.tasks.spawn(worker.run(rx, stop.clone(), self.inner.grace));
                    let consumer = Consumer { commands, config, stop, backlog };
                    self.inner.consumers.write().unwrap_or_else(|e| e.into_inner()).insert(hook.id.clone(), consumer);
                    changes.push(format!("webhook consumer `{}` started", hook.id));
                }
            }
        }
        Ok(changes)
    }

    fn consumer(&self, id: &str) -> Option<(mpsc::Sender<Command>, Arc<ConsumerConfig>)> {
        let consumers = self.inner.consumers.read().unwrap_or_else(|e| e.into_inner());
        consumers.get(id).map(|c| (c.commands.clone(), c.config.clone()))
    }

    fn set_config(&self, id: &str, config: Arc<ConsumerConfig>) {
        if let Some(c) = self.inner.consumers.write().unwrap_or_else(|e| e.into_inner()).get_mut(id) {
            c.config = config;
        }
    }

    async fn ask<T>(&self, id: &str, command: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, WebhookError> {
        let (sender, _) = self.consumer(id).ok_or(WebhookError::NotFound)?;
        let (tx, rx) = oneshot::channel();
        sender.send(command(tx)).await.map_err(|_| StoreError::Closed)?;
        Ok(rx.await.map_err(|_| StoreError::Closed)?)
    }

    /// Each configured consumer's backlog (events owed), as its worker last published it.
    pub fn backlogs(&self) -> Vec<(String, u64)> {
        let consumers = self.inner.consumers.read().unwrap_or_else(|e| e.into_inner());
        consumers.iter().map(|(id, c)| (id.clone(), c.backlog.load(std::sync::atomic::Ordering::Relaxed))).collect()
    }

    /// Configured consumer ids, sorted.
    pub fn ids(&self) -> Vec<String> {
        let consumers = self.inner.consumers.read().unwrap_or_else(|e| e.into_inner());
        let mut ids: Vec<String> = consumers.keys().cloned().collect();
        ids.sort();
        ids
    }

    pub fn contains(&self, id: &str) -> bool {
        self.inner.consumers.read().unwrap_or_else(|e| e.into_inner()).contains_key(id)
    }

    pub async fn status(&self, id: &str) -> Result<ConsumerStatus, WebhookError> {
        self.ask(id, Command::Status).await
    }

    pub async fn replay(&self, id: &str, after_seq: u64) -> Result<u64, WebhookError> {
        Ok(self.ask(id, |reply| Command::Replay { after_seq, reply }).await??)
    }

    pub async fn retry_dead(&self, id: &str, event_ids: Option<Vec<String>>) -> Result<u64, WebhookError> {
        Ok(self.ask(id, |reply| Command::RetryDead { event_ids, reply }).await??)
    }

    pub async fn enable(&self, id: &str) -> Result<(), WebhookError> {
        Ok(self.ask(id, Command::Enable).await??)
    }
}
