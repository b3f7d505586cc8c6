//! The ingest transaction: dedup → stitch → write message, contact, conversation and events.
//!
//! Bounces join the conversation of the message they report on (and fail it when permanent);
//! auto-replies join an existing conversation or are rejected with a recorded reason; they
//! never open one.

use rusqlite::Connection;
use serde_json::json;

use super::{mail, Outcome, StoredParts};
use crate::channels::RawInbound;
use crate::model::{
    time, Arrival, ChannelRef, ContactId, Conversation, ConversationId, DeliveryReport, Direction, ErrorInfo,
    EventType, Message, MessageId, ProviderRef, Status, StitchInfo,
};
use crate::outbound::status::{self, Transition};
use crate::stitch::{self, Found, Plan};
use crate::store::{self, StoreError};

const HOUR_MS: i64 = 3_600_000;
const ARRIVED: store::messages::ContactMessages = store::messages::ContactMessages::ArrivedInbound;

/// What an item's channel and store decide it by, besides the item itself.
#[derive(Clone)]
pub(super) struct Rules {
    /// The messages one sender may bring in an hour on the channel.
    pub sender_limit: Option<u32>,
    /// `Store::mail_source_keys_before`: when mail stopped being known by its whole source.
    pub source_keys_before: Option<i64>,
    /// The channels as configured when the item's batch was prepared.
    pub channels: std::sync::Arc<crate::channels::Registry>,
}

/// One inbound item's outcome, written.
pub(super) fn commit(
    conn: &Connection,
    raw: RawInbound,
    stored: StoredParts,
    rules: &Rules,
) -> Result<Outcome, StoreError> {
    let accepting = raw.accepted_refusal;
    // Only a sender limit refuses for the moment; with one, the item may have been held back.
    let held_back = rules.sender_limit.and(raw.dedup_key.clone()).map(|key| (raw.channel_id.clone(), key));
    let outcome = decide_and_store(conn, raw, stored, rules)?;
    // A refusal taken in after all names the message it became (a second accept finds it again
    // as a duplicate).
    if let (Some(id), Outcome::Stored { message_id, .. } | Outcome::Duplicate { message_id, .. }) =
        (accepting, &outcome)
    {
        store::mail::mark_accepted(conn, id, message_id.as_str(), time::now_ms())?;
    }
    // So does a held-back item that came in by itself later (its caller's retry; a resync).
    if let (Some((channel_id, key)), Outcome::Stored { message_id, .. }) = (held_back, &outcome) {
        store::mail::settle_held_back(conn, &channel_id, &key, message_id.as_str(), time::now_ms())?;
    }
    Ok(outcome)
}

fn decide_and_store(
    conn: &Connection,
    raw: RawInbound,
    stored: StoredParts,
    rules: &Rules,
) -> Result<Outcome, StoreError> {
    let accepting = raw.accepted_refusal.is_some();
    let sender_limit = rules.sender_limit;
    if let Some(outcome) = already_decided(conn, &raw, rules)? {
        return Ok(outcome);
    }
    if stored.source_withheld {
        return Err(StoreError::Stale(format!(
            "a mail on {} was known when its blobs were stored and is not now: its batch is read again",
            raw.channel_id
        )));
    }
    let now_ms = time::now_ms();
    let now = time::rfc3339(now_ms);
    // The channel's own reason (a mail in our name found forged, spam); a bounce is decided
    // below, by whether it reports on one of our messages.
    if let (Some(reason), false, None) = (&raw.refusal, accepting, &raw.delivery_report) {
        return reject(conn, &raw, &stored, reason, now_ms);
    }
    if raw.sent_by_us {
        return sent_outside(conn, raw, stored, now_ms);
    }

    // A bounce about a message we did not send that an operator takes in is a mail like any
    // from the system that wrote it.
    let report = raw.delivery_report.clone();
    let reported = match &report {
        Some(report) => reported_message(conn, &raw.channel_id, report)?,
        None => None,
    };
    if let (Some(report), None, false) = (&report, &reported, accepting) {
        let what = if report.is_receipt() { "a read receipt" } else { "a bounce" };
        return reject(conn, &raw, &stored, &format!("{what} about a message this gateway did not send"), now_ms);
    }
    if let (Some(report), Some((ours, conversation))) = (report, reported) {
        let plan = Plan {
            contact: Found::Existing(conversation.contact_id.clone()),
            conversation: Found::Existing(conversation),
            stitch: StitchInfo { reason: if report.arrival().is_some() { "receipt" } else { "bounce" }.into() },
        };
        let stored = store_message(conn, raw, stored, plan, Some(MessageId::from_stored(ours.clone())), now_ms)?;
        if report.is_permanent_failure() && !only_copies_failed(conn, &ours, &report)? {
            let message = report.diagnostic.clone().unwrap_or_else(|| format!("delivery failed ({})", report.status));
            let error = ErrorInfo { code: format!("bounce_{}", report.status), message, permanent: true };
            status::apply(conn, &ours, Transition::Failed(error), now_ms)?;
        }
        // A read receipt, or a DSN that says delivered: `message.read` / `message.delivered`
        // (a status never moves back: a late `delivered` after `read` is ignored).
        if let Some(arrival) = report.arrival() {
            let transition = match arrival {
                Arrival::Read => Transition::Read,
                Arrival::Delivered => Transition::Delivered,
            };
            status::apply(conn, &ours, transition, now_ms)?;
        }
        return Ok(stored);
    }

    let contact = store::conversations::contact_by_identity(conn, &raw.identity)?;
    let (conversation, answered) = find_conversation(conn, &raw, contact.as_ref(), now_ms)?;
    if raw.auto_reply && conversation.is_none() && !accepting {
        return reject(conn, &raw, &stored, "an automatic reply outside any conversation", now_ms);
    }
    // A reply-all into another channel's conversation: that channel has its own copy, and one
    // conversation stays one (freescout#5284), rather than one per mailbox copied.
    if let (None, false, Some((conversation, channel))) =
        (&conversation, accepting, answered_on_another_channel(conn, &raw, &rules.channels)?)
    {
        let reason = format!("an answer in conversation {conversation} of channel {channel}, which it was sent to too");
        return reject(conn, &raw, &stored, &reason, now_ms);
    }
    // So is a first mail sent to two of our mailboxes at once, which another read first.
    if let (None, false, Some((message, channel))) =
        (&conversation, accepting, copy_on_another_channel(conn, &raw, &rules.channels)?)
    {
        let reason = format!("a copy of message {message} of channel {channel}, which it was sent to too");
        return reject(conn, &raw, &stored, &reason, now_ms);
    }
    // A flood from one sender: messages that reached the provider within the hour, beyond what
    // one sender may bring in an hour. A backlog (mail the mailbox got earlier, fetched late)
    // neither counts nor is counted; a Date the sender wrote decides nothing, since a flood can
    // forge it.
    if let (Some(limit), Some(contact), false) = (sender_limit, &contact, accepting) {
        let since = now_ms - HOUR_MS;
        if raw.received_at.unwrap_or(now_ms) >= since
            && store::messages::contact_messages_since(conn, &raw.channel_id, contact.as_str(), ARRIVED, since)?
                >= limit
        {
            tracing::warn!(channel = %raw.channel_id, from = %raw.from.address, limit, "sender over limits.inbound_per_sender_per_hour; refused");
            let reason = format!(
                "more than {limit} messages from this sender within an hour (limits.inbound_per_sender_per_hour)"
            );
            return refuse(conn, &raw, &stored, &reason, now_ms, false);
        }
    }
    let plan = stitch::plan(&raw, contact, conversation, &now);
    store_message(conn, raw, stored, plan, answered, now_ms)
}

/// A mail written in the mailbox itself (`RawInbound::sent_by_us`: an agent answering from the
/// mail client): our message, sent outside the gateway — an outbound message with status `sent`,
/// announced with `message.sent`. It joins the conversation its threading headers or reply
/// token name (no sender guard: it is ours), else the conversation with its first recipient
/// outside, opened as a send to a new address opens one.
fn sent_outside(conn: &Connection, raw: RawInbound, stored: StoredParts, now_ms: i64) -> Result<Outcome, StoreError> {
    let mail = raw.mail.clone().unwrap_or_default();
    // No contact of ours to match a subject for: headers and token only.
    let (conversation, answered) = find_conversation(conn, &raw, None, now_ms)?;
    let (conversation, reason) = match conversation {
        Some(found) => found,
        None => {
            // `participants` are the recipients that are not ours.
            let outside = |p: &&crate::model::Party| {
                mail.participants.contains(&stitch::identity_for(raw.channel_type, &raw.channel_id, &p.address))
            };
            let Some(recipient) = raw.to.iter().chain(&raw.cc).find(outside) else {
                return reject(conn, &raw, &stored, "a mail from our own address to no one outside", now_ms);
            };
            let channel = ChannelRef { id: raw.channel_id.clone(), kind: raw.channel_type.to_owned() };
            let subject = raw.subject.as_deref();
            (crate::outbound::submit::conversation_with(conn, &channel, &recipient.address, subject, now_ms)?, "new")
        }
    };
    store::conversations::touch(conn, &conversation.id, now_ms)?;
    record_participants(conn, &raw.identity, &mail, &conversation, false)?;
    let now = time::rfc3339(now_ms);
    let header = known_by(&raw).map(str::to_owned);
    let sent_at = raw.sent_at.unwrap_or(now_ms);
    let (channel_id, conversation_id) = (raw.channel_id.clone(), conversation.id.clone());
    let stitch = StitchInfo { reason: reason.to_owned() };
    let mut message = normalize(raw, stored, conversation.contact_id.clone(), conversation_id, stitch, &now);
    message.in_reply_to = answered;
    message.direction = Direction::Outbound;
    message.status = Status::Sent;
    message.received_at = None;
    message.sent_at = Some(time::rfc3339(sent_at));
    let body = store::messages::insert(conn, &message, now_ms, header.as_deref())?;
    record_unseen_references(conn, &channel_id, &mail, conversation.id.as_str(), message.id.as_str(), now_ms)?;
    if let Some(header) = header {
        store::mail::record_header(conn, &channel_id, &header, conversation.id.as_str(), message.id.as_str(), now_ms)?;
    }
    // An invitation an agent sent from their mail client: the answers to it come back by its UID.
    if let Some(uid) = &mail.calendar_uid {
        store::mail::record_calendar_uid(conn, &channel_id, uid, conversation.id.as_str(), now_ms)?;
    }
    store::events::append_json(conn, EventType::MessageSent, conversation.id.as_str(), body)?;
    Ok(Outcome::Stored { message_id: message.id, conversation_id: message.conversation_id })
}

/// Writes what `plan` says plus the message and its events.
fn store_message(
    conn: &Connection,
    raw: RawInbound,
    stored: StoredParts,
    plan: Plan,
    in_reply_to: Option<MessageId>,
    now_ms: i64,
) -> Result<Outcome, StoreError> {
    let now = time::rfc3339(now_ms);
    if let Found::New(contact) = &plan.contact {
        store::conversations::insert_contact(conn, contact, now_ms)?;
        store::events::append(conn, EventType::ContactCreated, contact.id.as_str(), contact)?;
    }
    let conversation = plan.conversation();
    match &plan.conversation {
        Found::New(c) => {
            // A mail conversation is found again by its subject (from the same contact).
            store::conversations::insert(conn, c, now_ms, subject_key_of(&raw))?;
            store::events::append(conn, EventType::ConversationCreated, c.id.as_str(), c)?;
        }
        // A customer writing into a closed conversation reopens it (not an automatic message).
        Found::Existing(c) if c.status == "closed" && !raw.auto_reply => {
            if let Some(reopened) = store::conversations::set_status(conn, c.id.as_str(), "open", now_ms)? {
                store::events::append(conn, EventType::ConversationUpdated, c.id.as_str(), &reopened)?;
            }
            store::conversations::touch(conn, &c.id, now_ms)?;
        }
        Found::Existing(c) => store::conversations::touch(conn, &c.id, now_ms)?,
    }
    // A person's mail that joined by its headers or token under a new subject renames the
    // thread: later mail on the new subject finds it (automatic mail never renames; one that
    // joined by subject has the key already).
    let renames = !raw.auto_reply && plan.stitch.reason != "subject";
    if let (Found::Existing(c), Some(key), true) = (&plan.conversation, subject_key_of(&raw), renames) {
        store::conversations::set_subject_key(conn, &c.id, key)?;
    }
    if let Some(mail) = &raw.mail {
        record_participants(conn, &raw.identity, mail, conversation, raw.delivery_report.is_none())?;
    }
    let dedup_key = raw.dedup_key.clone();
    // A report's references are to our own messages.
    let answers = raw.mail.clone().filter(|_| raw.delivery_report.is_none());
    let mail_id = raw.mail.as_ref().and_then(|m| m.message_id.clone());
    let calendar_uid = raw.mail.as_ref().and_then(|m| m.calendar_uid.clone());
    let channel_id = raw.channel_id.clone();
    let contact_id = plan.contact_id().clone();
    let mut message = normalize(raw, stored, contact_id, conversation.id.clone(), plan.stitch.clone(), &now);
    message.in_reply_to = in_reply_to;
    let body = store::messages::insert(conn, &message, now_ms, dedup_key.as_deref())?;
    if let Some(mail) = &answers {
        record_unseen_references(conn, &channel_id, mail, conversation.id.as_str(), message.id.as_str(), now_ms)?;
    }
    if let Some(header) = mail_id {
        store::mail::record_header(conn, &channel_id, &header, conversation.id.as_str(), message.id.as_str(), now_ms)?;
    }
    if let Some(uid) = calendar_uid {
        store::mail::record_calendar_uid(conn, &channel_id, &uid, conversation.id.as_str(), now_ms)?;
    }
    // The event's data is the message as stored: serialized once for both.
    store::events::append_json(conn, EventType::MessageReceived, message.conversation_id.as_str(), body)?;
    Ok(Outcome::Stored { message_id: message.id, conversation_id: message.conversation_id })
}

/// What the store decided about `raw` before, if anything: the message it duplicates (its dedup
/// key seen, under the current or an earlier version's key), the refusal it had, or the
/// outbound message of ours it is a copy of. Read-only: `prepare_batch` asks it ahead of the
/// transaction (to store no blob for an item that needs none), and the transaction asks again.
pub(super) fn already_decided(
    conn: &Connection,
    raw: &RawInbound,
    rules: &Rules,
) -> Result<Option<Outcome>, StoreError> {
    let accepting = raw.accepted_refusal.is_some();
    if let Some(key) = &raw.dedup_key {
        for key in std::iter::once(key.as_str()).chain(superseded_key(raw, rules.source_keys_before)) {
            if let Some((message_id, conversation_id)) =
                store::messages::inbound_by_dedup_key(conn, &raw.channel_id, key)?
            {
                return Ok(Some(Outcome::Duplicate { message_id, conversation_id }));
            }
            if let Some(reason) = store::mail::rejected(conn, &raw.channel_id, key)?.filter(|_| !accepting) {
                return Ok(Some(Outcome::Rejected { reason }));
            }
        }
    }
    // One of our own outbound messages come back into a mailbox (a copy of a mail this gateway
    // sent: a Bcc to ourselves, the watched Sent folder; a mail written in the mailbox, fetched
    // again): it is that message already. Taking it as a customer's would open a conversation
    // with ourselves, and invite a mail loop. That holds for a mail another of our channels
    // sent too, with this channel's address in Cc (freescout#5284, #5368): its Message-ID names
    // the message.
    let Some(header) = known_by(raw) else { return Ok(None) };
    if let Some(ours) = our_outbound_message(conn, header)? {
        return Ok(Some(Outcome::Duplicate { message_id: ours.id, conversation_id: ours.conversation_id }));
    }
    if raw.sent_by_us {
        if let Some((message_id, conversation_id)) = store::mail::outbound_by_header(conn, &raw.channel_id, header)? {
            let (message_id, conversation_id) =
                (MessageId::from_stored(message_id), ConversationId::from_stored(conversation_id));
            return Ok(Some(Outcome::Duplicate { message_id, conversation_id }));
        }
    }
    Ok(None)
}

/// The outbound message, on any of our channels, that a Message-ID of our form names.
fn our_outbound_message(conn: &Connection, header_id: &str) -> Result<Option<Message>, StoreError> {
    let Some((message_id, conversation_id)) = stitch::email::own_message(header_id) else { return Ok(None) };
    let ours = store::messages::get(conn, message_id.as_str())?;
    Ok(ours.filter(|m| m.direction == Direction::Outbound && m.conversation_id == conversation_id))
}

/// How many of a mail's References, the newest, `record_unseen_references` considers.
const UNSEEN_REFERENCES: usize = 10;

/// Records for `conversation_id` the Message-IDs `mail` answers (In-Reply-To, the newest
/// References) that no mail on the channel has: the start of a thread written before the
/// helpdesk was copied in (zammad#5716: a customer and a colleague write to each other, and
/// from a reply on, Cc us). Another reply into that thread then finds the conversation by them,
/// as if we had seen its start — the sender guard still decides who may join —, and our replies
/// carry them in References. Recorded before the mail's own Message-ID, oldest first, so
/// References keep the thread's order; under `ref:<message id>`, so they are never taken for
/// the Message-ID of the message that named them. Our own Message-IDs are known by their form.
fn record_unseen_references(
    conn: &Connection,
    channel_id: &str,
    mail: &stitch::email::MailThreading,
    conversation_id: &str,
    message_id: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    let newest = &mail.references[mail.references.len().saturating_sub(UNSEEN_REFERENCES)..];
    let mut recorded: Vec<&String> = Vec::new();
    for id in newest.iter().chain(&mail.in_reply_to) {
        if recorded.contains(&id)
            || mail.message_id.as_ref() == Some(id)
            || stitch::email::own_conversation(id).is_some()
        {
            continue;
        }
        if !store::mail::header_known(conn, channel_id, id)? {
            store::mail::record_header(conn, channel_id, id, conversation_id, &format!("ref:{message_id}"), now_ms)?;
            recorded.push(id);
        }
    }
    Ok(())
}

/// The key an earlier version stored `raw` under, when it may have: the store held mail before
/// the key changed (`changed_at`), and the item reached the provider before then (a day's grace
/// for the mail server's clock). Mail that came later was only ever stored under its current
/// key, so new mail costs no second lookup.
fn superseded_key(raw: &RawInbound, changed_at: Option<i64>) -> Option<&str> {
    let (key, changed_at) = (raw.superseded_dedup_key.as_deref()?, changed_at?);
    raw.received_at.is_none_or(|received| received < changed_at + 24 * HOUR_MS).then_some(key)
}

/// What a mail is known by among our messages: its Message-ID, else (a mail of ours written
/// without one) its dedup key, so that fetching it again finds it.
fn known_by(raw: &RawInbound) -> Option<&str> {
    let mail = raw.mail.as_ref()?;
    mail.message_id.as_deref().or(raw.dedup_key.as_deref().filter(|_| raw.sent_by_us))
}

/// A mail's non-empty normalised subject.
fn subject_key_of(raw: &RawInbound) -> Option<&str> {
    raw.mail.as_ref()?.subject_key.as_deref().filter(|k| !k.is_empty())
}

/// Records the refusal (so a re-fetch is recognised) and says why. An item an operator is
/// taking in after a refusal is refused again only by a rule no one can override (a mail of
/// ours to no one outside has no one to be a conversation with), and not recorded twice.
fn reject(
    conn: &Connection,
    raw: &RawInbound,
    stored: &StoredParts,
    reason: &str,
    now_ms: i64,
) -> Result<Outcome, StoreError> {
    refuse(conn, raw, stored, reason, now_ms, true)
}

/// `reject`, or, not `remembered`, a refusal recorded and listed like any but that does not
/// decide the item's dedup key: what a limit holds back (a limit judges the moment, not the
/// item, so the same item offered again later — an api caller's retry, a mailbox read again — is
/// decided again, and if it comes in, the refusal names the message it became).
fn refuse(
    conn: &Connection,
    raw: &RawInbound,
    stored: &StoredParts,
    reason: &str,
    now_ms: i64,
    remembered: bool,
) -> Result<Outcome, StoreError> {
    if raw.accepted_refusal.is_some() {
        return Ok(Outcome::Rejected { reason: reason.to_owned() });
    }
    let source = stored.source.as_ref();
    // `received_at`: when the provider got it (a mail's INTERNALDATE), which a later accept
    // gives the message; absent, the refusal's own time.
    let summary = json!({"from": raw.from, "subject": raw.subject, "provider_message_id": raw.provider_message_id,
        "source": source, "received_at": raw.received_at});
    let summary = summary.to_string();
    let refusal = store::mail::Refusal {
        channel_id: &raw.channel_id,
        dedup_key: raw.dedup_key.as_deref(),
        remembered,
        reason,
        summary: &summary,
    };
    store::mail::reject(conn, &refusal, source, now_ms)?;
    tracing::info!(channel = %raw.channel_id, from = %raw.from.address, reason, "inbound item rejected");
    Ok(Outcome::Rejected { reason: reason.to_owned() })
}

/// Whether every recipient the report names as failed was a Cc or Bcc of our message (and not
/// its recipient): the mail reached its recipient, so the message stands; the bounce itself is
/// in the conversation for the helpdesk to see.
fn only_copies_failed(conn: &Connection, ours: &str, report: &DeliveryReport) -> Result<bool, StoreError> {
    let failed: Vec<&String> = if report.failed_recipients.is_empty() {
        report.recipient.iter().collect()
    } else {
        report.failed_recipients.iter().collect()
    };
    let Some(message) = store::messages::get(conn, ours)? else { return Ok(false) };
    let named = |parties: &[crate::model::Party], address: &str| {
        parties.iter().any(|p| p.address.trim().eq_ignore_ascii_case(address.trim()))
    };
    let copied = |f: &str| named(&message.cc, f) || named(&message.bcc, f);
    Ok(!failed.is_empty() && failed.iter().all(|f| copied(f) && !named(&message.to, f)))
}

/// The outbound message a bounce reports on, and its conversation: named by the original
/// envelope id (our message id, sent as ENVID), else by a Message-ID quoted from the original.
fn reported_message(
    conn: &Connection,
    channel_id: &str,
    report: &DeliveryReport,
) -> Result<Option<(String, Conversation)>, StoreError> {
    let with_conversation = |found: Option<(String, String)>| -> Result<_, StoreError> {
        let Some((message, conversation)) = found else { return Ok(None) };
        Ok(store::conversations::get(conn, &conversation)?.map(|c| (message, c)))
    };
    if let Some(envid) = &report.original_envelope_id {
        if let Some(found) = with_conversation(store::mail::outbound_by_id(conn, channel_id, envid)?)? {
            return Ok(Some(found));
        }
    }
    for header in &report.original_message_ids {
        if let Some(found) = with_conversation(store::mail::outbound_by_header(conn, channel_id, header)?)? {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

/// The conversation an inbound item joins, with the reason: by mail threading for mail, else by
/// the channel's thread key.
/// A conversation an item joins, and why (`stitch.reason`).
type FoundConversation = (Conversation, &'static str);

/// The conversation `raw` joins and why, and the message of it that `raw` answers (its
/// `in_reply_to`): the one whose Message-ID the threading headers joined by, when the
/// conversation holds it (not a `ref:` row, the unseen start of a thread).
fn find_conversation(
    conn: &Connection,
    raw: &RawInbound,
    contact: Option<&ContactId>,
    now_ms: i64,
) -> Result<(Option<FoundConversation>, Option<MessageId>), StoreError> {
    let Some(mail) = &raw.mail else {
        let found = store::conversations::by_thread(conn, &raw.channel_id, &raw.thread_key)?;
        return Ok((found.map(|c| (c, "thread")), None));
    };
    let mut lookup = mail::StoreLookup {
        conn,
        channel_id: &raw.channel_id,
        contact,
        identity: &raw.identity,
        subject_since: now_ms - mail.subject_window_ms,
        // Our own mail needs no sender guard.
        any_sender: raw.sent_by_us,
    };
    let Some(joined) = stitch::email::find_conversation(mail, &mut lookup)? else { return Ok((None, None)) };
    let answered = match &joined.header {
        Some(header) => store::mail::message_by_header(conn, &raw.channel_id, &joined.conversation, header)?,
        None => None,
    };
    let conversation = store::conversations::get(conn, &joined.conversation)?;
    Ok((conversation.map(|c| (c, joined.reason)), answered.map(MessageId::from_stored)))
}

/// The message another of our channels, still configured, made of this very mail: one sent to
/// its address too (To support@…, Cc sales@…) that it read first, with the same Message-ID and
/// sender (a stranger may reuse a Message-ID): `(message, channel)`. Asked only of a mail that
/// found no conversation on its own channel.
fn copy_on_another_channel(
    conn: &Connection,
    raw: &RawInbound,
    channels: &crate::channels::Registry,
) -> Result<Option<(String, String)>, StoreError> {
    let Some(header) = raw.mail.as_ref().and_then(|mail| mail.message_id.as_deref()) else { return Ok(None) };
    for channel in channels.iter() {
        let crate::channels::ChannelConfig::Email(other) = &channel.config else { continue };
        if other.id == raw.channel_id || !raw.to.iter().chain(&raw.cc).any(|p| other.owns(&p.address)) {
            continue;
        }
        for conversation in store::mail::conversations_by_header(conn, &other.id, header)? {
            let Some(id) = store::mail::message_by_header(conn, &other.id, &conversation, header)? else { continue };
            let Some(message) = store::messages::get(conn, &id)? else { continue };
            if message.direction == Direction::Inbound && message.from.address.eq_ignore_ascii_case(&raw.from.address) {
                return Ok(Some((id, other.id.clone())));
            }
        }
    }
    Ok(None)
}

/// The conversation of another of our channels that `raw` answers (it replies to one of our
/// messages there), when `raw` was also sent to the address that message came from, so that
/// channel, still configured and reading its mailbox, gets a copy of its own: `(conversation,
/// channel)`. (A channel that only sends never reads its copy: refused here, the answer would
/// be lost.) Asked only of a mail that found no conversation on its own channel.
fn answered_on_another_channel(
    conn: &Connection,
    raw: &RawInbound,
    channels: &crate::channels::Registry,
) -> Result<Option<(String, String)>, StoreError> {
    let Some(mail) = &raw.mail else { return Ok(None) };
    let sent_there = |address: &str| raw.to.iter().chain(&raw.cc).any(|p| p.address.eq_ignore_ascii_case(address));
    let reads_mail = |channel: &crate::channels::RegisteredChannel| match &channel.config {
        crate::channels::ChannelConfig::Email(email) => email.imap.is_some(),
        _ => false,
    };
    for (_, id) in stitch::email::threading_ids(mail) {
        let Some(ours) = our_outbound_message(conn, id)? else { continue };
        let elsewhere = ours.channel.id != raw.channel_id && channels.get(&ours.channel.id).is_some_and(reads_mail);
        if elsewhere && sent_there(&ours.from.address) {
            return Ok(Some((ours.conversation_id.to_string(), ours.channel.id)));
        }
    }
    Ok(None)
}

/// The participants of a mail's conversation. A bounce's sender (the mailer daemon) does not
/// become one.
fn record_participants(
    conn: &Connection,
    sender: &str,
    mail: &stitch::email::MailThreading,
    conversation: &Conversation,
    sender_participates: bool,
) -> Result<(), StoreError> {
    let mut identities = mail.participants.clone();
    if sender_participates {
        identities.push(sender.to_owned());
    }
    store::mail::add_participants(conn, conversation.id.as_str(), &identities)
}

/// The message object for an inbound item (pure).
fn normalize(
    raw: RawInbound,
    stored: StoredParts,
    contact_id: ContactId,
    conversation_id: ConversationId,
    stitch: StitchInfo,
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
        reply_to: raw.reply_to,
        forwarded_from: raw.forwarded_from,
        to: raw.to,
        cc: raw.cc,
        bcc: Vec::new(),
        subject: raw.subject,
        text: raw.text,
        html: raw.html,
        reply_text,
        attachments: stored.attachments,
        attachments_skipped: raw.attachments_skipped,
        source: stored.source,
        in_reply_to: None,
        provider: ProviderRef { message_id: raw.provider_message_id, thread_id: raw.provider_thread_id },
        stitch: Some(stitch),
        auto_reply: raw.auto_reply,
        delivery_report: raw.delivery_report,
        authentication: raw.authentication,
        signature: raw.signature,
        encryption: raw.encryption,
        calendar: raw.calendar,
        created_at: now.to_owned(),
        received_at: Some(raw.received_at.map_or_else(|| now.to_owned(), time::rfc3339)),
        sent_at: raw.sent_at.map(time::rfc3339),
        delivered_at: None,
        read_at: None,
        failed_at: None,
        error: None,
        pruned_at: None,
    }
}
