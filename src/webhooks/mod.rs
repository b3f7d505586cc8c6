//! Webhook consumers: signed, per-conversation ordered, retried, replayable delivery of the
//! event log.
//!
//! Each `[[webhooks]]` entry gets one worker task (`consumer.rs`) that reads the log from its
//! durable cursor. Standard Webhooks headers (`signing.rs`), the envelope as body; 2xx = done,
//! 410 = consumer disabled (kept in status, resumed by `enable`), anything else retried on the
//! schedule with jitter and `Retry-After`, then dead-lettered (listed, retryable). Per consumer,
//! one event per conversation is in flight at a time; conversations proceed concurrently.
//! Invariant: webhooks only read the log; they never change messages or conversations.

mod attempt;
mod consumer;
mod queue;
pub mod signing;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use consumer::ConsumerStatus;
use consumer::{Command, Worker};
use signing::SigningKey;

use crate::config::{DeliveryConfig, WebhookConfig};
use crate::store::{Store, StoreError};

/// A consumer's settings with defaults applied and secrets decoded.
#[derive(Debug)]
pub struct ConsumerConfig {
    pub id: String,
    pub url: String,
    pub keys: Vec<SigningKey>,
    pub events: Vec<String>,
    pub timeout: Duration,
    pub max_in_flight: usize,
    pub schedule: Vec<Duration>,
    pub max_retry_after: Duration,
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
            events: hook.events.clone(),
            timeout: hook.timeout.unwrap_or(defaults.timeout).0,
            max_in_flight: hook.max_in_flight.unwrap_or(defaults.max_in_flight),
            schedule: hook.retry_schedule.as_ref().unwrap_or(&defaults.retry_schedule).iter().map(|d| d.0).collect(),
            max_retry_after: defaults.max_retry_after.0,
        }
    }
}

/// Handles to the running consumers.
#[derive(Clone, Default)]
pub struct Webhooks {
    consumers: Arc<HashMap<String, mpsc::Sender<Command>>>,
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
    /// Starts one worker per consumer.
    pub async fn start(
        store: &Store,
        hooks: &[WebhookConfig],
        defaults: &DeliveryConfig,
        shutdown: &CancellationToken,
        grace: Duration,
    ) -> Result<(Webhooks, Vec<JoinHandle<()>>), StoreError> {
        let mut consumers = HashMap::new();
        let mut tasks = Vec::new();
        for hook in hooks {
            let config = Arc::new(ConsumerConfig::new(hook, defaults));
            let worker = Worker::start(config, store.clone()).await?;
            let (tx, rx) = mpsc::channel(16);
            tasks.push(tokio::spawn(worker.run(rx, shutdown.clone(), grace)));
            consumers.insert(hook.id.clone(), tx);
        }
        Ok((Webhooks { consumers: Arc::new(consumers) }, tasks))
    }

    async fn ask<T>(&self, id: &str, command: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, WebhookError> {
        let sender = self.consumers.get(id).ok_or(WebhookError::NotFound)?;
        let (tx, rx) = oneshot::channel();
        sender.send(command(tx)).await.map_err(|_| StoreError::Closed)?;
        Ok(rx.await.map_err(|_| StoreError::Closed)?)
    }

    /// Configured consumer ids, sorted.
    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.consumers.keys().cloned().collect();
        ids.sort();
        ids
    }

    pub fn contains(&self, id: &str) -> bool {
        self.consumers.contains_key(id)
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
