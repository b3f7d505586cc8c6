//! The message object: what consumers receive in `message.*` events and from `GET /v1/messages/{id}`.
//!
//! Its JSON shape is public (docs/schemas/message.json); add fields, never rename them.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::ids::{AttachmentId, ContactId, ConversationId, MessageId};

/// Who sent or receives a message on a channel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Party {
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Inbound,
    Outbound,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

/// Lifecycle of a message. Inbound messages are `received`; outbound ones move
/// `queued < sent < delivered < read`, or end `failed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Received,
    Queued,
    Sent,
    Delivered,
    Read,
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Received => "received",
            Status::Queued => "queued",
            Status::Sent => "sent",
            Status::Delivered => "delivered",
            Status::Read => "read",
            Status::Failed => "failed",
        }
    }

    fn rank(self) -> u8 {
        match self {
            Status::Received | Status::Queued => 0,
            Status::Sent => 1,
            Status::Delivered => 2,
            Status::Read => 3,
            Status::Failed => 4,
        }
    }

    /// Invariant 7: status never moves backwards, and `failed` is terminal. A late `delivered`
    /// after `read` is ignored; `failed` is accepted from any non-terminal state (a bounce can
    /// follow `sent`) but never after `delivered` or `read`, which prove the message arrived.
    pub fn can_become(self, next: Status) -> bool {
        match (self, next) {
            (Status::Failed, _) => false,
            (Status::Delivered | Status::Read, Status::Failed) => false,
            (_, Status::Failed) => true,
            (current, next) => next.rank() > current.rank(),
        }
    }
}

/// A stored attachment as consumers see it; the bytes are at `url`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub id: AttachmentId,
    pub filename: Option<String>,
    /// Content-ID of an inline part: HTML bodies refer to it as `cid:<content_id>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_id: Option<String>,
    pub content_type: String,
    pub size: u64,
    pub sha256: String,
    pub url: String,
}

/// Where stored files are downloaded: `{server.public_url}/v1/attachments/{id}`.
///
/// A message and its events keep the URL they were built with, and `public_url` changes in an
/// appliance's life (a reverse proxy put in front, a new host name). Whatever is read out again
/// — the event log's replays and pages, the message API, the rejected listing — carries the
/// current base: the former ones the store remembers are rewritten on the way out, and the
/// log itself is never changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AttachmentUrls {
    base: String,
    former: Vec<String>,
}

impl AttachmentUrls {
    pub fn new(public_url: &str, former: &[String]) -> AttachmentUrls {
        let base = public_url.trim_end_matches('/').to_owned();
        let former = former.iter().map(|f| f.trim_end_matches('/').to_owned()).filter(|f| *f != base).collect();
        AttachmentUrls { base, former }
    }

    /// The download address of the file `id`.
    pub fn url(&self, id: &AttachmentId) -> String {
        self.url_of(id.as_str())
    }

    fn url_of(&self, id: &str) -> String {
        format!("{}/v1/attachments/{id}", self.base)
    }

    /// `json` (a stored message, event data or summary) with every attachment URL under a
    /// former base moved to the current one. Only a `"url":"` key followed by a former base
    /// and `/v1/attachments/` matches: within a JSON string every quote is escaped, so text a
    /// customer wrote never does.
    pub fn rebase_json<'a>(&self, json: &'a str) -> Cow<'a, str> {
        let mut rebased = Cow::Borrowed(json);
        for former in &self.former {
            let from = format!("\"url\":\"{former}/v1/attachments/");
            if rebased.contains(&from) {
                let to = format!("\"url\":\"{}/v1/attachments/", self.base);
                rebased = Cow::Owned(rebased.replace(&from, &to));
            }
        }
        rebased
    }

    /// The message's attachments and source under the current base.
    pub fn rebase(&self, message: &mut Message) {
        for attachment in message.attachments.iter_mut().chain(message.source.as_mut()) {
            let id = self
                .former
                .iter()
                .find_map(|f| attachment.url.strip_prefix(f.as_str())?.strip_prefix("/v1/attachments/"));
            if let Some(url) = id.map(|id| self.url_of(id)) {
                attachment.url = url;
            }
        }
    }
}

/// An attachment that was not stored, and why (invariant 4: nothing disappears silently).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedAttachment {
    pub filename: Option<String>,
    pub content_type: Option<String>,
    pub size: Option<u64>,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelRef {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
}

/// The provider's own ids for this message and its thread.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderRef {
    pub message_id: Option<String>,
    pub thread_id: Option<String>,
}

/// Why a message joined its conversation (an operator's answer to "why is this here?").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StitchInfo {
    /// `thread` (the channel's thread key matched), `new`, and for mail `in_reply_to`,
    /// `references`, `token`, `subject`.
    pub reason: String,
}

/// What the receiving mail server found of a mail's sender, from its `Authentication-Results`
/// header (RFC 8601), when the channel trusts that server (`authserv_id`). Each result as the
/// server wrote it, lowercase: `pass`, `fail`, `softfail`, `neutral`, `none`, `temperror`,
/// `permerror`, `policy`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailAuthentication {
    /// The server's authserv-id; none when it writes none (Microsoft 365).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authserv_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dmarc: Option<String>,
    /// `pass` when any DKIM signature passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dkim: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spf: Option<String>,
}

/// What the signature of a signed mail says (S/MIME, or OpenPGP against the channel's keyring),
/// as a mail client's badge would. Nothing is refused for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailSignature {
    /// `smime` or `openpgp`.
    pub kind: String,
    pub status: SignatureStatus,
    /// The mail address the signer's certificate or key is for (the sender's, when it is among
    /// them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
    /// Why, in words, for an operator.
    pub detail: String,
}

/// That a mail came encrypted (S/MIME or OpenPGP), and whether the gateway read it: with the
/// channel's own key (its OpenPGP secret key, or the key of its S/MIME certificate) the
/// message is what the mail encrypts; otherwise its text
/// cannot be read here, and the encrypted content stays as a file (and in the mail's source)
/// for a mail client that holds the key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailEncryption {
    /// `smime` or `openpgp`; for a mail we sent, also `none`: it went out in clear on a channel
    /// that encrypts when possible, because a recipient had no key or certificate (`detail`).
    pub kind: String,
    /// Whether the gateway read what it encrypts (with the channel's `openpgp_secret_key`, or
    /// its S/MIME `smime_key`).
    pub decrypted: bool,
    /// Why, in words, for an operator.
    pub detail: String,
}

/// A calendar invitation in a mail (iMIP, RFC 6047), or an answer to one or its cancellation:
/// the event, as its `text/calendar` part or `.ics` file says (`email/calendar.rs`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailCalendar {
    /// The iTIP method, upper-case: `REQUEST` (an invitation or its update), `REPLY` (an
    /// attendee's answer), `CANCEL`, `COUNTER` (a new time proposed), `PUBLISH` (a plain event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// The event's UID, the same in the invitation, its updates and the answers to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// Which update of the event this is (0 for the first).
    #[serde(default)]
    pub sequence: u32,
    /// `confirmed`, `tentative` or `cancelled`, when the event says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<CalendarTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<CalendarTime>,
    /// A recurring event's rule, as written (`FREQ=WEEKLY;BYDAY=TU`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recurrence: Option<String>,
    /// Which meeting of a recurring event the mail is about, when only one (its RECURRENCE-ID:
    /// the series' original time of that meeting): "Canceled event: Weekly sync" then cancels
    /// that meeting, not the series.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurrence: Option<CalendarTime>,
    /// `this_and_future` when the change is for that meeting and every one after it
    /// (RFC 5545 `RANGE=THISANDFUTURE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurrence_range: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organizer: Option<Party>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attendees: Vec<CalendarAttendee>,
    /// The online meeting's link (Teams, Google Meet, or RFC 7986 `CONFERENCE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conference_url: Option<String>,
}

/// When an event starts or ends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CalendarTime {
    /// The instant, when the invitation says which: written in UTC, or in a zone its own
    /// `VTIMEZONE` describes. Absent for a whole day, a floating time, or an undescribed zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utc: Option<String>,
    /// As written, without zone: `2026-11-24T10:00:00`, or `2026-11-24` for a whole day.
    pub local: String,
    /// The zone `local` is in, as the invitation names it (`Europe/Warsaw`, or Outlook's
    /// `Central European Standard Time`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all_day: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CalendarAttendee {
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Their answer: `needs-action` (none yet), `accepted`, `declined`, `tentative`,
    /// `delegated`.
    pub status: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignatureStatus {
    /// The mail is as signed, by a certificate a trusted CA issued (S/MIME) or a keyring key
    /// (OpenPGP) for the sender's address.
    Valid,
    /// The mail is as signed, but the certificate or key is not trusted (self-signed, unknown
    /// CA, revoked, expired when it signed, not for mail) or is not for the sender's address.
    Untrusted,
    /// The mail was changed after it was signed, or the signature is not the certificate's.
    Invalid,
    /// Cannot be told: an algorithm not supported here (SHA-1 among them), no signer's
    /// certificate, no key in the keyring (OpenPGP), or an unreadable signature.
    Unverifiable,
}

impl MailAuthentication {
    /// Whether the sender's domain failed: DMARC failed; or, with no DMARC result, neither DKIM
    /// nor SPF passed and at least one of them was checked and failed.
    pub fn failed(&self) -> bool {
        let is = |result: &Option<String>, values: &[&str]| result.as_deref().is_some_and(|r| values.contains(&r));
        match &self.dmarc {
            Some(dmarc) => dmarc == "fail",
            None => {
                let passed = is(&self.dkim, &["pass"]) || is(&self.spf, &["pass"]);
                let failed =
                    is(&self.dkim, &["fail", "permerror"]) || is(&self.spf, &["fail", "softfail", "permerror"]);
                !passed && failed
            }
        }
    }

    /// `dmarc=fail, dkim=none, spf=softfail`: the results there are.
    pub fn summary(&self) -> String {
        let results = [("dmarc", &self.dmarc), ("dkim", &self.dkim), ("spf", &self.spf)];
        let said: Vec<String> =
            results.iter().filter_map(|(method, result)| Some(format!("{method}={}", result.as_deref()?))).collect();
        said.join(", ")
    }
}

/// What a delivery status notification (a bounce), or a recipient's read receipt, said about
/// one of our messages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryReport {
    /// A DSN's `failed`, `delayed`, `delivered`, `relayed`, `expanded`; a read receipt's
    /// disposition: `displayed`, `deleted`, `dispatched`, `processed`.
    pub action: String,
    /// RFC 3463 status: `5.x.x` permanent, `4.x.x` transient.
    pub status: String,
    pub recipient: Option<String>,
    /// Every recipient the report says will not get the mail (a report may cover To and Cc).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_recipients: Vec<String>,
    pub diagnostic: Option<String>,
    /// Message-IDs of the original mail found in the report.
    pub original_message_ids: Vec<String>,
    pub original_envelope_id: Option<String>,
}

impl DeliveryReport {
    /// The dispositions a recipient's mail client reports in a read receipt (RFC 8098
    /// §3.2.6.2), which are a receipt's `action`.
    pub const RECEIPT_DISPOSITIONS: &[&str] = &["displayed", "deleted", "dispatched", "processed"];

    /// A `failed` action or a 5.x.x status: the message will not arrive.
    pub fn is_permanent_failure(&self) -> bool {
        self.action.eq_ignore_ascii_case("failed") || self.status.starts_with('5')
    }

    /// A read receipt (RFC 8098), not a delivery status notification.
    pub fn is_receipt(&self) -> bool {
        Self::RECEIPT_DISPOSITIONS.contains(&self.action.as_str())
    }

    /// What the report proves of our message: read (a receipt saying it was displayed) or
    /// delivered (any other receipt; a DSN's `delivered`, or `relayed`: accepted by a server
    /// that gives no further reports, normally the recipient's own, which is what mail
    /// providers count as delivered).
    pub fn arrival(&self) -> Option<Arrival> {
        match self.action.as_str() {
            "displayed" => Some(Arrival::Read),
            "delivered" | "relayed" => Some(Arrival::Delivered),
            _ if self.is_receipt() => Some(Arrival::Delivered),
            _ => None,
        }
    }
}

/// See `DeliveryReport::arrival`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrival {
    Delivered,
    Read,
}

/// A failure as consumers see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorInfo {
    pub code: String,
    pub message: String,
    pub permanent: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub id: MessageId,
    pub conversation_id: ConversationId,
    pub contact_id: ContactId,
    pub channel: ChannelRef,
    pub direction: Direction,
    pub status: Status,
    pub from: Party,
    /// Inbound mail: the Reply-To party, when it names someone other than `from`; the message,
    /// its contact and the replies are theirs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<Party>,
    /// Inbound mail one of the channel's `forwarders` forwarded: the original sender; the
    /// message, its contact and the replies are theirs, and `from` is who forwarded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forwarded_from: Option<Party>,
    pub to: Vec<Party>,
    /// Mail: the Cc recipients (inbound as the mail named them; outbound as the request asked).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cc: Vec<Party>,
    /// Outbound mail: the Bcc recipients (in the envelope only, never in the mail).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bcc: Vec<Party>,
    pub subject: Option<String>,
    pub text: Option<String>,
    pub html: Option<String>,
    /// The new part of the message, without quoted history or signature (for mail, nor the
    /// company disclaimer or imprint below it).
    pub reply_text: Option<String>,
    pub attachments: Vec<Attachment>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments_skipped: Vec<SkippedAttachment>,
    /// The message exactly as received (a mail's `message.eml`), downloadable like an attachment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Attachment>,
    /// Our id of the message this one answers, when known.
    pub in_reply_to: Option<MessageId>,
    pub provider: ProviderRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stitch: Option<StitchInfo>,
    /// An automatic message (vacation notice, bounce, list mail): it never opens a conversation.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub auto_reply: bool,
    /// For a bounce: what it reports about which of our messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_report: Option<DeliveryReport>,
    /// For a mail on a channel that trusts its receiving server's Authentication-Results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<MailAuthentication>,
    /// For a signed mail: what its signature says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<MailSignature>,
    /// For an encrypted mail: that it is, and whether it was decrypted; for one we sent, that it
    /// went out encrypted, or in clear (`none`) on a channel that encrypts when possible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<MailEncryption>,
    /// For a mail with a calendar invitation (a `text/calendar` part or an `.ics` file), or an
    /// answer to one: the event it is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calendar: Option<MailCalendar>,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
    /// When `storage.retention` removed the message's content (text, HTML, attachments, kept
    /// source); what threads and deduplicates it stays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pruned_at: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::Status::*;

    #[test]
    fn attachment_urls_under_a_former_base_move_to_the_current_one() {
        let urls = super::AttachmentUrls::new(
            "https://gw.example.com/switchboard/",
            &["http://127.0.0.1:8080".to_owned(), "https://gw.example.com/switchboard".to_owned()],
        );
        let stored = r#"{"attachments":[{"id":"att_1","url":"http://127.0.0.1:8080/v1/attachments/att_1"}],"source":{"url":"http://127.0.0.1:8080/v1/attachments/att_2"},"text":"see \"url\":\"http://127.0.0.1:8080/v1/attachments/att_3\"","meta":{"url":"http://127.0.0.1:8080/elsewhere"},"other":{"url":"http://127.0.0.1:80801/v1/attachments/att_4"}}"#;
        let rebased = urls.rebase_json(stored);
        assert_eq!(
            rebased,
            stored
                .replace(
                    "\"url\":\"http://127.0.0.1:8080/v1/attachments/att_1",
                    "\"url\":\"https://gw.example.com/switchboard/v1/attachments/att_1"
                )
                .replace(
                    "\"url\":\"http://127.0.0.1:8080/v1/attachments/att_2",
                    "\"url\":\"https://gw.example.com/switchboard/v1/attachments/att_2"
                )
        );
        assert!(
            rebased.contains(r#"see \"url\":\"http://127.0.0.1:8080/v1/attachments/att_3"#),
            "a customer's text is theirs"
        );
        let current = r#"{"url":"https://gw.example.com/switchboard/v1/attachments/att_5"}"#;
        assert!(matches!(urls.rebase_json(current), std::borrow::Cow::Borrowed(_)), "nothing to do, nothing copied");
        assert_eq!(
            urls.url(&super::AttachmentId::parse("att_6").unwrap()),
            "https://gw.example.com/switchboard/v1/attachments/att_6"
        );
        assert!(matches!(
            super::AttachmentUrls::new("http://a", &[]).rebase_json(stored),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn status_only_moves_forward() {
        let cases = [
            (Queued, Sent, true),
            (Sent, Delivered, true),
            (Delivered, Read, true),
            (Queued, Read, true),
            (Read, Delivered, false),
            (Delivered, Sent, false),
            (Sent, Sent, false),
            (Queued, Failed, true),
            (Sent, Failed, true),
            (Delivered, Failed, false),
            (Failed, Sent, false),
            (Failed, Failed, false),
        ];
        for (from, to, ok) in cases {
            assert_eq!(from.can_become(to), ok, "{from:?} -> {to:?}");
        }
    }
}
