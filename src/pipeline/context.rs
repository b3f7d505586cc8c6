//! What a pull channel (IMAP, getUpdates, polling) gets to work with: ingest, its own durable
//! checkpoints, a health report, and the shutdown signal. Adapters see nothing else of the store.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::{Checkpoint, Outcome, Pipeline, PreparedBatch};
use crate::channels::RawInbound;
use crate::model::{time, Direction, EventType};
use crate::store::{self, Store, StoreError};

/// Channel health for `/readyz`: per side of a channel (receiving, sending), the parts of it
/// that fail with their errors; no failing part = running fine. A part is what runs on its own
/// within a side, such as one IMAP folder: one folder's success must not hide another's error.
#[derive(Clone, Default)]
pub struct Health(Arc<Mutex<HashMap<String, BTreeMap<String, String>>>>);

impl Health {
    /// Every channel side that reported, with its errors (joined by "; ") if failing.
    pub fn snapshot(&self) -> Vec<(String, Option<String>)> {
        let map = self.0.lock().expect("health lock");
        let mut all: Vec<_> = map
            .iter()
            .map(|(key, failing)| {
                let errors = failing.values().cloned().collect::<Vec<_>>();
                (key.clone(), (!errors.is_empty()).then(|| errors.join("; ")))
            })
            .collect();
        all.sort();
        all
    }

    /// Drops what a channel reported (its receiving and its sending side) when a reload removes
    /// or restarts it.
    pub fn forget(&self, channel: &str) {
        let sending = format!("{channel}{SENDING}");
        self.0.lock().expect("health lock").retain(|key, _| key != channel && *key != sending);
    }

    /// Records a part's state; returns whether it changed (called on every successful send, so
    /// an unchanged state is only compared). A side's first report counts as a change.
    fn set(&self, key: &str, part: &str, error: Option<String>) -> bool {
        let mut map = self.0.lock().expect("health lock");
        let first = !map.contains_key(key);
        let failing = map.entry(key.to_owned()).or_default();
        match error {
            None => failing.remove(part).is_some() || first,
            Some(error) => failing.insert(part.to_owned(), error.clone()).as_ref() != Some(&error),
        }
    }

    /// A side of a channel works (again).
    pub fn report_ok(&self, channel: &str, direction: Direction) {
        self.report_part_ok(channel, direction, "");
    }

    fn report_part_ok(&self, channel: &str, direction: Direction, part: &str) {
        if self.set(&health_key(channel, direction), part, None) {
            tracing::info!(channel, direction = direction.as_str(), part, "channel running");
        }
    }

    /// A side of a channel fails: logged, shown in `/readyz`, and a `channel.error` event when
    /// the error is new (not on every retry of the same one).
    pub async fn report_error(
        &self,
        store: &Store,
        channel: (&str, &str),
        direction: Direction,
        code: &str,
        message: &str,
    ) {
        self.report_part_error(store, channel, direction, "", code, message).await;
    }

    async fn report_part_error(
        &self,
        store: &Store,
        channel: (&str, &str),
        direction: Direction,
        part: &str,
        code: &str,
        message: &str,
    ) {
        let (id, kind) = channel;
        tracing::warn!(channel = id, direction = direction.as_str(), part, code, error = %message, "channel failing; retrying with backoff");
        if !self.set(&health_key(id, direction), part, Some(format!("{code}: {message}"))) {
            return;
        }
        let data = json!({
            "channel": {"id": id, "type": kind},
            "direction": direction.as_str(),
            "error": {"code": code, "message": message},
            "at": time::rfc3339(time::now_ms()),
        });
        let key = format!("channel:{id}");
        let result =
            store.write(move |c| store::events::append(c, EventType::ChannelError, &key, &data).map(|_| ())).await;
        if let Err(e) = result {
            tracing::error!(channel = id, error = %e, "cannot record channel.error");
        }
    }
}

/// The `/readyz` key suffix of a channel's sending side (`channel:support/send`).
const SENDING: &str = "/send";

/// The `/readyz` key of one side of a channel: receiving (IMAP, polling) is the channel id,
/// sending (SMTP, provider APIs) has `SENDING` appended.
fn health_key(channel: &str, direction: Direction) -> String {
    match direction {
        Direction::Inbound => channel.to_owned(),
        Direction::Outbound => format!("{channel}{SENDING}"),
    }
}

/// A channel's own durable key/value state (checkpoints, rotated credentials): the only part of
/// the store an adapter can reach.
#[derive(Clone)]
pub struct ChannelState {
    store: crate::store::Store,
    channel_id: String,
}

impl ChannelState {
    pub fn new(store: crate::store::Store, channel_id: &str) -> ChannelState {
        ChannelState { store, channel_id: channel_id.to_owned() }
    }

    pub fn channel_id(&self) -> &str {
        &self.channel_id
    }

    pub async fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
        let (channel, key) = (self.channel_id.clone(), key.to_owned());
        self.store.read(move |c| store::mail::checkpoint(c, &channel, &key)).await
    }

    /// Holds the channel's lock on `key` until the guard drops (see `Store::lock`).
    pub async fn lock(&self, key: &str) -> tokio::sync::OwnedMutexGuard<()> {
        self.store.lock(&format!("channel:{}/{key}", self.channel_id)).await
    }

    /// Durably records a value (returns after the commit).
    pub async fn set(&self, key: &str, value: &str) -> Result<(), StoreError> {
        let (channel, key, value) = (self.channel_id.clone(), key.to_owned(), value.to_owned());
        self.store.write(move |c| store::mail::set_checkpoint(c, &channel, &key, &value)).await
    }
}

/// How often a pull channel waiting for a full store asks whether it takes writes again.
const STORAGE_PROBE: std::time::Duration = std::time::Duration::from_secs(2);

#[derive(Clone)]
pub struct InboundContext {
    pub channel_id: String,
    pub channel_type: &'static str,
    pub shutdown: CancellationToken,
    pipeline: Pipeline,
    health: Health,
    /// The part of the channel this context reports health for (`for_part`); "" = all of it.
    part: String,
}

impl InboundContext {
    pub fn new(
        channel_id: &str,
        channel_type: &'static str,
        pipeline: Pipeline,
        health: Health,
        shutdown: CancellationToken,
    ) -> Self {
        InboundContext {
            channel_id: channel_id.to_owned(),
            channel_type,
            shutdown,
            pipeline,
            health,
            part: String::new(),
        }
    }

    /// This context for a part of the channel that runs on its own (an IMAP folder): its health
    /// reports clear and set only that part's error.
    pub fn for_part(&self, part: &str) -> InboundContext {
        InboundContext { part: part.to_owned(), ..self.clone() }
    }

    /// Hands one item to the pipeline; `Ok` means it is durably stored (or was a duplicate).
    pub async fn ingest(&self, raw: RawInbound) -> Result<Outcome, StoreError> {
        self.pipeline.ingest(raw).await
    }

    /// Makes a fetched batch's attachments durable (see `Pipeline::prepare_batch`).
    pub async fn prepare_batch(&self, raws: Vec<RawInbound>) -> Result<PreparedBatch, StoreError> {
        self.pipeline.prepare_batch(raws).await
    }

    /// Queues a prepared batch for one transaction that also moves the checkpoint `key` from
    /// `previous` to `value` (see `Pipeline::submit_batch`). Batches commit in submission order.
    pub fn submit_batch(
        &self,
        batch: PreparedBatch,
        key: &str,
        previous: Option<String>,
        value: &str,
    ) -> impl std::future::Future<Output = Result<Vec<Outcome>, StoreError>> + Send + 'static {
        let checkpoint =
            Checkpoint { channel_id: self.channel_id.clone(), key: key.to_owned(), value: value.to_owned(), previous };
        self.pipeline.submit_batch(batch, checkpoint)
    }

    /// The channel's durable state (for credentials that rotate).
    pub fn state(&self) -> ChannelState {
        ChannelState { store: self.pipeline.store.clone(), channel_id: self.channel_id.clone() }
    }

    pub async fn checkpoint(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.state().get(key).await
    }

    /// Waits until the store takes a write again (a full disk freed), asking every
    /// `STORAGE_PROBE`; `false` at shutdown. A pull channel waits here instead of reconnecting
    /// to its provider only to fail at the first write, and comes back as soon as space is
    /// freed rather than after a backoff grown meanwhile.
    pub async fn wait_for_storage(&self) -> bool {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(STORAGE_PROBE) => {}
                _ = self.shutdown.cancelled() => return false,
            }
            if self.pipeline.store.probe_write().await.is_ok() {
                return true;
            }
        }
    }

    /// The channel works (again).
    pub fn report_ok(&self) {
        self.health.report_part_ok(&self.channel_id, Direction::Inbound, &self.part);
    }

    /// The channel fails (see `Health::report_error`).
    pub async fn report_error(&self, code: &str, message: &str) {
        let channel = (self.channel_id.as_str(), self.channel_type);
        self.health
            .report_part_error(&self.pipeline.store, channel, Direction::Inbound, &self.part, code, message)
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_part_working_does_not_clear_another_parts_error() {
        let health = Health::default();
        assert!(health.set("support", "INBOX", None), "a side's first report is a change");
        assert!(health.set("support", "Archiv", Some("imap_protocol: no such folder".into())));
        assert!(!health.set("support", "Archiv", Some("imap_protocol: no such folder".into())), "a retry is no change");
        assert!(!health.set("support", "INBOX", None));
        assert_eq!(health.snapshot(), vec![("support".to_owned(), Some("imap_protocol: no such folder".to_owned()))]);
        assert!(health.set("support", "INBOX", Some("imap_connect: refused".into())));
        assert_eq!(
            health.snapshot()[0].1.as_deref(),
            Some("imap_protocol: no such folder; imap_connect: refused"),
            "every failing part, in part order"
        );
        assert!(health.set("support", "Archiv", None) && health.set("support", "INBOX", None));
        assert_eq!(health.snapshot(), vec![("support".to_owned(), None)]);
    }
}
