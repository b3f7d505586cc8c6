//! The worker of one webhook consumer: fan out new events from the log into owed deliveries,
//! send due heads concurrently (one per conversation), and record every outcome.
//!
//! All state changes go through this task (API requests arrive as `Command`s), so the in-memory
//! schedule and the store never disagree. Outcomes are committed in batches; a crash between an
//! acknowledged POST and its record only causes a redelivery with the same `webhook-id`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::attempt::{self, AttemptOutcome};
use super::body;
use super::queue::Schedule;
use super::ConsumerConfig;
use crate::model::time;
use crate::retry;
use crate::store::webhooks::{AttemptRecord, ConsumerState, Delivery};
use crate::store::{self, Store, StoreError};

/// Events read from the log per fan-out step.
const FAN_OUT_BATCH: usize = 1000;
/// Above this many owed deliveries, fresh bodies are not kept in memory (they are read back at
/// their first attempt); a cache for the next few thousand attempts is all that speeds delivery.
const BODY_CACHE_LIMIT: usize = 2_000;
/// Owed deliveries held in memory at most. Beyond it the fan-out waits: later events stay in
/// the log (behind `scan_seq`) until deliveries drain, so a consumer that is down for a day
/// costs disk, not memory, and a backlog import keeps memory flat.
const MAX_OWED_IN_MEMORY: usize = 10_000;

pub enum Command {
    Status(oneshot::Sender<ConsumerStatus>),
    Replay {
        after_seq: u64,
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
    RetryDead {
        event_ids: Option<Vec<String>>,
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
    Enable(oneshot::Sender<Result<(), StoreError>>),
    /// New settings from a reload; `done` is answered once every later attempt uses them.
    Reconfigure {
        config: Arc<ConsumerConfig>,
        done: oneshot::Sender<()>,
    },
}

/// `GET /v1/webhooks/{id}`.
#[derive(Clone, Debug, Serialize)]
pub struct ConsumerStatus {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    /// Channel ids whose events it takes; empty: every channel's.
    pub channels: Vec<String>,
    /// Every event with `seq <= cursor` is delivered or dead-lettered.
    pub cursor: u64,
    /// Events owed to the consumer (fanned out and not yet delivered, plus not yet fanned out).
    pub backlog: u64,
    pub in_flight: usize,
    pub dead_letters: u64,
    pub disabled: bool,
    pub disabled_reason: Option<String>,
    pub disabled_at: Option<String>,
    pub last_error: Option<LastError>,
}

#[derive(Clone, Debug, Serialize)]
pub struct LastError {
    pub message: String,
    pub at: String,
}

struct Finished {
    delivery: Delivery,
    outcome: AttemptOutcome,
}

pub struct Worker {
    config: Arc<ConsumerConfig>,
    store: Store,
    client: reqwest::Client,
    state: ConsumerState,
    schedule: Schedule,
    records: Vec<AttemptRecord>,
    dead_letters: u64,
    /// The consumer state as last committed, to know when it needs writing.
    persisted: Option<ConsumerState>,
    /// Bound on `schedule.len()` for fan-out (`MAX_OWED_IN_MEMORY`; lower in tests).
    max_owed: usize,
    /// The events owed, as `/metrics` shows them (`switchboard_webhook_backlog{consumer}`):
    /// read there for the consumers configured now, so that a removed one's goes with it.
    backlog: Arc<AtomicU64>,
}

impl Worker {
    pub async fn start(config: Arc<ConsumerConfig>, store: Store) -> Result<Worker, StoreError> {
        let id = config.id.clone();
        let (state, pending, dead_letters) = store
            .write(move |c| {
                let state = store::webhooks::ensure_consumer(c, &id, 0)?;
                Ok((state, store::webhooks::pending(c, &id)?, store::webhooks::dead_count(c, &id)?))
            })
            .await?;
        let mut schedule = Schedule::default();
        for d in pending {
            schedule.push(d, None);
        }
        let client = crate::http_out::client(config.timeout, config.ca_pem.as_deref());
        Ok(Worker {
            config,
            store,
            client,
            persisted: Some(state.clone()),
            state,
            schedule,
            records: Vec::new(),
            dead_letters,
            max_owed: MAX_OWED_IN_MEMORY,
            backlog: Arc::default(),
        })
    }

    pub async fn run(mut self, mut commands: mpsc::Receiver<Command>, shutdown: CancellationToken, grace: Duration) {
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Finished>();
        let mut last_seq = self.store.last_seq();
        tracing::info!(consumer = %self.config.id, url = %self.config.url, owed = self.schedule.len(), "webhook consumer started");
        while !shutdown.is_cancelled() {
            let more = match self.fan_out().await {
                Ok(more) => more,
                Err(e) => {
                    tracing::error!(consumer = %self.config.id, error = %e, "fan-out failed; retrying in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            self.dispatch(&done_tx);
            self.flush().await;
            self.publish_backlog(*last_seq.borrow());
            if more {
                // More log to read: take in finished attempts and commands, but do not sleep.
                while let Ok(f) = done_rx.try_recv() {
                    self.finish(f);
                }
                if let Ok(cmd) = commands.try_recv() {
                    self.command(cmd).await;
                }
                continue;
            }
            let sleep = match (self.disabled(), self.schedule.next_due()) {
                (false, Some(due)) => Duration::from_millis((due - time::now_ms()).clamp(0, 60_000) as u64),
                _ => Duration::from_secs(60),
            };
            tokio::select! {
                Some(f) = done_rx.recv() => {
                    self.finish(f);
                    while let Ok(f) = done_rx.try_recv() {
                        self.finish(f);
                    }
                }
                Ok(()) = last_seq.changed() => {}
                Some(cmd) = commands.recv() => self.command(cmd).await,
                _ = tokio::time::sleep(sleep) => {}
                _ = shutdown.cancelled() => {}
            }
        }
        // Shutdown: no new attempts; wait for those in flight and record them.
        let deadline = tokio::time::Instant::now() + grace;
        while self.schedule.in_flight() > 0 {
            match tokio::time::timeout_at(deadline, done_rx.recv()).await {
                Ok(Some(f)) => self.finish(f),
                _ => break,
            }
        }
        self.flush().await;
        tracing::info!(consumer = %self.config.id, owed = self.schedule.len(), "webhook consumer stopped");
    }

    fn disabled(&self) -> bool {
        self.state.disabled_at.is_some()
    }

    /// Reads the next events after the fan-out cursor and makes the matching ones owed. Returns
    /// whether there may be more to read right away.
    async fn fan_out(&mut self) -> Result<bool, StoreError> {
        if self.disabled() || *self.store.last_seq().borrow() <= self.state.scan_seq {
            return Ok(false);
        }
        let room = self.max_owed.saturating_sub(self.schedule.len()).min(FAN_OUT_BATCH);
        if room == 0 {
            return Ok(false);
        }
        let after = self.state.scan_seq;
        let events = self.store.read(move |c| store::events::after(c, after, room)).await?;
        let Some(last) = events.last().map(|e| e.seq) else { return Ok(false) };
        let full = events.len() == room;
        let now = time::now_ms();
        let keep_bodies = self.schedule.len() < BODY_CACHE_LIMIT;
        let urls = self.store.attachment_urls();
        let owed: Vec<(Delivery, Option<Arc<String>>)> = events
            .into_iter()
            .filter(|e| self.config.filter.takes(&e.kind, &e.data))
            .map(|e| {
                let body = keep_bodies.then(|| Arc::new(e.envelope_json(&urls)));
                let delivery = Delivery {
                    seq: e.seq,
                    event_id: e.id,
                    ordering_key: e.ordering_key,
                    created_at: e.created_at,
                    attempts: 0,
                    next_attempt_at: now,
                    last_error: None,
                    dead: false,
                };
                (delivery, body)
            })
            .collect();
        let id = self.config.id.clone();
        let rows: Vec<Delivery> = owed.iter().map(|(d, _)| d.clone()).collect();
        self.store.write(move |c| store::webhooks::enqueue(c, &id, &rows, Some(last))).await?;
        self.state.scan_seq = last;
        for (delivery, body) in owed {
            self.schedule.push(delivery, body);
        }
        Ok(full)
    }

    fn dispatch(&mut self, done: &mpsc::UnboundedSender<Finished>) {
        if self.disabled() {
            return;
        }
        let now = time::now_ms();
        while self.schedule.in_flight() < self.config.max_in_flight {
            let Some((delivery, body)) = self.schedule.take_due(now) else { break };
            let client = self.client.clone();
            let config = self.config.clone();
            let store = self.store.clone();
            let done = done.clone();
            tokio::spawn(async move {
                let outcome = match body_for(&store, &delivery, body).await {
                    Ok(body) => {
                        let body = within_limit(&config, &delivery, body);
                        attempt::deliver(&client, &config, &delivery.event_id, body).await
                    }
                    // Only a replay racing a prune owes an event retention removed: nothing is
                    // left to send, and retrying would hold the conversation's later events.
                    Err(_) if delivery.seq <= store.events_pruned_through() => {
                        tracing::warn!(consumer = %config.id, seq = delivery.seq, "event removed by storage.retention before it was sent; passed over");
                        AttemptOutcome::Delivered
                    }
                    Err(e) => {
                        AttemptOutcome::Failed { error: format!("cannot read the event: {e}"), retry_after: None }
                    }
                };
                let _ = done.send(Finished { delivery, outcome });
            });
        }
    }

    fn finish(&mut self, finished: Finished) {
        let Finished { delivery, outcome } = finished;
        let consumer = self.config.id.clone();
        let key = delivery.ordering_key.clone();
        let seq = delivery.seq;
        match outcome {
            AttemptOutcome::Delivered => {
                metrics::counter!("switchboard_webhook_attempts_total", "consumer" => consumer, "outcome" => "delivered").increment(1);
                let latency = (time::now_ms() - delivery.created_at).max(0) as f64 / 1000.0;
                metrics::histogram!("switchboard_delivery_latency_seconds").record(latency);
                self.schedule.complete(&key, seq);
                self.records.push(AttemptRecord::Delivered { seq });
            }
            AttemptOutcome::Gone => {
                metrics::counter!("switchboard_webhook_attempts_total", "consumer" => consumer, "outcome" => "gone")
                    .increment(1);
                let reason = format!("{} answered 410 Gone", self.config.url);
                tracing::warn!(consumer = %self.config.id, reason = %reason, "webhook consumer disabled; POST /v1/webhooks/{}/enable resumes it", self.config.id);
                let now = time::now_ms();
                self.state.disabled_at = Some(now);
                self.state.disabled_reason = Some(reason);
                self.schedule.release(&key);
            }
            AttemptOutcome::Failed { error, retry_after } => {
                let attempts = delivery.attempts + 1;
                let outcome = if retry_after.is_some() { "throttled" } else { "failed" };
                metrics::counter!("switchboard_webhook_attempts_total", "consumer" => consumer, "outcome" => outcome)
                    .increment(1);
                let now = time::now_ms();
                self.state.last_error = Some(format!("event {}: {error}", delivery.event_id));
                self.state.last_error_at = Some(now);
                let delay = retry::next_delay(
                    &self.config.schedule,
                    attempts,
                    retry_after,
                    self.config.max_retry_after,
                    fastrand::f64(),
                );
                match delay {
                    Some(delay) => {
                        let next = now + delay.as_millis() as i64;
                        tracing::debug!(consumer = %self.config.id, event = %delivery.event_id, attempts, error = %error, retry_in_ms = delay.as_millis() as u64, "webhook attempt failed");
                        self.schedule.reschedule(&key, seq, attempts, next, error.clone());
                        self.records.push(AttemptRecord::Retry { seq, attempts, next_attempt_at: next, error });
                    }
                    None => {
                        tracing::warn!(consumer = %self.config.id, event = %delivery.event_id, attempts, error = %error, "webhook retries exhausted; event is now a dead letter");
                        self.schedule.complete(&key, seq);
                        self.records.push(AttemptRecord::Dead { seq, attempts, error });
                        self.dead_letters += 1;
                    }
                }
            }
        }
    }

    /// Commits recorded outcomes and the consumer's status in one write.
    async fn flush(&mut self) {
        if self.records.is_empty() && !self.status_dirty() {
            return;
        }
        let records = std::mem::take(&mut self.records);
        let retained = records.clone();
        let id = self.config.id.clone();
        let state = self.state.clone();
        let result = self
            .store
            .write(move |c| {
                store::webhooks::record(c, &id, &records)?;
                let error = state.last_error.as_deref().zip(state.last_error_at);
                let disabled = Some(state.disabled_reason.as_deref().zip(state.disabled_at));
                store::webhooks::set_status(c, &id, error, disabled)?;
                Ok(())
            })
            .await;
        match result {
            Ok(()) => self.persisted = Some(self.state.clone()),
            Err(e) => {
                tracing::error!(consumer = %self.config.id, error = %e, "cannot record webhook outcomes; will try again");
                self.records.splice(0..0, retained);
            }
        }
    }

    fn status_dirty(&self) -> bool {
        self.persisted.as_ref() != Some(&self.state)
    }

    fn publish_backlog(&self, last_seq: u64) {
        let backlog = self.schedule.len() as u64 + last_seq.saturating_sub(self.state.scan_seq);
        self.backlog.store(backlog, Ordering::Relaxed);
    }

    /// Where the worker publishes its backlog (`Webhooks::backlogs`).
    pub fn backlog(&self) -> Arc<AtomicU64> {
        self.backlog.clone()
    }

    async fn command(&mut self, command: Command) {
        match command {
            Command::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Command::Replay { after_seq, reply } => {
                let _ = reply.send(self.replay(after_seq).await);
            }
            Command::RetryDead { event_ids, reply } => {
                let _ = reply.send(self.retry_dead(event_ids).await);
            }
            Command::Reconfigure { config, done } => {
                if config.timeout != self.config.timeout || config.ca_pem != self.config.ca_pem {
                    self.client = crate::http_out::client(config.timeout, config.ca_pem.as_deref());
                }
                tracing::info!(consumer = %config.id, url = %config.url, "webhook consumer reconfigured; attempts in flight finish as they started");
                let reached_anew = config.url != self.config.url || config.ca_pem != self.config.ca_pem;
                if reached_anew || config.max_body_bytes != self.config.max_body_bytes {
                    // Deliveries waiting for a retry go at once to the new URL, trusting the new
                    // CA or with the new body limit: the reason for the wait may have been the
                    // old one (a refused connection or certificate, a 413).
                    self.schedule.heads_due_now(time::now_ms());
                }
                self.config = config;
                let _ = done.send(());
            }
            Command::Enable(reply) => {
                self.state.disabled_at = None;
                self.state.disabled_reason = None;
                self.flush().await;
                self.schedule.reset_heads();
                tracing::info!(consumer = %self.config.id, "webhook consumer enabled");
                let _ = reply.send(if self.status_dirty() { Err(StoreError::Closed) } else { Ok(()) });
            }
        }
    }

    fn status(&self) -> ConsumerStatus {
        let last_seq = *self.store.last_seq().borrow();
        let cursor = match self.schedule.min_seq() {
            Some(min) => min.saturating_sub(1).min(self.state.scan_seq),
            None => self.state.scan_seq,
        };
        ConsumerStatus {
            id: self.config.id.clone(),
            url: self.config.url.clone(),
            events: self.config.filter.types.clone(),
            channels: self.config.filter.channels.clone(),
            cursor,
            backlog: self.schedule.len() as u64 + last_seq.saturating_sub(self.state.scan_seq),
            in_flight: self.schedule.in_flight(),
            dead_letters: self.dead_letters,
            disabled: self.disabled(),
            disabled_reason: self.state.disabled_reason.clone(),
            disabled_at: self.state.disabled_at.map(time::rfc3339),
            last_error: self
                .state
                .last_error
                .clone()
                .zip(self.state.last_error_at)
                .map(|(message, at)| LastError { message, at: time::rfc3339(at) }),
        }
    }

    /// Owes the consumer again every matching event after `after_seq` that it is not already
    /// owed (up to the fan-out cursor; later events come by the normal path).
    async fn replay(&mut self, after_seq: u64) -> Result<u64, StoreError> {
        let mut cursor = after_seq;
        let mut count = 0;
        let now = time::now_ms();
        while cursor < self.state.scan_seq {
            let from = cursor;
            let events = self.store.read(move |c| store::events::after(c, from, FAN_OUT_BATCH)).await?;
            let Some(last) = events.last().map(|e| e.seq) else { break };
            cursor = last;
            let rows: Vec<Delivery> = events
                .into_iter()
                .filter(|e| e.seq <= self.state.scan_seq && self.config.filter.takes(&e.kind, &e.data))
                .filter(|e| !self.schedule.contains(&e.ordering_key, e.seq))
                .map(|e| Delivery {
                    seq: e.seq,
                    event_id: e.id,
                    ordering_key: e.ordering_key,
                    created_at: e.created_at,
                    attempts: 0,
                    next_attempt_at: now,
                    last_error: None,
                    dead: false,
                })
                .collect();
            let id = self.config.id.clone();
            let written = rows.clone();
            self.store.write(move |c| store::webhooks::enqueue(c, &id, &written, None)).await?;
            count += rows.len() as u64;
            for d in rows {
                self.schedule.push(d, None);
            }
        }
        self.refresh_dead_count().await;
        tracing::info!(consumer = %self.config.id, after_seq, events = count, "replay queued");
        Ok(count)
    }

    async fn retry_dead(&mut self, event_ids: Option<Vec<String>>) -> Result<u64, StoreError> {
        let id = self.config.id.clone();
        let now = time::now_ms();
        let revived = self.store.write(move |c| store::webhooks::revive(c, &id, event_ids.as_deref(), now)).await?;
        let count = revived.len() as u64;
        for d in revived {
            self.schedule.push(d, None);
        }
        self.refresh_dead_count().await;
        tracing::info!(consumer = %self.config.id, events = count, "dead letters queued for retry");
        Ok(count)
    }

    async fn refresh_dead_count(&mut self) {
        let id = self.config.id.clone();
        if let Ok(n) = self.store.read(move |c| store::webhooks::dead_count(c, &id)).await {
            self.dead_letters = n;
        }
    }
}

/// The body to send: the envelope, cut to the consumer's `max_body_bytes` when it is larger.
fn within_limit(config: &ConsumerConfig, delivery: &Delivery, envelope: Arc<String>) -> Arc<String> {
    let Some(cut) = body::fit(&envelope, config.max_body_bytes) else { return envelope };
    if delivery.attempts == 0 {
        metrics::counter!("switchboard_webhook_bodies_cut_total", "consumer" => config.id.clone()).increment(1);
        tracing::info!(
            consumer = %config.id,
            event = %delivery.event_id,
            bytes = envelope.len(),
            sent_bytes = cut.body.len(),
            truncated = %cut.truncated.join(","),
            "event larger than the consumer's max_body_bytes; sending it cut (the API has it whole)"
        );
    }
    Arc::new(cut.body)
}

/// The envelope to send: the cached one, or read back from the log.
async fn body_for(store: &Store, delivery: &Delivery, cached: Option<Arc<String>>) -> Result<Arc<String>, StoreError> {
    if let Some(body) = cached {
        return Ok(body);
    }
    let seq = delivery.seq;
    let event = store.read(move |c| store::events::by_seq(c, seq)).await?;
    let urls = store.attachment_urls();
    event
        .map(|e| Arc::new(e.envelope_json(&urls)))
        .ok_or_else(|| StoreError::Corrupt(format!("event seq {seq} is missing")))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::model::EventType;

    /// With fewer owed deliveries allowed in memory than events in the log, the fan-out waits
    /// for deliveries to drain: every event still arrives, once, in order per conversation, and
    /// the owed rows never exceed the bound.
    #[tokio::test]
    async fn fan_out_waits_when_the_owed_bound_is_reached_and_still_delivers_everything() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .write(|c| {
                for n in 0..30 {
                    let key = format!("cnv_{}", n % 3);
                    store::events::append(c, EventType::MessageReceived, &key, &serde_json::json!({"n": n}))?;
                }
                Ok(())
            })
            .await
            .unwrap();

        // A receiver that records each event and the owed rows at that moment.
        let seen: Arc<Mutex<Vec<(String, u64, i64)>>> = Arc::default();
        let (recorded, reader) = (seen.clone(), store.clone());
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |body: String| {
                let (recorded, reader) = (recorded.clone(), reader.clone());
                async move {
                    let owed = reader
                        .read(|c| Ok(c.query_row("SELECT count(*) FROM webhook_deliveries", [], |r| r.get(0))?))
                        .await
                        .unwrap();
                    let event: serde_json::Value = serde_json::from_str(&body).unwrap();
                    let n = event["data"]["n"].as_u64().unwrap();
                    recorded.lock().unwrap().push((format!("cnv_{}", n % 3), n, owed));
                    axum::http::StatusCode::NO_CONTENT
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });

        let config = Arc::new(ConsumerConfig {
            id: "bounded".into(),
            url,
            keys: vec![super::super::signing::SigningKey::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap()],
            filter: crate::model::event::EventFilter { types: vec!["message.received".into()], channels: Vec::new() },
            timeout: Duration::from_secs(5),
            max_in_flight: 2,
            schedule: vec![Duration::from_millis(100)],
            max_retry_after: Duration::from_secs(1),
            max_body_bytes: 1 << 20,
            ca_pem: None,
        });
        let mut worker = Worker::start(config, store.clone()).await.unwrap();
        worker.max_owed = 4;
        let (_commands, receiver) = mpsc::channel(1);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(worker.run(receiver, shutdown.clone(), Duration::from_secs(1)));
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while seen.lock().unwrap().len() < 30 {
            assert!(std::time::Instant::now() < deadline, "only {} of 30 events arrived", seen.lock().unwrap().len());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        shutdown.cancel();
        task.await.unwrap();

        let seen = seen.lock().unwrap().clone();
        let mut numbers: Vec<u64> = seen.iter().map(|(_, n, _)| *n).collect();
        numbers.sort_unstable();
        assert_eq!(numbers, (0..30).collect::<Vec<_>>(), "each event exactly once");
        for key in ["cnv_0", "cnv_1", "cnv_2"] {
            let order: Vec<u64> = seen.iter().filter(|(k, _, _)| k == key).map(|(_, n, _)| *n).collect();
            assert!(order.windows(2).all(|w| w[0] < w[1]), "{key} out of order: {order:?}");
        }
        // Rows of finished deliveries are deleted at the next flush, after the fan-out that
        // refilled their slots: at most `max_in_flight` more than the bound.
        let most_owed = seen.iter().map(|(_, _, owed)| *owed).max().unwrap();
        assert!(most_owed <= 4 + 2, "{most_owed} owed rows with a bound of 4 and 2 in flight");
        assert!(most_owed < 30, "the fan-out did not wait");
        store.close();
    }
}
