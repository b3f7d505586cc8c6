//! Auto-replies (RFC 3834) and bounces: delivery status notifications (RFC 3464, RFC 6522),
//! delivery agents' refusal notices (RFC 8098), and the plain-text bounces mail servers wrote
//! before DSNs and many still write. Also recipients' read receipts (RFC 8098), read as reports
//! about our message like bounces, and the spam verdicts of receiving servers' filters.
//!
//! Pure functions over a parsed mail. An auto-reply is flagged and never opens a conversation;
//! a bounce is matched to the outbound message it reports on (the embedded original's
//! Message-ID, or the original envelope id) so a permanent failure fails that message. What
//! only a bounce's text says is believed of a mailer daemon's mail alone.

use std::borrow::Cow;

use mail_parser::{HeaderValue, Message, MessageParser, MimeHeaders, PartType};

use super::plain_bounce::{plain_text_failures, status_code_in};

pub use crate::model::DeliveryReport;

fn header_text<'a>(message: &'a Message<'_>, name: &'static str) -> Option<&'a str> {
    message.header_raw(name).map(str::trim)
}

/// Every header field of the mail itself, topmost first: its name and raw value (unfolded
/// neither in name nor in value), for headers read in order or more than once
/// (Authentication-Results, spam verdicts).
pub(super) fn raw_headers<'a>(message: &'a Message<'_>) -> impl Iterator<Item = (&'a str, Cow<'a, str>)> {
    let raw = message.raw_message();
    message.root_part().headers.iter().filter_map(move |header| {
        let value = raw.get(header.offset_start() as usize..header.offset_end() as usize)?;
        Some((header.name(), String::from_utf8_lossy(value)))
    })
}

/// Vacation and out-of-office subjects, for senders that set no headers. Only as the subject's
/// start, followed by a colon or nothing ("Automatic reply: Your order", "Out of office"): a
/// customer asking about a "vacation booking" or the "absence of a refund" is no auto-reply,
/// and an auto-reply outside a conversation is refused.
const AUTO_SUBJECTS: &[&str] = &[
    "out of office",
    "out of the office",
    "automatic reply",
    "auto reply",
    "autoreply",
    "auto-reply",
    "vacation",
    "abwesenheitsnotiz",
    "automatische antwort",
    "réponse automatique",
    "absence",
    "respuesta automática",
    "fuera de la oficina",
    "automatyczna odpowiedź",
    "poza biurem",
    "automatická odpověď",
    "mimo kancelář",
    "automatická odpoveď",
    "autosvar",
    "risposta automatica",
    "fuori sede",
    "fuori ufficio",
    "automatisch antwoord",
    "afwezig",
    "resposta automática",
    "fora do escritório",
    "automatiskt svar",
    "frånvaro",
    "automatisk svar",
    "fraværende",
];

/// Headers in which a receiving server's spam filter marks a mail as spam, and the first word
/// that says so, compared without case: SpamAssassin and amavis (`X-Spam-Flag: YES`,
/// `X-Spam-Status: Yes, score=…`), rspamd (`X-Spam: Yes`), DSPAM (`X-DSPAM-Result: Spam`);
/// Microsoft 365's has a form of its own (`MICROSOFT_REPORT`).
/// Names match whole (rspamd's `X-Spam-Result` lists symbols such as BAYES_SPAM: not a verdict).
const SPAM_FLAGS: &[(&str, &str)] =
    &[("X-Spam-Flag", "yes"), ("X-Spam-Status", "yes"), ("X-Spam", "yes"), ("X-DSPAM-Result", "spam")];

/// Microsoft 365's (Exchange Online Protection's) report: `…;SCL:5;SRV:;IPV:NLI;SFV:SPM;…`.
/// Its spam filtering verdict `SFV` says spam with `SPM` (by spam filtering), `SKS` (by a mail
/// flow rule), `SKB` (a blocked sender of the anti-spam policy) and `BLK` (a blocked sender of
/// the mailbox's). Exchange renames such headers from outside the organisation
/// (`X-Forefront-Antispam-Report-Untrusted`), which the whole-name match leaves out.
const MICROSOFT_REPORT: &str = "X-Forefront-Antispam-Report";
const MICROSOFT_SPAM_VERDICTS: &[&str] = &["SPM", "SKS", "SKB", "BLK"];

/// The header line in which a spam filter marked `message` as spam, if one did. A sender who
/// writes such a header only harms their own mail, so any one counts.
pub(super) fn spam_verdict(message: &Message<'_>) -> Option<String> {
    raw_headers(message).find_map(|(header, value)| {
        if header.eq_ignore_ascii_case(MICROSOFT_REPORT) {
            let verdict = value.split(';').map(str::trim).find_map(|field| field.strip_prefix("SFV:"))?;
            let spam = MICROSOFT_SPAM_VERDICTS.iter().any(|v| verdict.eq_ignore_ascii_case(v));
            return spam.then(|| format!("{MICROSOFT_REPORT}: SFV:{verdict}"));
        }
        let (name, says_spam) = SPAM_FLAGS.iter().find(|(name, _)| header.eq_ignore_ascii_case(name))?;
        let value = value.trim();
        let verdict = value.split([',', ';', ' ', '\t', '\r', '\n']).next().unwrap_or_default();
        verdict.eq_ignore_ascii_case(says_spam).then(|| format!("{name}: {}", value.lines().next().unwrap_or_default()))
    })
}

/// RFC 3834 and the common vendor headers. `ours` says whether an address is one of the
/// channel's: a list that is our own address relayed the mail (see `relayed_by_our_list`).
pub fn is_auto_reply(message: &Message<'_>, ours: impl Fn(&str) -> bool) -> bool {
    if header_text(message, "Auto-Submitted").is_some_and(|v| !v.to_ascii_lowercase().starts_with("no")) {
        return true;
    }
    if header_text(message, "Precedence")
        .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "bulk" | "junk" | "list"))
        && !relayed_by_our_list(message, ours)
    {
        return true;
    }
    if ["X-Autoreply", "X-Autorespond", "X-Auto-Response-Suppress"].iter().any(|h| header_text(message, h).is_some()) {
        return true;
    }
    if null_return_path(message) {
        return true;
    }
    is_auto_subject(message.subject().unwrap_or(""))
}

/// Whether the mailing list that relayed the mail is our own address: a support address that
/// is a Google Group (or a Mailman list) delivers every customer's mail with `Precedence: list`
/// and the list's headers, which then say nothing about the sender. Known by `List-Post`
/// (`<mailto:support@example.com>`) or `List-Id` (`<support.example.com>`, RFC 2919).
pub(super) fn relayed_by_our_list(message: &Message<'_>, ours: impl Fn(&str) -> bool) -> bool {
    let posts_to_us = header_text(message, "List-Post").is_some_and(|v| {
        v.split(',').filter_map(|item| item.trim().trim_matches(['<', '>']).strip_prefix("mailto:")).any(&ours)
    });
    let list_id = header_text(message, "List-Id")
        .map(|v| v.rsplit_once('<').map_or(v, |(_, id)| id.trim_end_matches('>')).trim().to_ascii_lowercase());
    // RFC 2919's list-id is "label.domain"; Google Groups and Mailman make it local.domain.
    let named_after_us =
        list_id.is_some_and(|id| id.split_once('.').is_some_and(|(label, domain)| ours(&format!("{label}@{domain}"))));
    posts_to_us || named_after_us
}

/// Whether a subject starts with an auto-reply phrase followed by a colon or nothing.
fn is_auto_subject(subject: &str) -> bool {
    let subject = subject.trim().to_lowercase();
    AUTO_SUBJECTS.iter().any(|phrase| {
        subject.strip_prefix(phrase).is_some_and(|rest| {
            let rest = rest.trim_start();
            rest.is_empty() || rest.starts_with(':') || rest.starts_with('：')
        })
    })
}

/// Parses `Name: value` fields (with folded continuation lines) of a delivery-status body.
fn fields(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = out.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            out.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    out
}

/// `rfc822;ann@example.org` → `ann@example.org` (also `rfc822; <ann@example.org>`, and an
/// address given without its type).
fn strip_type(value: &str) -> String {
    let value = value.split_once(';').map_or(value, |(_, v)| v).trim();
    value.strip_prefix('<').and_then(|v| v.strip_suffix('>')).unwrap_or(value).trim().to_owned()
}

/// Whether a recipient field's value is an Internet mail address (`rfc822;…`, or untyped), not
/// another system's (`x400; /S=ann/…`).
fn is_mail_address(value: &str) -> bool {
    value.split_once(';').is_none_or(|(kind, _)| kind.trim().eq_ignore_ascii_case("rfc822"))
        && strip_type(value).contains('@')
}

fn ids_in(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.trim().eq_ignore_ascii_case("message-id").then(|| value.trim().trim_matches(['<', '>']).to_owned())
        })
        .filter(|v| !v.is_empty())
        .collect()
}

/// The first of a mail's own parts (not those of a mail it encloses) of type `message/<one of
/// subtypes>`, or for `text/rfc822-headers` of that type too.
pub(super) fn message_part<'a, 'm>(
    message: &'a Message<'m>,
    subtypes: &[&str],
) -> Option<&'a mail_parser::MessagePart<'m>> {
    message.parts.iter().find(|part| {
        part.content_type().is_some_and(|c| {
            let subtype = c.subtype().unwrap_or("");
            let wanted = subtypes.iter().any(|s| s.eq_ignore_ascii_case(subtype));
            wanted && (c.ctype().eq_ignore_ascii_case("message") || subtype.eq_ignore_ascii_case("rfc822-headers"))
        })
    })
}

/// Whether a mail's own parts include a delivery-status report.
fn has_status_part(message: &Message<'_>) -> bool {
    message_part(message, &["delivery-status", "global-delivery-status"]).is_some()
}

/// Whether a mail comes from a mailer daemon: a null Return-Path, or From MAILER-DAEMON,
/// postmaster or MDaemon (the mail server of that name signs its bounces so). What only a
/// bounce's body says is believed of such a mail alone: a customer who pastes or attaches a
/// bounce is writing to us, not bouncing.
pub(super) fn from_mailer_daemon(message: &Message<'_>) -> bool {
    let daemon = message.from().and_then(|f| f.first()).and_then(|a| a.address()).is_some_and(|address| {
        let local = address.split('@').next().unwrap_or("");
        ["mailer-daemon", "postmaster", "mdaemon"].iter().any(|daemon| local.eq_ignore_ascii_case(daemon))
    });
    daemon || null_return_path(message)
}

/// Whether the mail was sent with a null envelope sender (`Return-Path: <>`), as automatic mail
/// and bounces are (RFC 3834 §3.3, RFC 5321 §4.5.5). sendmail and the delivery agents of its
/// lineage write the null sender as `<MAILER-DAEMON>`, or `<MAILER-DAEMON@host>`.
fn null_return_path(message: &Message<'_>) -> bool {
    header_text(message, "Return-Path").is_some_and(|path| {
        let path = path.trim_matches(['<', '>']);
        path.is_empty() || path.split('@').next().is_some_and(|local| local.eq_ignore_ascii_case("mailer-daemon"))
    })
}

/// A DSN, if this mail is one: `multipart/report; report-type=delivery-status`; a mailer
/// daemon's mail with a delivery-status part under another type (OpenSMTPD's is
/// `multipart/mixed`); a delivery agent's refusal notice (`rejection_notice`); a
/// `X-Failed-Recipients` bounce without the standard report; or a plain-text bounce
/// (`plain_text_failures`), whose text also names who failed where a report part names no one.
pub fn delivery_report(message: &Message<'_>) -> Option<DeliveryReport> {
    // A delivery agent's refusal notice has a read receipt's form; a person's receipt is none.
    let rejection = rejection_notice(message);
    if let Some(receipt) = rejection.is_none().then(|| receipt(message)).flatten() {
        return Some(receipt);
    }
    let is_report = message.content_type().is_some_and(|c| {
        c.ctype().eq_ignore_ascii_case("multipart")
            && c.subtype().is_some_and(|s| s.eq_ignore_ascii_case("report"))
            && c.attribute("report-type").is_some_and(|t| t.to_ascii_lowercase().contains("delivery-status"))
    }) || (has_status_part(message) && from_mailer_daemon(message));
    let is_report = is_report || rejection.is_some();
    let failed_header = header_text(message, "X-Failed-Recipients").map(str::to_owned);
    let plain = if is_report || failed_header.is_some() { Vec::new() } else { plain_text_failures(message, false) };
    if !is_report && failed_header.is_none() && plain.is_empty() {
        return None;
    }
    let failed_recipients: Vec<String> = failed_header
        .iter()
        .flat_map(|h| h.split(','))
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty())
        .collect();
    let mut report = DeliveryReport {
        action: "failed".into(),
        status: "5.0.0".into(),
        recipient: failed_recipients.first().cloned(),
        failed_recipients,
        diagnostic: None,
        original_message_ids: Vec::new(),
        original_envelope_id: None,
    };
    for part in message.parts.iter() {
        let ctype =
            part.content_type().map(|c| format!("{}/{}", c.ctype(), c.subtype().unwrap_or("")).to_ascii_lowercase());
        match (ctype.as_deref(), &part.body) {
            (Some("message/delivery-status" | "message/global-delivery-status"), body) => {
                let text = match body {
                    PartType::Text(t) => t.to_string(),
                    PartType::Binary(b) | PartType::InlineBinary(b) => String::from_utf8_lossy(b).into_owned(),
                    PartType::Message(m) => String::from_utf8_lossy(m.raw_message()).into_owned(),
                    _ => String::from_utf8_lossy(part.contents()).into_owned(),
                };
                read_delivery_status(&text, &mut report);
            }
            (_, PartType::Message(original)) => {
                report.original_message_ids.extend(original.message_id().map(|id| id.to_owned()));
            }
            (Some("text/rfc822-headers"), _) => {
                let text = String::from_utf8_lossy(part.contents()).into_owned();
                let reparsed = MessageParser::default()
                    .parse_headers(text.as_bytes())
                    .and_then(|m| m.message_id().map(str::to_owned));
                report.original_message_ids.extend(reparsed.or_else(|| ids_in(&text).into_iter().next()));
            }
            _ => {}
        }
    }
    if let Some(notice) = rejection {
        read_rejection(&notice, message, &mut report);
    }
    if is_report && report.recipient.is_none() && report.failed_recipients.is_empty() {
        // A report part naming no one (empty, or not in RFC 3464's form): the text may.
        name_failures(&plain_text_failures(message, true), &mut report);
    }
    name_failures(&plain, &mut report);
    if report.original_message_ids.is_empty() {
        // Non-standard bounces quote the original in the text.
        let body = message.body_text(0).map(|t| t.into_owned()).unwrap_or_default();
        report.original_message_ids = ids_in(&body);
    }
    if let HeaderValue::Text(id) = message.in_reply_to() {
        if report.original_message_ids.is_empty() {
            report.original_message_ids.push(id.to_string());
        }
    }
    Some(report)
}

/// A read receipt (RFC 8098 message disposition notification) a recipient's mail client sent,
/// as a report: `action` its disposition type (`displayed`: the mail was shown to the
/// recipient), status 2.0.0 (whatever they did with it, the mail arrived), about the mail its
/// Original-Message-ID (or else In-Reply-To) names. Asked only of a mail that is no delivery
/// agent's refusal notice, which has the same form (`rejection_notice`).
fn receipt(message: &Message<'_>) -> Option<DeliveryReport> {
    let part = message_part(message, &["disposition-notification"])?;
    let fields = fields(&String::from_utf8_lossy(part.contents()));
    let field = |name: &str| fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    // `action-mode/sending-mode; disposition-type[/modifier]`.
    let disposition = field("disposition")?.split_once(';')?.1.trim().to_ascii_lowercase();
    let kind = disposition.split(['/', ' ', ';']).next().unwrap_or_default();
    let kind = DeliveryReport::RECEIPT_DISPOSITIONS.iter().find(|d| **d == kind)?;
    let original = field("original-message-id").map(|id| id.trim().trim_matches(['<', '>']).to_owned());
    let original = original.filter(|id| !id.is_empty()).or_else(|| match message.in_reply_to() {
        HeaderValue::Text(id) => Some(id.to_string()),
        _ => None,
    });
    let recipient = field("final-recipient").or(field("original-recipient")).filter(|v| is_mail_address(v));
    Some(DeliveryReport {
        action: (*kind).to_owned(),
        status: "2.0.0".into(),
        recipient: recipient.map(strip_type),
        failed_recipients: Vec::new(),
        diagnostic: None,
        original_message_ids: original.into_iter().collect(),
        original_envelope_id: None,
    })
}

/// The `message/disposition-notification` part (RFC 8098) with which a delivery agent refuses
/// a mail it had accepted — Dovecot's LDA and LMTP over quota, a Sieve `reject` (RFC 5429) —
/// if this is one: a mailer daemon's notice that the mail was `deleted` (or `failed`). A
/// person's read receipt is none: it does not come from a mailer daemon.
fn rejection_notice(message: &Message<'_>) -> Option<Vec<(String, String)>> {
    if !from_mailer_daemon(message) {
        return None;
    }
    let part = message_part(message, &["disposition-notification"])?;
    let fields = fields(&String::from_utf8_lossy(part.contents()));
    let disposition = fields.iter().find(|(name, _)| name == "disposition")?.1.to_ascii_lowercase();
    let refused =
        disposition.split_once(';').is_some_and(|(_, kind)| kind.contains("deleted") || kind.contains("failed"));
    refused.then_some(fields)
}

/// Reads a refusal notice (the `fields` of its `rejection_notice`) into `report`: its recipient
/// failed, for the reason the notice's text gives (Dovecot: "Your message to <ann@example.org>
/// was automatically rejected: Quota exceeded"), about the mail its Original-Message-ID names.
fn read_rejection(fields: &[(String, String)], message: &Message<'_>, report: &mut DeliveryReport) {
    let field = |name: &str| fields.iter().find(|(n, v)| n == name && is_mail_address(v)).map(|(_, v)| strip_type(v));
    let reason = message.body_text(0).map(|t| t.split_whitespace().collect::<Vec<_>>().join(" "));
    let block = RecipientStatus {
        recipient: field("original-recipient").or_else(|| field("final-recipient")),
        action: Some("failed".into()),
        status: Some(reason.as_deref().and_then(status_code_in).unwrap_or("5.0.0").to_owned()),
        diagnostic: reason.filter(|r| !r.is_empty()),
    };
    name_failures(&[block], report);
    let original = fields.iter().find(|(name, _)| name == "original-message-id");
    if let Some(id) = original.map(|(_, id)| id.trim().trim_matches(['<', '>'])) {
        if !report.original_message_ids.iter().any(|known| known == id) {
            report.original_message_ids.push(id.to_owned());
        }
    }
}

/// One recipient's block of a delivery-status part, or what a plain-text bounce says of one.
#[derive(Default)]
pub(super) struct RecipientStatus {
    pub(super) recipient: Option<String>,
    pub(super) action: Option<String>,
    pub(super) status: Option<String>,
    pub(super) diagnostic: Option<String>,
}

impl RecipientStatus {
    fn is_permanent_failure(&self) -> bool {
        self.action.as_deref() == Some("failed") || self.status.as_deref().is_some_and(|s| s.starts_with('5'))
    }
}

/// Reads a `message/delivery-status` body (RFC 3464 §2.1): the per-message fields, then one
/// block per recipient, blocks separated by blank lines. One report may cover several recipients
/// of a mail (To and Cc): the report names the first that failed for good (else the first),
/// and lists every such one in `failed_recipients`.
fn read_delivery_status(text: &str, report: &mut DeliveryReport) {
    let mut blocks: Vec<RecipientStatus> = Vec::new();
    for paragraph in text.replace("\r\n", "\n").split("\n\n") {
        let mut block = RecipientStatus::default();
        let fields = fields(paragraph);
        let has_original = fields.iter().any(|(name, value)| name == "original-recipient" && is_mail_address(value));
        for (name, value) in fields {
            match name.as_str() {
                "action" => block.action = Some(value.to_ascii_lowercase()),
                "status" => block.status = Some(value.split_whitespace().next().unwrap_or("").to_owned()),
                // The address as our mail named it (RFC 3464 2.3.1: ORCPT), where the report
                // gives it, rather than what the receiving system made of it (an alias's
                // target, an X.400 name).
                "original-recipient" if is_mail_address(&value) => block.recipient = Some(strip_type(&value)),
                "final-recipient" if !has_original => block.recipient = Some(strip_type(&value)),
                "diagnostic-code" => block.diagnostic = Some(strip_type(&value)),
                "original-envelope-id" => report.original_envelope_id = Some(xtext_decode(&value)),
                _ => {}
            }
        }
        if block.recipient.is_some() || block.action.is_some() || block.status.is_some() {
            blocks.push(block);
        }
    }
    name_failures(&blocks, report);
}

/// Names in `report` the first of `blocks` that failed for good (else the first), and lists
/// every such one in `failed_recipients`. No blocks: `report` stays as it is.
fn name_failures(blocks: &[RecipientStatus], report: &mut DeliveryReport) {
    let mut failed: Vec<String> = Vec::new();
    for recipient in blocks.iter().filter(|b| b.is_permanent_failure()).filter_map(|b| b.recipient.as_ref()) {
        if !failed.iter().any(|f| f.eq_ignore_ascii_case(recipient)) {
            failed.push(recipient.clone());
        }
    }
    let Some(named) = blocks.iter().find(|b| b.is_permanent_failure()).or(blocks.first()) else { return };
    if let Some(action) = &named.action {
        report.action = action.clone();
    }
    if let Some(status) = &named.status {
        report.status = status.clone();
    }
    report.recipient = named.recipient.clone().or(report.recipient.take());
    report.diagnostic = named.diagnostic.clone();
    if !failed.is_empty() {
        report.failed_recipients = failed;
    }
}

/// An RFC 3461 xtext value (`+XX` stands for the byte 0xXX), as the envelope id travels; a
/// malformed escape is kept as it is.
fn xtext_decode(value: &str) -> String {
    let mut out = Vec::with_capacity(value.len());
    let mut bytes = value.bytes();
    while let Some(b) = bytes.next() {
        if b == b'+' {
            let hex: Vec<u8> = bytes.clone().take(2).collect();
            if hex.len() == 2 && hex.iter().all(u8::is_ascii_hexdigit) {
                let digit = |d: u8| (d as char).to_digit(16).expect("a hex digit") as u8;
                out.push(digit(hex[0]) << 4 | digit(hex[1]));
                bytes.nth(1);
                continue;
            }
        }
        out.push(b);
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn auto_reply_subjects_are_phrases_at_the_start_not_words_anywhere() {
        for auto in [
            "Automatic reply: Your order 42",
            "Out of Office",
            "Out of office: back on Monday",
            "AUTOREPLY:Ihre Anfrage",
            "Abwesenheitsnotiz: Ihre Anfrage",
            "Réponse automatique : votre demande",
            "Automatyczna odpowiedź: zamówienie",
            "Automatická odpověď: objednávka",
            "  Vacation  ",
            "Risposta automatica: ordine 42",
            "Automatisch antwoord: bestelling 42",
            "Resposta automática: pedido 42",
            "Automatiskt svar: order 42",
            "Fraværende",
        ] {
            assert!(super::is_auto_subject(auto), "{auto}");
        }
        for customer in [
            "Question about my vacation booking",
            "Vacation rental 12 - is it free in May?",
            "Absence of the refund for order 42",
            "Afwezigheid van terugbetaling",
            "Fuori sede la consegna?",
            "Re: Out of office hours support?",
            "Why did I get an automatic reply?",
            "",
        ] {
            assert!(!super::is_auto_subject(customer), "{customer}");
        }
    }

    /// One report about two recipients of a mail (To and Cc): the first that failed for good is
    /// the one named, every failed one is listed (once, as our mail named it: its
    /// Original-Recipient), a delayed one is not.
    #[test]
    fn a_report_on_several_recipients_lists_each_that_failed() {
        let status = "Reporting-MTA: dns; mx.example.com\r\nOriginal-Envelope-Id: msg_01JABC\r\n\r\n\
                      Final-Recipient: rfc822; later@example.org\r\nAction: delayed\r\nStatus: 4.4.1\r\n\r\n\
                      Final-Recipient: rfc822; gone@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n\
                      Diagnostic-Code: smtp; 550 5.1.1 unknown user\r\n\r\n\
                      Original-Recipient: rfc822; Old@Example.org\r\nFinal-Recipient: rfc822; new@example.org\r\n\
                      Action: failed\r\nStatus: 5.2.1\r\n\r\n\
                      Final-Recipient: rfc822; <GONE@example.org>\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n\
                      Original-Recipient: rfc822; x400@example.org\r\nFinal-Recipient: x400; /S=x400/C=GB/\r\n\
                      Action: failed\r\nStatus: 5.1.1\r\n";
        let mail = format!(
            "From: MAILER-DAEMON@example.com\r\nTo: support@example.com\r\nSubject: Undelivered\r\n\
             MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n\
             --b\r\nContent-Type: text/plain\r\n\r\nSorry.\r\n\
             --b\r\nContent-Type: message/delivery-status\r\n\r\n{status}\r\n--b--\r\n"
        );
        let message = mail_parser::MessageParser::default().parse(mail.as_bytes()).unwrap();
        let report = super::delivery_report(&message).unwrap();
        assert_eq!((report.action.as_str(), report.status.as_str()), ("failed", "5.1.1"));
        assert_eq!(report.recipient.as_deref(), Some("gone@example.org"));
        assert_eq!(report.diagnostic.as_deref(), Some("550 5.1.1 unknown user"));
        assert_eq!(report.failed_recipients, ["gone@example.org", "Old@Example.org", "x400@example.org"]);
        assert_eq!(report.original_envelope_id.as_deref(), Some("msg_01JABC"));
    }

    /// A plain-text bounce without a line that introduces the original is read whole only when
    /// it shows itself a bounce another way; a postmaster writing in person, or a server saying
    /// a mail arrived, reports no failure.
    #[test]
    fn a_mailer_daemons_plain_text_is_a_bounce_only_when_it_says_so() {
        let mail = |subject: &str, body: &str| {
            format!("From: postmaster@example.net\r\nTo: support@example.com\r\nSubject: {subject}\r\n\r\n{body}")
        };
        let read = |text: String| {
            let message = mail_parser::MessageParser::default().parse(text.as_bytes()).unwrap();
            super::delivery_report(&message).map(|r| (r.recipient.clone(), r.is_permanent_failure()))
        };
        let failure = "Delivery to the following recipients failed permanently:\r\n\r\n   * ann@example.org\r\n";
        assert_eq!(
            read(mail("Delivery Status Notification (Failure)", failure)),
            Some((Some("ann@example.org".into()), true))
        );
        let delay = "The message has not yet been delivered to the following addresses:\r\n\r\n  <ann@example.org>\r\n";
        assert_eq!(
            read(mail("Warning: message delayed 4 hours", delay)),
            Some((Some("ann@example.org".into()), false))
        );
        let in_person = "Hello, our user cannot log in to your shop:\r\n\r\nann@example.org\r\n\r\nCan you help?\r\n";
        assert_eq!(read(mail("Question about a customer", in_person)), None);
        let delivered = "Your message was successfully delivered to:\r\n\r\nann@example.org\r\n";
        assert_eq!(read(mail("Delivery Status Notification (Success)", delivered)), None);
    }

    /// A delivery-status part under `multipart/mixed` (OpenSMTPD's bounces) makes a report only
    /// in a mailer daemon's mail: a customer attaching one is writing to us.
    #[test]
    fn a_status_part_outside_multipart_report_counts_in_a_mailer_daemons_mail_only() {
        let mail = |from: &str| {
            format!(
                "From: {from}\r\nTo: support@example.com\r\nSubject: Delivery status notification: error\r\n\
                 MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
                 --b\r\nContent-Type: text/plain\r\n\r\nSee below.\r\n\
                 --b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\n\
                 Final-Recipient: rfc822; gone@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n--b--\r\n"
            )
        };
        let daemon = mail("Mailer Daemon <MAILER-DAEMON@mx.example.net>");
        let message = mail_parser::MessageParser::default().parse(daemon.as_bytes()).unwrap();
        let report = super::delivery_report(&message).expect("a mailer daemon's report");
        assert_eq!((report.recipient.as_deref(), report.status.as_str()), (Some("gone@example.org"), "5.1.1"));
        let customer = mail("Ann <ann@example.org>");
        let message = mail_parser::MessageParser::default().parse(customer.as_bytes()).unwrap();
        assert_eq!(super::delivery_report(&message), None);
    }

    #[test]
    fn envelope_ids_are_decoded_from_xtext() {
        assert_eq!(super::xtext_decode("msg_01JABC"), "msg_01JABC");
        assert_eq!(super::xtext_decode("a+2Bb+3Dc"), "a+b=c");
        assert_eq!(super::xtext_decode("odd+4"), "odd+4");
        assert_eq!(super::xtext_decode("sign++41"), "sign+A");
    }
}
