//! Channel adapters: the contract they implement and the tagged config enum.
//!
//! Invariant: adapters only translate. An adapter turns its wire format into `RawInbound` and an
//! `OutboundMessage` into its wire format; it never touches the store, threads or webhooks. One
//! folder per channel with the same file names (`config.rs`, `inbound.rs`, `outbound.rs`,
//! `tests.rs`): adding a channel means copying a folder, adding a variant to `ChannelConfig` and a
//! line to `build_outbound`.

pub mod api;
pub mod email;
mod registry;

pub use registry::{RegisteredChannel, Registry};

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use serde::Deserialize;

use crate::model::{Message, Party, SkippedAttachment};

/// What an adapter hands to the pipeline: one provider message, translated but not yet stored.
#[derive(Clone, Debug)]
pub struct RawInbound {
    pub channel_id: String,
    pub channel_type: &'static str,
    /// The provider's id for the message, shown as `provider.message_id`.
    pub provider_message_id: Option<String>,
    /// What identifies this item on this channel for deduplication (the api channel's
    /// `external_id`; a mail's hash of what its author wrote, `email/dedup.rs`). `None`: never a
    /// duplicate.
    pub dedup_key: Option<String>,
    /// The key an earlier version gave this item, when it differs (a mail's whole-source hash,
    /// before store migration 8): an item stored then is found by it too.
    pub superseded_dedup_key: Option<String>,
    pub provider_thread_id: Option<String>,
    /// The channel's key for the conversation (chat id, `thread` field, ...).
    pub thread_key: String,
    pub from: Party,
    /// Someone other than `from` the message names for answers (a mail's Reply-To: a web
    /// contact form sends From `noreply@…` with the customer in Reply-To). When set, the message
    /// is theirs: `identity`, the contact and where replies go.
    pub reply_to: Option<Party>,
    /// A mail one of the channel's `forwarders` forwarded: the original sender, whose the
    /// message is (as with `reply_to`, which it takes precedence over); `from` forwarded it.
    pub forwarded_from: Option<Party>,
    /// The sender's identity, scheme-prefixed: `email:…`, `tel:+…`, `ext:<channel>:<address>`.
    pub identity: String,
    pub to: Vec<Party>,
    /// A mail's Cc recipients.
    pub cc: Vec<Party>,
    /// When the sender says it was sent (a mail's Date), in ms: a backlog import keeps when each
    /// mail was written, not just when it was imported.
    pub sent_at: Option<i64>,
    /// When the message reached the provider, as the provider says (a mail's IMAP INTERNALDATE:
    /// when the mailbox got it), in ms; `None`: now. Unlike `sent_at` the sender cannot write it,
    /// and a backlog fetched late keeps it.
    pub received_at: Option<i64>,
    pub subject: Option<String>,
    pub text: Option<String>,
    pub html: Option<String>,
    /// The new part of the text; `None` means the whole text is new.
    pub reply_text: Option<String>,
    pub attachments: Vec<RawAttachment>,
    pub attachments_skipped: Vec<SkippedAttachment>,
    /// Mail threading facts; `None` for channels that thread by `thread_key` alone.
    pub mail: Option<crate::stitch::email::MailThreading>,
    /// An automatic message (vacation notice, list mail, bounce): joins an existing conversation
    /// or is rejected; it never opens one.
    pub auto_reply: bool,
    /// A bounce's report about one of our messages.
    pub delivery_report: Option<crate::model::DeliveryReport>,
    /// What the mail's trusted receiving server found of its sender (`authserv_id`).
    pub authentication: Option<crate::model::MailAuthentication>,
    /// What a signed mail's signature says.
    pub signature: Option<crate::model::MailSignature>,
    /// That a mail came encrypted to a key the gateway does not hold.
    pub encryption: Option<crate::model::MailEncryption>,
    /// A mail's calendar invitation, or answer to one (`email/calendar.rs`).
    pub calendar: Option<crate::model::MailCalendar>,
    /// A mail whose S/MIME signature is valid: the sender's certificate, then the others its
    /// signature carried (DER), which the channel keeps to encrypt mail to the sender
    /// (`smime_encrypt`). Not part of the message.
    pub sender_certificates: Vec<Vec<u8>>,
    /// A mail with an Autocrypt header for its sender: the OpenPGP key it carries (packets, not
    /// yet checked), which the channel keeps to encrypt mail to the sender (`openpgp_encrypt`,
    /// `autocrypt::remember`). Not part of the message.
    pub sender_autocrypt_key: Option<Vec<u8>>,
    /// Why the channel itself would refuse the item (a mail in our own name its receiving server
    /// found forged; one its spam filter marked): the pipeline refuses it, listed with this
    /// reason, unless an operator takes it in (a forgery taken in is then ours, as its From
    /// says). A bounce about one of our messages is not refused for it.
    pub refusal: Option<String>,
    /// Written by us, not to us: a mail whose From is one of the channel's own addresses (an
    /// agent answering from the mail client; the watched Sent folder). It is our outbound
    /// message, sent outside the gateway.
    pub sent_by_us: bool,
    /// The item exactly as received (a mail's RFC 5322 source), stored beside what was parsed
    /// from it and shown as the message's `source`.
    pub source: Option<RawAttachment>,
    /// The item was refused before and an operator took it in after all: this is the refusal
    /// (its `rejected_inbound` id). No refusal rule applies to it, and the refusal records the
    /// message it became. `None` for everything a provider delivers.
    pub accepted_refusal: Option<u64>,
}

impl RawInbound {
    /// Whose the message is: the original sender of a forward, else the Reply-To party when
    /// the mail names one, else the sender.
    pub fn owner(&self) -> &Party {
        self.forwarded_from.as_ref().or(self.reply_to.as_ref()).unwrap_or(&self.from)
    }
}

#[derive(Clone, Debug)]
pub struct RawAttachment {
    pub filename: Option<String>,
    /// The MIME Content-ID of an inline part, without angle brackets (HTML refers to it as
    /// `cid:…`).
    pub content_id: Option<String>,
    pub content_type: String,
    pub bytes: Bytes,
    /// The bytes' SHA-256 in hex, when the adapter computed it already (a mail's source: its
    /// dedup key), so the blob store need not hash them again.
    pub sha256: Option<String>,
}

/// A message to send, as the outbound engine hands it to an adapter.
#[derive(Clone, Debug)]
pub struct OutboundMessage {
    pub message: Message,
    /// The recipient address on this channel.
    pub recipient: String,
    /// Provider thread references of the conversation, oldest first (mail: Message-IDs for
    /// References; the one answered, for In-Reply-To, is `in_reply_to_ref` or the last).
    pub thread_refs: Vec<String>,
    pub in_reply_to_ref: Option<String>,
    /// Where the attachments' bytes are stored, in `message.attachments` order.
    pub files: Vec<crate::store::BlobFile>,
}

/// A successful hand-over to the provider.
#[derive(Clone, Debug, Default)]
pub struct Sent {
    pub provider_message_id: Option<String>,
    /// A reference later messages of the thread will quote (mail: our Message-ID).
    pub thread_ref: Option<String>,
    /// That it went out encrypted (mail: `openpgp_encrypt`, `smime_encrypt`), for the message.
    pub encryption: Option<crate::model::MailEncryption>,
}

/// Why a send failed, classified by what the engine does next.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SendError {
    /// Try again later (after `retry_after` when the provider said so).
    #[error("{reason}")]
    Temporary { code: String, reason: String, retry_after: Option<Duration> },
    /// Retrying cannot help; the message fails.
    #[error("{reason}")]
    Permanent { code: String, reason: String },
    /// The channel cannot send at all right now (credentials refused, token refresh or TLS
    /// setup failed): retried like `Temporary`, and the channel's sending side is reported
    /// failing (log, `/readyz`, one `channel.error`) until a send succeeds.
    #[error("{reason}")]
    Unavailable { code: String, reason: String },
}

/// The sending half of an adapter.
pub trait Outbound: Send + Sync + 'static {
    fn send<'a>(&'a self, message: &'a OutboundMessage) -> BoxFuture<'a, Result<Sent, SendError>>;

    /// Ends politely what the adapter keeps open between sends (idle SMTP sessions get QUIT).
    /// Called at shutdown once the sends in flight are recorded, and for the old adapter when a
    /// reload replaces or removes its channel. Quick (a few seconds at most); a send that
    /// finishes afterwards still works and keeps nothing open.
    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }

    /// Gauges that describe the adapter as it is configured now (name, value), such as when
    /// its signing certificate expires. `/metrics` shows them labelled with the channel while
    /// the adapter is live, so that a reload which removes the channel, or what the gauge
    /// describes, removes them too (a gauge set once in the process-wide recorder would stay,
    /// and alert, until a restart).
    fn gauges(&self) -> Vec<(&'static str, f64)> {
        Vec::new()
    }
}

/// Channel-wide and per-recipient send rates (`[channels.limits]`). Absent means unlimited.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelLimits {
    /// Sends per second across the channel.
    pub per_second: Option<f64>,
    /// Sends per second to one recipient.
    pub per_recipient_per_second: Option<f64>,
    /// Sends allowed back to back before the rate applies (default 1: evenly spaced).
    pub burst: Option<u32>,
    /// Automatic messages (`auto_reply: true`) one contact may be sent in an hour; 0 for no
    /// limit. Default: [`MAIL_AUTO_REPLIES_PER_HOUR`] on mail channels, none on others (a chat
    /// bot's answers are automatic too, and chat has no vacation notices to loop with). Unlike
    /// the rates above this refuses the send instead of delaying it: the sends it stops are a
    /// loop's.
    pub auto_replies_per_contact_per_hour: Option<u32>,
    /// Messages one sender may bring in an hour; 0 or absent for no limit (the default: an
    /// alerting system's mails during an outage are wanted). Over it, the sender's further
    /// messages are refused with that reason — listed under `/rejected`, where an operator can
    /// take them in, and decided again when offered again later — so that a flood (a broken
    /// script, a loop with a system that does not mark its mail automatic) cannot bury the
    /// helpdesk. Only messages that reached the provider within the hour (`received_at`, a mail's
    /// INTERNALDATE, not the Date its sender wrote) count and are counted: a backlog fetched
    /// late comes in whole.
    pub inbound_per_sender_per_hour: Option<u32>,
}

/// Enough for an acknowledgement of each of a few mails a customer writes in an hour; a loop
/// between our acknowledgements and a responder that does not mark its mail as automatic (RFC
/// 3834) — each round trip in seconds, often in a new thread — ends after this many.
pub const MAIL_AUTO_REPLIES_PER_HOUR: u32 = 3;

impl ChannelLimits {
    /// How many automatic messages one contact may be sent in an hour, `default` when the
    /// config does not say; `None`: no limit.
    fn auto_replies_per_hour(&self, default: Option<u32>) -> Option<u32> {
        self.auto_replies_per_contact_per_hour.or(default).filter(|n| *n > 0)
    }

    fn validate(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        for (key, value) in
            [("limits.per_second", self.per_second), ("limits.per_recipient_per_second", self.per_recipient_per_second)]
        {
            if let Some(v) = value {
                if !(v.is_finite() && v > 0.0 && v <= 1_000_000.0) {
                    problems.push((key.to_owned(), "must be a number greater than 0".to_owned()));
                }
            }
        }
        if self.burst == Some(0) {
            problems.push(("limits.burst".to_owned(), "must be at least 1".to_owned()));
        }
        problems
    }
}

/// `[[channels]]`, tagged by `type`.
// A handful of these exist per process, built once per (re)load: the size difference is moot.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum ChannelConfig {
    Api(api::config::ApiChannelConfig),
    Email(email::config::EmailChannelConfig),
}

type ParseResult = Result<ChannelConfig, serde_path_to_error::Error<figment::Error>>;

impl ChannelConfig {
    /// Every `type` the config accepts.
    pub const TYPES: &'static [&'static str] = &["api", "email"];

    /// Deserialises a channel table (without its `type` key) of the given type; `None` for an
    /// unknown type.
    pub fn parse(kind: &str, value: &figment::value::Value) -> Option<ParseResult> {
        match kind {
            "api" => Some(serde_path_to_error::deserialize(value).map(ChannelConfig::Api)),
            "email" => Some(serde_path_to_error::deserialize(value).map(ChannelConfig::Email)),
            _ => None,
        }
    }

    pub fn id(&self) -> &str {
        match self {
            ChannelConfig::Api(c) => &c.id,
            ChannelConfig::Email(c) => &c.id,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            ChannelConfig::Api(_) => "api",
            ChannelConfig::Email(_) => "email",
        }
    }

    /// Whether `recipient` is the channel's own address (a mail to it would come back in).
    pub fn is_own_address(&self, recipient: &str) -> bool {
        match self {
            ChannelConfig::Api(_) => false,
            ChannelConfig::Email(c) => c.owns(recipient),
        }
    }

    /// Who an outbound message is from: a mail channel's display name and the one of its
    /// addresses the `answered` message was written to (or sent from, when it is ours), else its
    /// main address; otherwise the channel's id.
    pub fn sender(&self, answered: Option<&Message>) -> Party {
        match self {
            ChannelConfig::Api(c) => Party { address: c.id.clone(), name: None },
            ChannelConfig::Email(c) => {
                let ours = |p: &Party| c.own_address(&p.address);
                let written_to = answered.and_then(|m| match m.direction {
                    crate::model::Direction::Inbound => m.to.iter().chain(&m.cc).find_map(ours),
                    crate::model::Direction::Outbound => ours(&m.from),
                });
                Party { address: written_to.unwrap_or(&c.address).to_owned(), name: c.name.clone() }
            }
        }
    }

    /// Why the channel cannot send to `address`, if it cannot (a mail address that does not
    /// parse): refused when the send is requested rather than failed later.
    pub fn address_problem(&self, address: &str) -> Option<String> {
        match self {
            ChannelConfig::Api(_) => None,
            ChannelConfig::Email(_) => {
                let problem = address.parse::<lettre::Address>().err()?;
                Some(if address.contains(['<', ' ']) {
                    "give the address alone (name@example.com), without a display name".to_owned()
                } else {
                    problem.to_string().to_lowercase()
                })
            }
        }
    }

    /// How many messages one sender may bring in an hour (`None`: no limit).
    pub fn sender_limit(&self) -> Option<u32> {
        self.limits().inbound_per_sender_per_hour.filter(|n| *n > 0)
    }

    /// How many automatic messages one contact may be sent in an hour (`None`: no limit).
    pub fn auto_reply_limit(&self) -> Option<u32> {
        match self {
            ChannelConfig::Api(c) => c.limits.auto_replies_per_hour(None),
            ChannelConfig::Email(c) => c.limits.auto_replies_per_hour(Some(MAIL_AUTO_REPLIES_PER_HOUR)),
        }
    }

    pub fn limits(&self) -> &ChannelLimits {
        match self {
            ChannelConfig::Api(c) => &c.limits,
            ChannelConfig::Email(c) => &c.limits,
        }
    }

    /// Problems as (key relative to the channel, reason); resolves secret files.
    pub fn validate(&mut self) -> Vec<(String, String)> {
        let mut problems = self.limits().validate();
        match self {
            ChannelConfig::Api(c) => problems.extend(c.validate()),
            ChannelConfig::Email(c) => problems.extend(c.validate()),
        }
        problems
    }
}

/// The outbound half of a configured channel, if it can send. `state` is the channel's durable
/// state (rotated OAuth2 refresh tokens).
pub fn build_outbound(
    config: &ChannelConfig,
    timeout: Duration,
    state: crate::pipeline::ChannelState,
) -> Option<Arc<dyn Outbound>> {
    match config {
        ChannelConfig::Api(c) => api::outbound::ApiOutbound::new(c, timeout).map(|o| Arc::new(o) as Arc<dyn Outbound>),
        ChannelConfig::Email(c) => {
            email::outbound::SmtpOutbound::new(c, state).map(|o| Arc::new(o) as Arc<dyn Outbound>)
        }
    }
}

/// The receiving half of a pull channel (IMAP, long polling), if it has one. Push channels
/// receive through `/hooks/{channel_id}` instead.
pub fn build_inbound(config: &ChannelConfig) -> Option<Box<dyn Inbound>> {
    match config {
        ChannelConfig::Api(_) => None,
        ChannelConfig::Email(c) => c
            .imap
            .is_some()
            .then(|| Box::new(email::inbound::ImapInbound { config: Arc::new(c.clone()) }) as Box<dyn Inbound>),
    }
}

/// A pull channel's receiving loop: runs until `cx.shutdown`, hands items to `cx.ingest`, and
/// advances its checkpoints only after they were committed.
pub trait Inbound: Send + 'static {
    fn run(self: Box<Self>, cx: crate::pipeline::InboundContext) -> BoxFuture<'static, ()>;
}
