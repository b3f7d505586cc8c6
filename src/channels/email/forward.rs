//! Mail a colleague forwarded to us: who wrote it first.
//!
//! An agent who finds a customer's mail in their own mailbox forwards it to the support
//! address; the helpdesk should see the customer's conversation, not the agent's (the
//! "forwarded ticket" of every hosted helpdesk). A mail from one of the channel's `forwarders`
//! whose subject says it is a forward (`Fwd:`, `FW:`, `WG:`, `TR:`, `PD:` …) is read for the
//! original sender: the From of the mail it attaches (Outlook's "Forward as attachment"), else
//! the From line of the forwarded header block its text quotes, as Gmail, Outlook, Apple Mail
//! and Thunderbird write it in any of our languages. A reply that quotes a customer is no
//! forward: its subject says `Re:`, and Outlook opens a quoted reply and a forward alike. When
//! the agent took `Fwd:` out of the subject, only an opening that says "forwarded" in so many
//! words counts (Gmail's, Apple Mail's, Thunderbird's).
//!
//! The original's time is read the same way: the attached mail's `Date`, or the block's date
//! line (`Date:`, `Sent:`, `Gesendet:` …, see `written_date`), so the helpdesk sees when the
//! customer wrote, not when the colleague passed it on.

use mail_parser::{Message, MessageParser, PartType};

use super::phrases::{FORWARD_LINES, FORWARD_TITLES, FROM_FIELDS, SENT_FIELDS};
use super::written_date;
use crate::model::Party;
use crate::stitch::email::{is_forward_subject, is_reply_subject};

/// How many lines after the opening the forwarded header block may put its From line
/// (Thunderbird puts Subject and Date first).
const HEADER_BLOCK_LINES: usize = 8;

/// The mail a colleague forwarded: who wrote it, and when (ms), if its date can be read.
#[derive(Debug, PartialEq)]
pub struct Original {
    pub sender: Party,
    pub sent_at: Option<i64>,
}

/// The mail `message` forwards, when it is a forward and the original's sender can be read;
/// `ours` tells our own addresses, which are never it.
pub fn original(message: &Message<'_>, text: Option<&str>, ours: impl Fn(&str) -> bool) -> Option<Original> {
    let subject = message.subject().unwrap_or("");
    // A reply quotes what it answers, a forwarded header block too (Outlook quotes without `>`).
    if is_reply_subject(subject) {
        return None;
    }
    // A time written without a zone is the forwarding client's local time, the zone of the
    // forward's own Date.
    let local_offset = message.date().filter(|d| d.is_valid()).map(|d| {
        let offset = i64::from(d.tz_hour) * 3600 + i64::from(d.tz_minute) * 60;
        if d.tz_before_gmt {
            -offset
        } else {
            offset
        }
    });
    let inline = || text.and_then(|text| inline_original(text, local_offset));
    let found = if is_forward_subject(subject) {
        let attached = message.attachments().find_map(|part| match &part.body {
            PartType::Message(original) => Some(Original {
                sender: original.from()?.first().and_then(party)?,
                sent_at: original.date().filter(|d| d.is_valid()).map(|d| d.to_timestamp() * 1000),
            }),
            _ => None,
        });
        attached.or_else(|| inline().map(|(original, _)| original))
    } else {
        inline().filter(|(_, says_forwarded)| *says_forwarded).map(|(original, _)| original)
    };
    found.filter(|o| !ours(&o.sender.address))
}

/// The From (and date) of the first forwarded header block in `text`, and whether its opening
/// says "forwarded" in words.
fn inline_original(text: &str, local_offset: Option<i64>) -> Option<(Original, bool)> {
    let lines: Vec<&str> = text.lines().collect();
    let (opening, says_forwarded) = lines.iter().enumerate().find_map(|(i, line)| Some((i, opening(line)?)))?;
    let block: Vec<&str> = lines[opening + 1..]
        .iter()
        .map(|line| line.trim().trim_start_matches(['>', ' ', '*']))
        .filter(|line| !line.is_empty())
        .take(HEADER_BLOCK_LINES)
        .collect();
    let sender = labelled(&block, FROM_FIELDS, sender_in)?;
    let sent_at = labelled(&block, SENT_FIELDS, |value| written_date::parse(value.trim(), local_offset));
    Some((Original { sender, sent_at }, says_forwarded))
}

/// What `read` makes of the value of the first line of `block` that starts with one of
/// `labels` and reads.
fn labelled<T>(block: &[&str], labels: &[&str], read: impl Fn(&str) -> Option<T>) -> Option<T> {
    block.iter().find_map(|line| {
        let value = labels.iter().find_map(|label| after_label(line, label))?;
        read(value.trim_start_matches('*'))
    })
}

/// `line` after `label` (lowercase), compared a character at a time regardless of case. The
/// lowercased line cannot measure the label in the line: lowercasing may change a character's
/// length (the Kelvin sign K, three bytes, lowercases to k, one).
fn after_label<'a>(line: &'a str, label: &str) -> Option<&'a str> {
    let mut chars = line.chars();
    for wanted in label.chars() {
        chars.next()?.to_lowercase().eq([wanted]).then_some(())?;
    }
    Some(chars.as_str())
}

/// Whether `line` opens a forwarded or quoted mail, and if so whether it says "forwarded".
fn opening(line: &str) -> Option<bool> {
    let line = line.trim().to_lowercase();
    if FORWARD_LINES.contains(&line.as_str()) {
        return Some(true);
    }
    let dashed = line.starts_with("-----") || line.starts_with("_____");
    dashed.then(|| FORWARD_TITLES.iter().any(|words| line.contains(words)))
}

/// `Ann Smith <ann@example.org>`, `ann@example.org`, or Outlook's `Ann Smith
/// [mailto:ann@example.org]`, as a party.
fn sender_in(value: &str) -> Option<Party> {
    let value = value.trim();
    if let Some((name, rest)) = value.split_once("[mailto:") {
        let address = rest.split(']').next()?.trim();
        let name = name.trim().trim_matches('"').trim();
        return plausible(address)
            .then(|| Party { address: address.to_owned(), name: (!name.is_empty()).then(|| name.to_owned()) });
    }
    let header = format!("From: {value}\r\n\r\n");
    let parsed = MessageParser::default().parse_headers(header.as_bytes())?;
    parsed.from()?.first().and_then(party)
}

fn party(address: &mail_parser::Addr<'_>) -> Option<Party> {
    let email = address.address()?.trim();
    plausible(email).then(|| Party {
        address: email.to_owned(),
        name: address.name().map(str::trim).filter(|n| !n.is_empty()).map(str::to_owned),
    })
}

fn plausible(address: &str) -> bool {
    address.rsplit_once('@').is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
        && !address.contains(char::is_whitespace)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a forward from Bea, whose client is an hour east of UTC, with `subject` and `body`
    /// forwards.
    fn forwarded(subject: &str, body: &str) -> Option<Original> {
        let mail = format!(
            "From: Bea <bea@example.com>\r\nTo: support@example.com\r\nSubject: {subject}\r\n\
             Date: Mon, 30 Nov 2026 09:00:00 +0100\r\n\r\n{body}"
        );
        let message = MessageParser::default().parse(mail.as_bytes()).unwrap();
        let text = message.body_text(0).map(|t| t.into_owned());
        original(&message, text.as_deref(), |a| a == "support@example.com")
    }

    fn sender(subject: &str, body: &str) -> Option<(String, Option<String>)> {
        forwarded(subject, body).map(|o| (o.sender.address, o.sender.name))
    }

    #[test]
    fn the_original_sender_is_read_as_each_client_forwards() {
        let ann = Some(("ann@example.org".to_owned(), Some("Ann Smith".to_owned())));
        for (client, subject, body) in [
            ("Gmail", "Fwd: Order 5", "Please take this.\r\n\r\n---------- Forwarded message ---------\r\nFrom: Ann Smith <ann@example.org>\r\nDate: Mon, 23 Nov 2026 at 10:00\r\nSubject: Order 5\r\nTo: <bea@example.com>\r\n\r\nWhere is it?\r\n"),
            ("Gmail, German", "WG: Bestellung 5", "---------- Weitergeleitete Nachricht ---------\r\nVon: Ann Smith <ann@example.org>\r\nDate: Mo., 23. Nov. 2026 um 10:00 Uhr\r\n\r\nWo ist sie?\r\n"),
            ("Outlook", "FW: Order 5", "FYI\r\n\r\n________________________________\r\nFrom: Ann Smith <ann@example.org>\r\nSent: Monday, November 23, 2026 10:00 AM\r\nTo: Bea\r\nSubject: Order 5\r\n\r\nWhere is it?\r\n"),
            ("Outlook, plain text", "TR: Commande 5", "-----Message d'origine-----\r\nDe : Ann Smith [mailto:ann@example.org]\r\nEnvoyé : lundi 23 novembre 2026 10:00\r\n\r\nOù est-elle ?\r\n"),
            ("Outlook, Polish, bold labels", "PD: Zamówienie 5", "________________________________\r\n*Od:* Ann Smith <ann@example.org>\r\n*Wysłane:* poniedziałek\r\n\r\nGdzie jest?\r\n"),
            ("Apple Mail", "Fwd: Order 5", "Begin forwarded message:\r\n\r\nFrom: Ann Smith <ann@example.org>\r\nSubject: Order 5\r\nDate: 23 November 2026 at 10:00:00 CET\r\n\r\nWhere is it?\r\n"),
            ("Thunderbird", "Fwd: Order 5", "\r\n\r\n-------- Forwarded Message --------\r\nSubject: \tOrder 5\r\nDate: \tMon, 23 Nov 2026 10:00:00 +0100\r\nFrom: \tAnn Smith <ann@example.org>\r\nTo: \tbea@example.com\r\n\r\nWhere is it?\r\n"),
        ] {
            assert_eq!(sender(subject, body), ann, "{client}");
            // Each wrote Ann's time as Bea's client shows it, 10:00 an hour east of UTC (Outlook
            // in Polish wrote the weekday only: no time).
            let sent_at = forwarded(subject, body).unwrap().sent_at.map(crate::model::time::rfc3339);
            let expected = (!client.contains("Polish")).then(|| "2026-11-23T09:00:00.000Z".to_owned());
            assert_eq!(sent_at, expected, "{client}");
        }
    }

    #[test]
    fn only_a_forward_with_a_readable_original_sender_counts() {
        let quoted = "Sure.\r\n\r\n________________________________\r\nFrom: Ann Smith <ann@example.org>\r\nSent: Monday\r\n\r\nWhere is it?\r\n";
        assert_eq!(sender("RE: Order 5", quoted), None, "a reply quoting the customer");
        let history = "Done.\r\n\r\n________________________________\r\nFrom: Carl\r\n\r\n---------- Forwarded message ---------\r\nFrom: Ann Smith <ann@example.org>\r\n\r\nx\r\n";
        assert_eq!(sender("RE: Fwd: Order 5", history), None, "a reply to a forward quotes its opening");
        assert_eq!(sender("Order 5", quoted), None, "no forward in the subject");
        // With `Fwd:` taken out, an opening that says "forwarded" still tells.
        let gmail = "Over to you.\r\n\r\n---------- Weitergeleitete Nachricht ---------\r\nVon: Ann Smith <ann@example.org>\r\n\r\nx\r\n";
        assert_eq!(sender("Bestellung 5", gmail).map(|(address, _)| address).as_deref(), Some("ann@example.org"));
        let apple = "Begin forwarded message:\r\n\r\nFrom: Ann Smith <ann@example.org>\r\n\r\nx\r\n";
        assert_eq!(sender("Order 5", apple).map(|(address, _)| address).as_deref(), Some("ann@example.org"));
        assert_eq!(sender("Fwd: Order 5", "Just my own text.\r\n"), None, "nothing forwarded in it");
        assert_eq!(sender("Fwd: Order 5", "-----Original Message-----\r\nFrom: Ann Smith\r\n"), None, "no address");
        let ours = "---------- Forwarded message ---------\r\nFrom: Support <support@example.com>\r\n\r\nx\r\n";
        assert_eq!(sender("Fwd: Our answer", ours), None, "our own mail forwarded back");
    }

    /// A label whose lowercase is shorter than itself (a Kelvin sign for its K) is still a
    /// label, and measured in the line as written.
    #[test]
    fn labels_are_matched_a_character_at_a_time() {
        let kelvin =
            "Begin forwarded message:\r\nFrom: Ann <ann@example.org>\r\nS\u{212A}ICKAT: 23.11.2026 10:00\r\n\r\nx\r\n";
        let found = forwarded("Fwd: Order 5", kelvin).unwrap();
        assert_eq!(found.sent_at.map(crate::model::time::rfc3339).as_deref(), Some("2026-11-23T09:00:00.000Z"));
        assert_eq!(after_label("FRÅN: Ann", "från:"), Some(" Ann"));
        assert_eq!(after_label("Fr", "från:"), None);
    }

    #[test]
    fn an_attached_original_names_its_sender() {
        let mail = "From: Bea <bea@example.com>\r\nTo: support@example.com\r\nSubject: FW: Order 5\r\n\
                    MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
                    --b\r\nContent-Type: text/plain\r\n\r\nSee the attached mail.\r\n\
                    --b\r\nContent-Type: message/rfc822\r\n\r\n\
                    From: Ann Smith <ann@example.org>\r\nTo: bea@example.com\r\nSubject: Order 5\r\n\
                    Date: Mon, 23 Nov 2026 17:00:00 +0100\r\n\r\nWhere is it?\r\n\
                    --b--\r\n";
        let message = MessageParser::default().parse(mail.as_bytes()).unwrap();
        let found = original(&message, Some("See the attached mail."), |_| false).unwrap();
        let sender = &found.sender;
        assert_eq!((sender.address.as_str(), sender.name.as_deref()), ("ann@example.org", Some("Ann Smith")));
        assert_eq!(found.sent_at.map(crate::model::time::rfc3339).as_deref(), Some("2026-11-23T16:00:00.000Z"));
    }
}
