//! The one delivery engine for outbound messages.
//!
//! Loop: read due jobs → for each, ask the channel's rate limiter; a job that does not fit gets
//! a later `due_at` and is released (invariant 5); one that fits is leased in memory and sent on
//! its own task, bounded by `outbound.max_in_flight`. The result is committed with its status
//! event: `message.sent`; a temporary error reschedules by the retry schedule (honouring
//! `retry_after`); a permanent error or an exhausted schedule ends in `message.failed`.
//! A job sent but not yet recorded when the process dies is sent again after restart
//! (at-least-once; the api channel's `webhook-id` lets the receiver deduplicate).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use super::limits::{ChannelLimiter, Slots};
use super::status::{self, Transition};
use crate::channels::{ChannelLimits, OutboundMessage, Registry, SendError, Sent};
use crate::config::OutboundConfig;
use crate::live::Live;
use crate::model::{time, Direction, ErrorInfo};
use crate::pipeline::Health;
use crate::retry;
use crate::store::outbound::Job;
use crate::store::{self, Store, StoreError};

/// How many due jobs one round looks at.
const ROUND: usize = 256;

#[derive(Clone)]
pub struct OutboundEngine {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    /// Shared with the API; a reload swaps it.
    registry: Live<Registry>,
    limiters: Live<Limiters>,
    config: Live<OutboundConfig>,
    /// Where a channel's sending side reports that it fails or works again (`/readyz`).
    health: Health,
    wake: Notify,
}

/// Each channel's limiter with the limits it was built from.
type Limiters = HashMap<String, Arc<(ChannelLimits, ChannelLimiter)>>;

impl OutboundEngine {
    pub fn new(store: Store, registry: Live<Registry>, config: OutboundConfig, health: Health) -> OutboundEngine {
        let limiters = Live::new(limiters_for(&registry.load(), &Limiters::new()));
        let config = Live::new(config);
        OutboundEngine { inner: Arc::new(Inner { store, registry, limiters, config, health, wake: Notify::new() }) }
    }

    /// Applies a reload. The registry has already been swapped; limiters follow it (a channel
    /// whose limits did not change keeps its buckets, so a reload grants no fresh burst), and
    /// retry settings apply to the next failure; `max_in_flight` applies after a restart. Jobs
    /// of the `changed` channels that wait (held by the old limits, or for a retry with the old
    /// settings) become due now and meet the new limits. Sends in flight finish with the
    /// adapter they started with.
    pub async fn reconfigure(&self, config: OutboundConfig, changed: Vec<String>) -> Result<(), StoreError> {
        let limiters = limiters_for(&self.inner.registry.load(), &self.inner.limiters.load());
        self.inner.limiters.store(limiters);
        self.inner.config.store(config);
        if !changed.is_empty() {
            let now = time::now_ms();
            self.inner.store.write(move |c| store::outbound::make_due(c, &changed, now)).await?;
        }
        self.wake();
        Ok(())
    }

    /// Tells the engine new jobs were committed.
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// Runs until `shutdown`; then waits up to `grace` for sends in flight to be recorded.
    pub async fn run(self, shutdown: CancellationToken, grace: Duration) {
        let inner = self.inner;
        let permits = Arc::new(Semaphore::new(inner.config.load().max_in_flight));
        let mut leased: HashSet<String> = HashSet::new();
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<String>();
        let mut rounds: u64 = 0;
        while !shutdown.is_cancelled() {
            let saturated = match dispatch_round(&inner, &permits, &mut leased, &done_tx).await {
                Ok(saturated) => saturated,
                Err(e) => {
                    tracing::error!(error = %e, "outbound round failed; retrying in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            rounds += 1;
            if rounds.is_multiple_of(1024) {
                inner.limiters.load().values().for_each(|l| l.1.tidy());
            }
            let sleep = if saturated { Duration::from_secs(3600) } else { next_wake(&inner.store, &leased).await };
            tokio::select! {
                Some(id) = done_rx.recv() => {
                    leased.remove(&id);
                    while let Ok(id) = done_rx.try_recv() {
                        leased.remove(&id);
                    }
                }
                _ = inner.wake.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
                _ = shutdown.cancelled() => {}
            }
        }
        // Stop taking jobs; let the sends in flight finish and be recorded.
        let deadline = tokio::time::Instant::now() + grace;
        while !leased.is_empty() {
            match tokio::time::timeout_at(deadline, done_rx.recv()).await {
                Ok(Some(id)) => {
                    leased.remove(&id);
                }
                _ => break,
            }
        }
        if !leased.is_empty() {
            tracing::warn!(
                in_flight = leased.len(),
                "outbound sends still in flight at shutdown; they stay queued and are retried on start"
            );
        }
        // Idle connections (SMTP sessions) end with a goodbye rather than a dropped socket.
        let registry = inner.registry.load();
        futures_util::future::join_all(registry.iter().filter_map(|c| c.outbound.as_ref()).map(|o| o.close())).await;
    }
}

/// One pass over due jobs. Returns whether the in-flight bound was reached.
async fn dispatch_round(
    inner: &Arc<Inner>,
    permits: &Arc<Semaphore>,
    leased: &mut HashSet<String>,
    done_tx: &mpsc::UnboundedSender<String>,
) -> Result<bool, StoreError> {
    let now = time::now_ms();
    let limit = ROUND + leased.len();
    let jobs = inner.store.read(move |c| store::outbound::due(c, now, limit)).await?;
    let mut slots = Slots::default();
    let limiters = inner.limiters.load();
    let mut deferred: Vec<(String, i64, u32)> = Vec::new();
    let mut saturated = false;
    for job in jobs {
        if leased.contains(&job.message_id) {
            continue;
        }
        if let Some(limiter) = limiters.get(&job.channel_id) {
            if let Err((bucket, wait, period)) = limiter.1.check(&job.recipient) {
                let delay = slots.next(&job.channel_id, bucket, wait, period);
                deferred.push((job.message_id, now + delay.as_millis() as i64, job.attempts));
                metrics::counter!("switchboard_outbound_total", "channel" => job.channel_id, "status" => "deferred")
                    .increment(1);
                continue;
            }
        }
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            saturated = true;
            break;
        };
        leased.insert(job.message_id.clone());
        let inner = inner.clone();
        let done = done_tx.clone();
        tokio::spawn(async move {
            let id = job.message_id.clone();
            if let Err(e) = send_one(&inner, job).await {
                tracing::error!(message_id = %id, error = %e, "could not record a send result; the job stays queued");
            }
            drop(permit);
            let _ = done.send(id);
        });
    }
    if !deferred.is_empty() {
        inner
            .store
            .write(move |c| {
                for (id, due, attempts) in &deferred {
                    store::outbound::reschedule(c, id, *due, *attempts, None)?;
                }
                Ok(())
            })
            .await?;
    }
    Ok(saturated)
}

/// Time until the earliest job not already in flight (at most a minute: a safety net).
async fn next_wake(store: &Store, leased: &HashSet<String>) -> Duration {
    let skip = leased.clone();
    let next = store
        .read(move |c| {
            let mut stmt = c.prepare_cached("SELECT message_id, due_at FROM outbound_jobs ORDER BY due_at LIMIT ?1")?;
            let rows =
                stmt.query_map([skip.len() as i64 + 1], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
            for row in rows {
                let (id, due) = row?;
                if !skip.contains(&id) {
                    return Ok(Some(due));
                }
            }
            Ok(None)
        })
        .await;
    match next {
        Ok(Some(due)) => Duration::from_millis((due - time::now_ms()).clamp(0, 60_000) as u64),
        _ => Duration::from_secs(60),
    }
}

async fn send_one(inner: &Inner, job: Job) -> Result<(), StoreError> {
    let id = job.message_id.clone();
    let blobs = inner.store.blobs().clone();
    // The message with what adapters need from the store: thread references, attachment files.
    let prepared = inner
        .store
        .read(move |c| {
            let Some(message) = store::messages::get(c, &id)? else { return Ok(None) };
            let thread_refs = store::mail::headers_of_conversation(c, message.conversation_id.as_str(), 20)?;
            let in_reply_to_ref = match &message.in_reply_to {
                Some(parent) => store::mail::header_of_message(c, parent.as_str())?,
                None => None,
            };
            let files = message
                .attachments
                .iter()
                .map(|a| Ok(blobs.file(&a.sha256, store::blobs::location(c, &a.sha256)?, a.size)))
                .collect::<Result<_, StoreError>>()?;
            Ok(Some((message, thread_refs, in_reply_to_ref, files)))
        })
        .await?;
    let adapter = inner.registry.load().get(&job.channel_id).and_then(|c| c.outbound.clone());
    let config = inner.config.load();
    let result = match (prepared, adapter) {
        (None, _) => {
            Err(SendError::Permanent { code: "message_missing".into(), reason: "the message record is gone".into() })
        }
        // The channel was removed (or can no longer send) since the message was accepted: the
        // job waits out the retry schedule, so a channel put back by a reload or a restart
        // still sends it; an accidental removal loses nothing.
        (Some(_), None) => {
            tracing::warn!(message_id = %job.message_id, channel = %job.channel_id,
                "queued send for a channel that is not configured to send; it waits for the channel");
            Err(SendError::Temporary {
                code: "channel_unavailable".into(),
                reason: format!("channel `{}` is not configured to send", job.channel_id),
                retry_after: None,
            })
        }
        (Some((mut message, thread_refs, in_reply_to_ref, files)), Some(adapter)) => {
            // Queued before a restart under another `server.public_url`: sent with the current.
            inner.store.attachment_urls().rebase(&mut message);
            let outbound =
                OutboundMessage { message, recipient: job.recipient.clone(), thread_refs, in_reply_to_ref, files };
            let limit = config.timeout.0 + Duration::from_secs(5);
            match tokio::time::timeout(limit, adapter.send(&outbound)).await {
                Ok(result) => result,
                Err(_) => Err(SendError::Temporary {
                    code: "timeout".into(),
                    reason: "send timed out".into(),
                    retry_after: None,
                }),
            }
        }
    };
    // Looked up after the send: one that outlived its channel (removed by a reload meanwhile)
    // reports nothing, since its state would stay in /readyz with no channel left to clear it.
    let kind = inner.registry.load().get(&job.channel_id).map(|c| c.config.kind());
    match (&result, kind) {
        (Ok(_), Some(_)) => inner.health.report_ok(&job.channel_id, Direction::Outbound),
        (Err(SendError::Unavailable { code, reason }), Some(kind)) => {
            let channel = (job.channel_id.as_str(), kind);
            inner.health.report_error(&inner.store, channel, Direction::Outbound, code, reason).await;
        }
        _ => {}
    }
    record(inner, job, result).await
}

/// Commits what became of one send.
async fn record(inner: &Inner, job: Job, result: Result<Sent, SendError>) -> Result<(), StoreError> {
    let attempts = job.attempts + 1;
    let config = inner.config.load();
    // Temporary and unavailable both retry by the schedule; only a provider's own hint moves it.
    let retry_after = match &result {
        Err(SendError::Temporary { retry_after, .. }) => Some(*retry_after),
        Err(SendError::Unavailable { .. }) => Some(None),
        _ => None,
    };
    let delay = retry_after.and_then(|retry_after| {
        retry::next_delay(
            &config.retry_schedule.iter().map(|d| d.0).collect::<Vec<_>>(),
            attempts,
            retry_after,
            config.max_retry_after.0,
            fastrand::f64(),
        )
    });
    let channel = job.channel_id.clone();
    let final_outcome = inner
        .store
        .write(move |c| {
            let now = time::now_ms();
            let id = job.message_id.as_str();
            match result {
                Ok(sent) => {
                    store::outbound::finish(c, &job.channel_id, id)?;
                    let transition =
                        Transition::Sent { provider_message_id: sent.provider_message_id, encryption: sent.encryption };
                    let updated = status::apply(c, id, transition, now)?;
                    if let (Some(thread_ref), Some(m)) = (sent.thread_ref, updated) {
                        store::mail::record_header(c, &m.channel.id, &thread_ref, m.conversation_id.as_str(), id, now)?;
                    }
                    Ok("sent")
                }
                Err(SendError::Temporary { code, reason, .. } | SendError::Unavailable { code, reason }) => match delay {
                    Some(delay) => {
                        let due = now + delay.as_millis() as i64;
                        store::outbound::reschedule(c, id, due, attempts, Some(&format!("{code}: {reason}")))?;
                        tracing::info!(message_id = id, attempts, retry_in_ms = delay.as_millis() as u64, error = %reason, "send failed; will retry");
                        Ok("retry")
                    }
                    None => {
                        store::outbound::finish(c, &job.channel_id, id)?;
                        let message = format!("gave up after {attempts} attempts: {reason}");
                        tracing::warn!(message_id = id, error = %message, "send failed for good");
                        status::apply(c, id, Transition::Failed(ErrorInfo { code, message, permanent: false }), now)?;
                        Ok("failed")
                    }
                },
                Err(SendError::Permanent { code, reason }) => {
                    store::outbound::finish(c, &job.channel_id, id)?;
                    tracing::warn!(message_id = id, error = %reason, "send refused permanently");
                    status::apply(c, id, Transition::Failed(ErrorInfo { code, message: reason, permanent: true }), now)?;
                    Ok("failed")
                }
            }
        })
        .await?;
    metrics::counter!("switchboard_outbound_total", "channel" => channel, "status" => final_outcome).increment(1);
    Ok(())
}

/// A limiter per channel of `registry`, reusing those of `previous` whose limits are unchanged.
fn limiters_for(registry: &Registry, previous: &Limiters) -> Limiters {
    registry
        .iter()
        .map(|c| {
            let limits = c.config.limits();
            let kept = previous.get(c.config.id()).filter(|l| l.0 == *limits).cloned();
            let limiter = kept.unwrap_or_else(|| Arc::new((limits.clone(), ChannelLimiter::new(limits))));
            (c.config.id().to_owned(), limiter)
        })
        .collect()
}
