//! The one inbound path: dedup → normalize → stitch → commit, for every channel.
//!
//! Invariant: every inbound message from every channel goes through `Pipeline::ingest`, and ends
//! as stored or duplicate (or refused with an error before anything was stored). Attachment blobs
//! are made durable first; then one store transaction checks for a duplicate, stitches, and
//! writes the message, any new contact and conversation, and their events. When `ingest`
//! returns `Ok`, all of it is on disk: only then may an adapter acknowledge the provider.

mod context;
mod mail;

pub use context::{Health, InboundContext};

use rusqlite::Connection;

use crate::channels::RawInbound;
use crate::model::{
    time, Attachment, AttachmentId, ChannelRef, ContactId, ConversationId, Direction, EventType, Message, MessageId,
    ProviderRef, Status,
};
use crate::stitch::{self, Found};
use crate::store::{self, Store, StoreError};

/// What became of an inbound item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Stored {
        message_id: MessageId,
        conversation_id: ConversationId,
    },
    /// The provider id was seen before on this channel: these are the first message's ids, and
    /// nothing was stored or emitted.
    Duplicate {
        message_id: MessageId,
        conversation_id: ConversationId,
    },
}

#[derive(Clone)]
pub struct Pipeline {
    pub(crate) store: Store,
    public_url: String,
}

impl Pipeline {
    pub fn new(store: Store, public_url: &str) -> Pipeline {
        Pipeline { store, public_url: public_url.trim_end_matches('/').to_owned() }
    }

    pub async fn ingest(&self, raw: RawInbound) -> Result<Outcome, StoreError> {
        let channel = raw.channel_id.clone();
        let result = self.ingest_inner(raw).await;
        let outcome = match &result {
            Ok(Outcome::Stored { .. }) => "stored",
            Ok(Outcome::Duplicate { .. }) => "duplicate",
            Err(_) => "error",
        };
        metrics::counter!("switchboard_inbound_total", "channel" => channel, "outcome" => outcome).increment(1);
        result
    }

    async fn ingest_inner(&self, mut raw: RawInbound) -> Result<Outcome, StoreError> {
        let attachments = self.store_attachments(&mut raw).await?;
        self.store
            .write(move |conn| {
                if let Some(key) = &raw.dedup_key {
                    if let Some((message_id, conversation_id)) =
                        store::messages::inbound_by_dedup_key(conn, &raw.channel_id, key)?
                    {
                        return Ok(Outcome::Duplicate { message_id, conversation_id });
                    }
                }
                let now_ms = time::now_ms();
                let now = time::rfc3339(now_ms);
                let contact = store::conversations::contact_by_identity(conn, &raw.identity)?;
                let conversation = find_conversation(conn, &raw, contact.as_ref(), now_ms)?;
                let plan = stitch::plan(&raw, contact, conversation, &now);

                if let Found::New(contact) = &plan.contact {
                    store::conversations::insert_contact(conn, contact, now_ms)?;
                    store::events::append(conn, EventType::ContactCreated, contact.id.as_str(), contact)?;
                }
                let conversation = plan.conversation();
                match &plan.conversation {
                    Found::New(c) => {
                        store::conversations::insert(conn, c, now_ms)?;
                        store::events::append(conn, EventType::ConversationCreated, c.id.as_str(), c)?;
                    }
                    Found::Existing(c) if c.status == "closed" => {
                        // A customer writing into a closed conversation reopens it.
                        if let Some(reopened) = store::conversations::set_status(conn, c.id.as_str(), "open", now_ms)? {
                            store::events::append(conn, EventType::ConversationUpdated, c.id.as_str(), &reopened)?;
                        }
                        store::conversations::touch(conn, &c.id, now_ms)?;
                    }
                    Found::Existing(c) => store::conversations::touch(conn, &c.id, now_ms)?,
                }
                if let Some(mail) = &raw.mail {
                    let new = matches!(plan.conversation, Found::New(_));
                    record_mail(conn, &raw.identity, mail, conversation, new)?;
                }
                let dedup_key = raw.dedup_key.clone();
                let mail_id = raw.mail.as_ref().and_then(|m| m.message_id.clone());
                let channel_id = raw.channel_id.clone();
                let contact_id = plan.contact_id().clone();
                let message =
                    normalize(raw, attachments, contact_id, conversation.id.clone(), plan.stitch.clone(), &now);
                store::messages::insert(conn, &message, now_ms, dedup_key.as_deref())?;
                if let Some(header) = mail_id {
                    let (cnv, msg) = (conversation.id.as_str(), message.id.as_str());
                    store::mail::record_header(conn, &channel_id, &header, cnv, msg, now_ms)?;
                }
                store::events::append(conn, EventType::MessageReceived, message.conversation_id.as_str(), &message)?;
                Ok(Outcome::Stored { message_id: message.id, conversation_id: message.conversation_id })
            })
            .await
    }

    /// Writes attachment bytes as durable blobs and returns their public descriptions.
    async fn store_attachments(&self, raw: &mut RawInbound) -> Result<Vec<Attachment>, StoreError> {
        let mut out = Vec::with_capacity(raw.attachments.len());
        for a in std::mem::take(&mut raw.attachments) {
            let size = a.bytes.len() as u64;
            let sha256 = self.store.put_blob(a.bytes).await?;
            out.push(self.describe_attachment(a.filename, a.content_type, size, sha256));
        }
        Ok(out)
    }

    /// The public description of a stored blob; its URL is under `server.public_url`.
    pub fn describe_attachment(
        &self,
        filename: Option<String>,
        content_type: String,
        size: u64,
        sha256: String,
    ) -> Attachment {
        let id = AttachmentId::new();
        let url = format!("{}/v1/attachments/{id}", self.public_url);
        Attachment { id, filename, content_type, size, sha256, url }
    }
}

/// The conversation an inbound item joins, with the reason: by mail threading for mail, else by
/// the channel's thread key.
fn find_conversation(
    conn: &Connection,
    raw: &RawInbound,
    contact: Option<&ContactId>,
    now_ms: i64,
) -> Result<Option<(crate::model::Conversation, &'static str)>, StoreError> {
    let Some(mail) = &raw.mail else {
        return Ok(store::conversations::by_thread(conn, &raw.channel_id, &raw.thread_key)?.map(|c| (c, "thread")));
    };
    let mut lookup = mail::StoreLookup {
        conn,
        channel_id: &raw.channel_id,
        contact,
        identity: &raw.identity,
        subject_since: now_ms - mail.subject_window_ms,
    };
    let Some((id, reason)) = stitch::email::find_conversation(mail, &mut lookup)? else { return Ok(None) };
    Ok(store::conversations::get(conn, &id)?.map(|c| (c, reason)))
}

/// Participants and the subject key of a mail's conversation.
fn record_mail(
    conn: &Connection,
    sender: &str,
    mail: &stitch::email::MailThreading,
    conversation: &crate::model::Conversation,
    new: bool,
) -> Result<(), StoreError> {
    let mut identities = mail.participants.clone();
    identities.push(sender.to_owned());
    store::mail::add_participants(conn, conversation.id.as_str(), &identities)?;
    if new {
        if let Some(key) = &mail.subject_key {
            store::mail::set_subject_key(conn, conversation.id.as_str(), key)?;
        }
    }
    Ok(())
}

/// The message object for an inbound item (pure).
fn normalize(
    raw: RawInbound,
    attachments: Vec<Attachment>,
    contact_id: ContactId,
    conversation_id: ConversationId,
    stitch: crate::model::StitchInfo,
    now: &str,
) -> Message {
    let reply_text = raw.reply_text.or_else(|| raw.text.clone());
    Message {
        id: MessageId::new(),
        conversation_id,
        contact_id,
        channel: ChannelRef { id: raw.channel_id, kind: raw.channel_type.to_owned() },
        direction: Direction::Inbound,
        status: Status::Received,
        from: raw.from,
        to: raw.to,
        subject: raw.subject,
        text: raw.text,
        html: raw.html,
        reply_text,
        attachments,
        attachments_skipped: raw.attachments_skipped,
        in_reply_to: None,
        provider: ProviderRef { message_id: raw.provider_message_id, thread_id: raw.provider_thread_id },
        stitch: Some(stitch),
        created_at: now.to_owned(),
        received_at: Some(now.to_owned()),
        sent_at: None,
        delivered_at: None,
        read_at: None,
        failed_at: None,
        error: None,
    }
}
