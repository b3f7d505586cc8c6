//! Accepting a send: validate, resolve the target, and commit message + job + `message.queued`
//! (+ any new contact and conversation) + the idempotency record in one transaction.

use rusqlite::Connection;
use serde_json::json;

use super::request::{self, SendRequest, Target};
use crate::channels::Registry;
use crate::json_input::InputError;
use crate::model::{
    time, Attachment, ChannelRef, Contact, ContactId, Conversation, Direction, EventType, Message, MessageId, Party,
    ProviderRef, Status,
};
use crate::pipeline::Pipeline;
use crate::stitch;
use crate::store::outbound::{IdempotentResponse, Job};
use crate::store::{self, Store, StoreError};

/// Who is asking, for idempotency: keys are scoped to the token's name.
pub struct Submission {
    pub token_name: String,
    pub idempotency_key: Option<String>,
    /// SHA-256 of the request body in canonical JSON form.
    pub request_sha256: String,
}

/// The answer to give: new, or the one stored for a repeated `Idempotency-Key`.
#[derive(Clone, Debug)]
pub struct Accepted {
    pub status: u16,
    pub body: String,
    /// `false` when this is a replayed response and nothing new was queued.
    pub queued: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("invalid request")]
    Input(InputError),
    #[error("conversation not found")]
    ConversationNotFound,
    #[error("unknown channel `{0}`")]
    UnknownChannel(String),
    #[error("channel `{0}` cannot send (it has no outbound configuration)")]
    ChannelCannotSend(String),
    #[error("`{address}` is the channel's own address: the message would come back in")]
    OwnAddress { field: &'static str, address: String },
    #[error("`{address}` is not an address this channel can send to: {reason}")]
    BadAddress { field: &'static str, address: String, reason: String },
    #[error("channel `{channel}` is not a mail channel: only mail has {field}")]
    MailOnly { field: &'static str, channel: String },
    #[error("in_reply_to is an automatic message: an automatic answer to it could start a mail loop (RFC 3834)")]
    AutomaticAnswerToAutomatic,
    #[error(
        "{sent} automatic messages went to this contact ({contact}) in the last hour, the channel's \
         limit (limits.auto_replies_per_contact_per_hour = {limit}): this one is not sent, to end \
         what looks like a mail loop with a responder that does not mark its mail automatic"
    )]
    AutoReplyLimit { contact: String, sent: u32, limit: u32 },
    #[error("in_reply_to names no message on this channel")]
    InReplyToNotFound,
    #[error("Idempotency-Key was used with a different request body")]
    IdempotencyConflict,
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub async fn submit(
    store: &Store,
    registry: &Registry,
    pipeline: &Pipeline,
    body: &[u8],
    max_attachment_bytes: usize,
    submission: Submission,
) -> Result<Accepted, SubmitError> {
    if let Some(key) = submission.idempotency_key.clone() {
        let token = submission.token_name.clone();
        let stored = store.read(move |c| store::outbound::idempotent_response(c, &token, &key)).await?;
        if let Some(stored) = stored {
            return replay(stored, &submission.request_sha256);
        }
    }
    let request = request::parse(body, max_attachment_bytes).map_err(SubmitError::Input)?;

    // Resolve everything that can refuse the request before anything is written.
    let (channel_id, recipient) = match &request.target {
        Target::Conversation(id) => {
            let id = id.to_string();
            let conversation = store.read(move |c| store::conversations::get(c, &id)).await?;
            let conversation = conversation.ok_or(SubmitError::ConversationNotFound)?;
            (conversation.channel.id, conversation.peer_address)
        }
        Target::Direct { channel, to } => (channel.clone(), to.clone()),
    };
    let channel = registry.get(&channel_id).ok_or_else(|| SubmitError::UnknownChannel(channel_id.clone()))?;
    if channel.outbound.is_none() {
        return Err(SubmitError::ChannelCannotSend(channel_id));
    }
    for (field, list) in [("cc", &request.cc), ("bcc", &request.bcc)] {
        if !list.is_empty() && channel.config.kind() != "email" {
            return Err(SubmitError::MailOnly { field, channel: channel_id });
        }
    }
    let named = std::iter::once(("to", &recipient))
        .chain(request.cc.iter().map(|cc| ("cc", cc)))
        .chain(request.bcc.iter().map(|bcc| ("bcc", bcc)));
    for (field, address) in named {
        // Sent to ourselves, it would be received again: a loop waiting to happen.
        if channel.config.is_own_address(address) {
            return Err(SubmitError::OwnAddress { field, address: address.clone() });
        }
        if let Some(reason) = channel.config.address_problem(address) {
            return Err(SubmitError::BadAddress { field, address: address.clone(), reason });
        }
    }
    let mut request = request;
    // Each recipient once: To before Cc before Bcc.
    request.cc.retain(|cc| !cc.eq_ignore_ascii_case(&recipient));
    let (to, cc) = (&recipient, request.cc.clone());
    request.bcc.retain(|bcc| !bcc.eq_ignore_ascii_case(to) && !cc.iter().any(|c| c.eq_ignore_ascii_case(bcc)));
    let channel_ref = ChannelRef { id: channel_id.clone(), kind: channel.config.kind().to_owned() };
    let channel_config = channel.config.clone();
    let auto_reply_limit = channel.config.auto_reply_limit().filter(|_| request.auto_reply);
    if let Some(parent) = request.in_reply_to.clone() {
        let found = store.read(move |c| store::messages::get(c, parent.as_str())).await?;
        let Some(answered) = found.filter(|m| m.channel.id == channel_id) else {
            return Err(SubmitError::InReplyToNotFound);
        };
        // A helpdesk's acknowledgement of a vacation notice, answered by the next notice: the
        // classic mail loop.
        if request.auto_reply && answered.auto_reply {
            return Err(SubmitError::AutomaticAnswerToAutomatic);
        }
    }
    let mut blobs = store.put_blobs(request.attachments.iter().map(|a| (a.bytes.clone(), None)).collect()).await?;
    let names = std::mem::take(&mut blobs.names);
    let new_blobs = store.new_attachments(blobs);
    let attachments: Vec<_> = request
        .attachments
        .iter()
        .zip(names)
        .map(|(a, sha256)| {
            let (filename, content_id) = (a.filename.clone(), a.content_id.clone());
            pipeline.describe_attachment(filename, content_id, a.content_type.clone(), a.bytes.len() as u64, sha256)
        })
        .collect();

    let settling = new_blobs.clone();
    let accepted = store
        .write(move |conn| {
            if let Some(key) = &submission.idempotency_key {
                if let Some(stored) = store::outbound::idempotent_response(conn, &submission.token_name, key)? {
                    return Ok(replay(stored, &submission.request_sha256));
                }
            }
            let now_ms = time::now_ms();
            // Counted in the transaction that stores the send, so concurrent sends cannot both
            // take the last place; checked before anything (a new conversation) is written.
            if let Some(limit) = auto_reply_limit {
                let contact = recipient_contact(conn, &request.target, &channel_ref, &recipient)?;
                if let Some(contact) = contact {
                    let since = now_ms - 3_600_000;
                    let automatic = store::messages::ContactMessages::AutomaticSent;
                    let sent =
                        store::messages::contact_messages_since(conn, &channel_ref.id, &contact, automatic, since)?;
                    if sent >= limit {
                        tracing::warn!(channel = %channel_ref.id, %contact, sent, limit,
                            "automatic message refused: the contact's hourly limit is reached (a mail loop?)");
                        return Ok(Err(SubmitError::AutoReplyLimit { contact, sent, limit }));
                    }
                }
            }
            let subject = request.subject.as_deref();
            let Some(conversation) =
                target_conversation(conn, &request.target, &channel_ref, &recipient, subject, now_ms)?
            else {
                return Ok(Err(SubmitError::ConversationNotFound));
            };
            let in_reply_to = request.in_reply_to.as_ref().map(|id| id.as_str());
            let answered = store::messages::answered(conn, conversation.id.as_str(), in_reply_to)?;
            // A reply comes from the address the customer wrote to (one of the channel's).
            let sender = channel_config.sender(answered.as_ref());
            // A reply answers the subject of the mail it answers, which a customer may have
            // changed mid-thread, not the one the conversation started with; an explicit subject
            // renames the thread for subject matching.
            let subject = match &request.subject {
                Some(subject) => {
                    if conversation.channel.kind == "email" {
                        let key = stitch::email::normalize_subject(subject);
                        if !key.is_empty() {
                            store::conversations::set_subject_key(conn, &conversation.id, &key)?;
                        }
                    }
                    Some(subject.clone())
                }
                None => answered
                    .and_then(|m| m.subject)
                    .filter(|s| !s.trim().is_empty())
                    .or_else(|| conversation.subject.clone()),
            };
            let copies: Vec<String> = request.cc.iter().chain(&request.bcc).cloned().collect();
            let message = outbound_message(request, subject, sender, attachments, &conversation, &recipient, now_ms);
            new_blobs.write(conn, None)?;
            store::messages::insert(conn, &message, now_ms, None)?;
            store::outbound::insert_job(
                conn,
                &Job {
                    message_id: message.id.to_string(),
                    channel_id: channel_ref.id.clone(),
                    recipient: recipient.clone(),
                    attempts: 0,
                    due_at: now_ms,
                },
            )?;
            store::conversations::touch(conn, &conversation.id, now_ms)?;
            // The recipients take part in the conversation (mail threading's sender guard): a
            // colleague in Cc who answers joins it.
            let identities: Vec<String> = std::iter::once(&recipient)
                .chain(&copies)
                .map(|address| stitch::identity_for(&conversation.channel.kind, &conversation.channel.id, address))
                .collect();
            store::mail::add_participants(conn, conversation.id.as_str(), &identities)?;
            store::events::append(conn, EventType::MessageQueued, conversation.id.as_str(), &message)?;
            let body = json!({"id": message.id, "status": "queued", "conversation_id": conversation.id}).to_string();
            if let Some(key) = &submission.idempotency_key {
                let response = IdempotentResponse {
                    request_sha256: submission.request_sha256.clone(),
                    status: 202,
                    body: body.clone(),
                };
                store::outbound::save_idempotent(conn, &submission.token_name, key, &response, now_ms)?;
            }
            Ok(Ok(Accepted { status: 202, body, queued: true }))
        })
        .await;
    // Only a send stored now wrote the attachments: a refusal or an idempotent replay did not.
    let written = accepted.as_ref().map(|a| matches!(a, Ok(Accepted { queued: true, .. })));
    settling.settle(store, written).await;
    accepted?
}

fn replay(stored: IdempotentResponse, request_sha256: &str) -> Result<Accepted, SubmitError> {
    if stored.request_sha256 == request_sha256 {
        Ok(Accepted { status: stored.status, body: stored.body, queued: false })
    } else {
        Err(SubmitError::IdempotencyConflict)
    }
}

/// The contact a send goes to, when the store knows them already.
fn recipient_contact(
    conn: &Connection,
    target: &Target,
    channel: &ChannelRef,
    recipient: &str,
) -> Result<Option<String>, StoreError> {
    Ok(match target {
        Target::Conversation(id) => store::conversations::get(conn, id.as_str())?.map(|c| c.contact_id.to_string()),
        Target::Direct { .. } => {
            let identity = stitch::identity_for(&channel.kind, &channel.id, recipient);
            store::conversations::contact_by_identity(conn, &identity)?.map(|id| id.to_string())
        }
    })
}

/// The conversation a send goes to (see `conversation_with`).
fn target_conversation(
    conn: &Connection,
    target: &Target,
    channel: &ChannelRef,
    recipient: &str,
    subject: Option<&str>,
    now_ms: i64,
) -> Result<Option<Conversation>, StoreError> {
    match target {
        Target::Conversation(id) => store::conversations::get(conn, id.as_str()),
        Target::Direct { .. } => conversation_with(conn, channel, recipient, subject, now_ms).map(Some),
    }
}

/// The conversation our message to `recipient` opens, or the one it opened before: creating
/// contact and conversation for a first message to a new address (with their events). A mail
/// conversation started this way keeps the subject, so that a reply which lost its threading
/// headers finds it by subject like any other.
pub(crate) fn conversation_with(
    conn: &Connection,
    channel: &ChannelRef,
    recipient: &str,
    subject: Option<&str>,
    now_ms: i64,
) -> Result<Conversation, StoreError> {
    if let Some(existing) = store::conversations::by_thread(conn, &channel.id, recipient)? {
        return Ok(existing);
    }
    let now = time::rfc3339(now_ms);
    let identity = stitch::identity_for(&channel.kind, &channel.id, recipient);
    let contact_id = match store::conversations::contact_by_identity(conn, &identity)? {
        Some(id) => id,
        None => {
            let contact = Contact {
                id: ContactId::new(),
                name: None,
                identities: vec![identity],
                created_at: now.clone(),
                updated_at: now.clone(),
            };
            store::conversations::insert_contact(conn, &contact, now_ms)?;
            store::events::append(conn, EventType::ContactCreated, contact.id.as_str(), &contact)?;
            contact.id
        }
    };
    let subject = subject.filter(|s| !s.trim().is_empty());
    let conversation = stitch::new_conversation(
        &channel.id,
        &channel.kind,
        recipient,
        &contact_id,
        recipient,
        subject.map(str::to_owned),
        &now,
    );
    let subject_key = subject.filter(|_| channel.kind == "email").map(stitch::email::normalize_subject);
    store::conversations::insert(conn, &conversation, now_ms, subject_key.as_deref())?;
    store::events::append(conn, EventType::ConversationCreated, conversation.id.as_str(), &conversation)?;
    Ok(conversation)
}

fn outbound_message(
    request: SendRequest,
    subject: Option<String>,
    sender: Party,
    attachments: Vec<Attachment>,
    conversation: &Conversation,
    recipient: &str,
    now_ms: i64,
) -> Message {
    let now = time::rfc3339(now_ms);
    Message {
        id: MessageId::new(),
        conversation_id: conversation.id.clone(),
        contact_id: conversation.contact_id.clone(),
        channel: conversation.channel.clone(),
        direction: Direction::Outbound,
        status: Status::Queued,
        from: sender,
        reply_to: None,
        forwarded_from: None,
        to: vec![Party { address: recipient.to_owned(), name: None }],
        cc: request.cc.into_iter().map(|address| Party { address, name: None }).collect(),
        bcc: request.bcc.into_iter().map(|address| Party { address, name: None }).collect(),
        subject,
        reply_text: request.text.clone(),
        text: request.text,
        html: request.html,
        attachments,
        source: None,
        attachments_skipped: Vec::new(),
        in_reply_to: request.in_reply_to,
        provider: ProviderRef::default(),
        stitch: None,
        auto_reply: request.auto_reply,
        delivery_report: None,
        authentication: None,
        signature: None,
        encryption: None,
        calendar: None,
        created_at: now,
        received_at: None,
        sent_at: None,
        delivered_at: None,
        read_at: None,
        failed_at: None,
        error: None,
        pruned_at: None,
    }
}
