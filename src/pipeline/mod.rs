//! The one inbound path: dedup → normalize → stitch → commit, for every channel.
//!
//! Invariant: every inbound message from every channel goes through `Pipeline::ingest`, and ends
//! as stored or duplicate (or refused with an error before anything was stored). Attachment blobs
//! are made durable first; then one store transaction checks for a duplicate, stitches, and
//! writes the message, any new contact and conversation, and their events. When `ingest`
//! returns `Ok`, all of it is on disk: only then may an adapter acknowledge the provider.

mod commit;
mod context;
mod mail;
pub mod rekey;

pub use context::{ChannelState, Health, InboundContext};

use std::collections::HashMap;

use crate::channels::{RawAttachment, RawInbound, Registry};
use crate::live::Live;
use crate::model::{Attachment, AttachmentId, ConversationId, MessageId};
use crate::store::{self, Store, StoreError};

/// A pull channel's resume point (`channel_state` key and value), stored with what it covers;
/// `previous` is the value it must still have (`None`: not set yet).
#[derive(Clone, Debug)]
pub struct Checkpoint {
    pub channel_id: String,
    pub key: String,
    pub value: String,
    pub previous: Option<String>,
}

/// Inbound items whose attachments are already durable blobs, ready for one transaction (which
/// also indexes the blobs new to the store).
pub struct PreparedBatch {
    items: Vec<(RawInbound, StoredParts)>,
    new_blobs: store::NewAttachments,
}

impl PreparedBatch {
    /// Inside the transaction: commits each item, then indexes the new blobs that what was
    /// kept refers to: a stored item's files and source, a refused item's kept source; not a
    /// duplicate's. The outcomes, and whether any new blob was indexed (for `settle`).
    fn commit(self, conn: &rusqlite::Connection, rules: &commit::Rules) -> Result<(Vec<Outcome>, bool), StoreError> {
        let mut needed = std::collections::HashSet::new();
        let mut outcomes = Vec::with_capacity(self.items.len());
        for (raw, stored) in self.items {
            let source = stored.source.as_ref().map(|a| a.sha256.clone());
            let files: Vec<String> = stored.attachments.iter().map(|a| a.sha256.clone()).collect();
            let outcome = commit::commit(conn, raw, stored, rules)?;
            match outcome {
                Outcome::Stored { .. } => needed.extend(files.into_iter().chain(source)),
                Outcome::Rejected { .. } => needed.extend(source),
                Outcome::Duplicate { .. } => {}
            }
            outcomes.push(outcome);
        }
        let indexed = self.new_blobs.write(conn, Some(&needed))?;
        Ok((outcomes, indexed))
    }
}

/// An inbound item's blobs, stored and described: its attachments and its kept source.
struct StoredParts {
    attachments: Vec<Attachment>,
    source: Option<Attachment>,
    /// The item's source was not stored: the store had decided the item before (a second
    /// delivery of a mail, a copy of our own), so the transaction need not keep it. Should the
    /// transaction find it undecided after all, the batch fails and is read again.
    source_withheld: bool,
}

/// What became of an inbound item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Stored {
        message_id: MessageId,
        conversation_id: ConversationId,
    },
    /// The provider id was seen before on this channel (or the mail is a copy of one of our
    /// outbound messages): these are that message's ids, and nothing was stored or emitted.
    Duplicate {
        message_id: MessageId,
        conversation_id: ConversationId,
    },
    /// Refused with a recorded reason (an auto-reply outside any conversation, a bounce about a
    /// message we never sent). Nothing else was stored; the source may acknowledge it.
    Rejected {
        reason: String,
    },
}

#[derive(Clone)]
pub struct Pipeline {
    pub(crate) store: Store,
    /// The channels as configured now (a reload replaces them): their inbound limits.
    channels: Live<Registry>,
}

impl Pipeline {
    pub fn new(store: Store, channels: Live<Registry>) -> Pipeline {
        Pipeline { store, channels }
    }

    /// What items of `channel` are decided by: its sender limit
    /// (`limits.inbound_per_sender_per_hour`), the channels configured now, and the store's.
    fn rules(&self, channel: &str) -> commit::Rules {
        let channels = self.channels.load();
        commit::Rules {
            sender_limit: channels.get(channel).and_then(|c| c.config.sender_limit()),
            source_keys_before: self.store.mail_source_keys_before(),
            channels,
        }
    }

    pub async fn ingest(&self, raw: RawInbound) -> Result<Outcome, StoreError> {
        let channel = raw.channel_id.clone();
        let accepting = raw.accepted_refusal.is_some();
        let result = self.ingest_inner(raw).await;
        // An item an operator could not take in was counted when it was refused.
        if !(accepting && matches!(result, Ok(Outcome::Rejected { .. }))) {
            count(&channel, result.as_ref().map_err(|_| ()));
        }
        result
    }

    /// The part of ingesting a batch that needs no transaction: every attachment made a durable
    /// blob (in one trip to the blocking pool) and described. Blobs are content-addressed, so
    /// storing them ahead of a commit that then fails leaves nothing wrong behind.
    pub async fn prepare_batch(&self, raws: Vec<RawInbound>) -> Result<PreparedBatch, StoreError> {
        let (mut raws, withheld) = self.sources_to_keep(raws).await?;
        let bytes = raws
            .iter()
            .flat_map(|r| r.attachments.iter().chain(&r.source).map(|a| (a.bytes.clone(), a.sha256.clone())))
            .collect();
        let mut stored = self.store.put_blobs(bytes).await?;
        let mut hashes = std::mem::take(&mut stored.names).into_iter();
        let new_blobs = self.store.new_attachments(stored);
        let mut describe = |a: crate::channels::RawAttachment| {
            let sha256 = hashes.next().expect("one hash per blob");
            self.describe_attachment(a.filename, a.content_id, a.content_type, a.bytes.len() as u64, sha256)
        };
        let mut prepared = Vec::with_capacity(raws.len());
        for (mut raw, source_withheld) in raws.drain(..).zip(withheld) {
            let attachments = std::mem::take(&mut raw.attachments).into_iter().map(&mut describe).collect();
            let source = raw.source.take().map(&mut describe);
            prepared.push((raw, StoredParts { attachments, source, source_withheld }));
        }
        Ok(PreparedBatch { items: prepared, new_blobs })
    }

    /// Keeps a source only where one may be needed. Each delivery of a mail has its own bytes
    /// (its own trace fields), so a mail delivered twice — To us and Cc an alias forwarded here,
    /// a list that names us — would leave the second delivery's source in a pack, referred to by
    /// nothing, were it stored before the transaction finds the mail a duplicate. So an item the
    /// store decided before (`commit::already_decided`, asked of the read pool in one trip) has
    /// its source withheld (the `bool`), and a later copy of a mail within the batch shares the
    /// first copy's source. An item taken in after a refusal brings the source it was kept
    /// with.
    async fn sources_to_keep(&self, raws: Vec<RawInbound>) -> Result<(Vec<RawInbound>, Vec<bool>), StoreError> {
        fn may_share(raw: &RawInbound) -> bool {
            raw.source.is_some() && raw.dedup_key.is_some() && raw.accepted_refusal.is_none()
        }
        let Some(first) = raws.iter().find(|r| may_share(r)) else {
            let none = vec![false; raws.len()];
            return Ok((raws, none));
        };
        let rules = self.rules(&first.channel_id);
        let (mut raws, decided) = self
            .store
            .read(move |conn| {
                let decided = raws
                    .iter()
                    .map(|r| Ok(may_share(r) && commit::already_decided(conn, r, &rules)?.is_some()))
                    .collect::<Result<Vec<bool>, StoreError>>()?;
                Ok((raws, decided))
            })
            .await?;
        let mut first_copies: HashMap<String, RawAttachment> = HashMap::new();
        for (raw, decided) in raws.iter_mut().zip(&decided) {
            if *decided {
                raw.source = None;
            } else if let (true, Some(key), Some(source)) = (may_share(raw), &raw.dedup_key, &raw.source) {
                let first = first_copies.entry(key.clone()).or_insert_with(|| source.clone());
                raw.source = Some(first.clone());
            }
        }
        Ok((raws, decided))
    }

    /// Queues a prepared batch for one transaction at once (batches commit in the order they
    /// were submitted) and returns the future of its outcomes. The channel's `checkpoint` is
    /// advanced in that same transaction, so it never runs ahead of what is stored nor lags
    /// behind it; and only from the value it had when this batch was read, so a batch queued
    /// behind one that failed fails too instead of skipping it. All or nothing: on error none
    /// of the batch is stored and the checkpoint stays.
    pub fn submit_batch(
        &self,
        batch: PreparedBatch,
        checkpoint: Checkpoint,
    ) -> impl std::future::Future<Output = Result<Vec<Outcome>, StoreError>> + Send + 'static {
        let channel = batch.items.first().map(|(r, _)| r.channel_id.clone()).unwrap_or_default();
        let rules = self.rules(&channel);
        let (store, new_blobs) = (self.store.clone(), batch.new_blobs.clone());
        let committed = self.store.submit(move |conn| {
            let c = &checkpoint;
            let current = store::mail::checkpoint(conn, &c.channel_id, &c.key)?;
            if current != c.previous {
                return Err(StoreError::Stale(format!(
                    "checkpoint {} is {current:?}, not {:?}: an earlier batch was not stored",
                    c.key, c.previous
                )));
            }
            let committed = batch.commit(conn, &rules)?;
            store::mail::set_checkpoint(conn, &c.channel_id, &c.key, &c.value)?;
            Ok(committed)
        });
        async move {
            let result = committed.await;
            match &result {
                Ok((outcomes, _)) => outcomes.iter().for_each(|o| count(&channel, Ok(o))),
                Err(_) => count(&channel, Err(())),
            }
            new_blobs.settle(&store, result.as_ref().map(|(_, indexed)| *indexed)).await;
            result.map(|(outcomes, _)| outcomes)
        }
    }

    async fn ingest_inner(&self, raw: RawInbound) -> Result<Outcome, StoreError> {
        let batch = self.prepare_batch(vec![raw]).await?;
        let rules = self.rules(&batch.items[0].0.channel_id);
        let settling = batch.new_blobs.clone();
        let result = self.store.write(move |conn| batch.commit(conn, &rules)).await;
        settling.settle(&self.store, result.as_ref().map(|(_, indexed)| *indexed)).await;
        result.map(|(mut outcomes, _)| outcomes.pop().expect("one item in, one out"))
    }

    /// The public description of a stored blob; its URL is under `server.public_url`
    /// (`Store::use_public_url`).
    pub fn describe_attachment(
        &self,
        filename: Option<String>,
        content_id: Option<String>,
        content_type: String,
        size: u64,
        sha256: String,
    ) -> Attachment {
        let id = AttachmentId::new();
        let url = self.store.attachment_urls().url(&id);
        Attachment { id, filename, content_id, content_type, size, sha256, url }
    }
}

fn count(channel: &str, outcome: Result<&Outcome, ()>) {
    let outcome = match outcome {
        Ok(Outcome::Stored { .. }) => "stored",
        Ok(Outcome::Duplicate { .. }) => "duplicate",
        Ok(Outcome::Rejected { .. }) => "rejected",
        Err(()) => "error",
    };
    metrics::counter!("switchboard_inbound_total", "channel" => channel.to_owned(), "outcome" => outcome).increment(1);
}
