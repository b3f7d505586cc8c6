//! What makes two fetched mails the same mail.
//!
//! One mail can reach the mailbox more than once: written To one of our addresses and Cc
//! another that a different system forwards here, sent through a distribution or mailing list
//! that also names us, relayed again by a forwarder (freescout#5485, #5638). Every delivery adds
//! its own trace fields on the way (Received, Return-Path, Delivered-To, spam and authentication
//! verdicts), so the copies' bytes differ while what their author wrote is the same; a hash of
//! the whole source took each copy for a new mail, and the customer's message showed twice.
//!
//! A mail with a Message-ID is therefore known by what its author wrote: the originator,
//! recipient, identification and MIME fields of its header (unfolded, whitespace collapsed, in
//! a fixed order) and its body. Two different mails that share a Message-ID (a sender reusing
//! one, freescout#5591) differ in their Date or body and stay two. A mail without a Message-ID
//! is known by its whole source, as before: nothing says that two such deliveries are one mail
//! (a script's identical alerts are each wanted).
//!
//! Mail stored by a version before this one is re-keyed from its kept source once, in the
//! background (`pipeline/rekey.rs`); until then, and for mail kept without its source, it is
//! also looked up by its old key (`MailKeys::superseded`).

use sha2::{Digest, Sha256};

use crate::store::{hex, Blobs};

/// The header fields an author writes and no server on the way adds or changes, in the order
/// they are hashed. Trace and verdict fields (Received, Return-Path, Delivered-To,
/// Authentication-Results, DKIM-Signature, X-Spam-…), list fields and Resent-… are left out:
/// they tell deliveries apart, not mails.
const AUTHOR_FIELDS: [&str; 13] = [
    "message-id",
    "date",
    "from",
    "sender",
    "reply-to",
    "to",
    "cc",
    "subject",
    "in-reply-to",
    "references",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
];

/// What a fetched mail is known by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MailKeys {
    /// Its dedup key: `mail-sha256:<hex>` of what the author wrote, or, without a Message-ID,
    /// `sha256:<hex>` of the whole source.
    pub dedup: String,
    /// SHA-256 of the whole source, in hex: the name of its blob.
    pub source_sha256: String,
}

impl MailKeys {
    pub fn of(source: &[u8]) -> MailKeys {
        let source_sha256 = Blobs::hash(source);
        let dedup = match authored_hash(source) {
            Some(authored) => format!("mail-sha256:{authored}"),
            None => format!("sha256:{source_sha256}"),
        };
        MailKeys { dedup, source_sha256 }
    }

    /// The key the mail had before store migration 8 (its whole source's hash), when it differs
    /// from `dedup`: mail stored then is still found by it.
    pub fn superseded(&self) -> Option<String> {
        let before = format!("sha256:{}", self.source_sha256);
        (before != self.dedup).then_some(before)
    }
}

/// SHA-256 in hex of the author's header fields and the body, or `None` for a mail without a
/// Message-ID.
fn authored_hash(source: &[u8]) -> Option<String> {
    let (header, body) = split_header(source);
    let mut fields: Vec<(usize, &[u8])> = header_fields(header)
        .filter_map(|(name, value)| {
            AUTHOR_FIELDS.iter().position(|f| f.as_bytes().eq_ignore_ascii_case(name)).map(|rank| (rank, value))
        })
        .collect();
    if !fields.iter().any(|(rank, value)| *rank == 0 && !collapsed(value).is_empty()) {
        return None;
    }
    // Stable: a field given twice keeps its order.
    fields.sort_by_key(|(rank, _)| *rank);
    let mut hasher = Sha256::new();
    for (rank, value) in fields {
        hasher.update(AUTHOR_FIELDS[rank].as_bytes());
        hasher.update(b":");
        hasher.update(collapsed(value));
        hasher.update(b"\n");
    }
    hasher.update(b"\n");
    // A server on the way may add or drop a final line break.
    hasher.update(body.trim_ascii_end());
    Some(hex(&hasher.finalize()))
}

/// The header (up to the first empty line) and the body after it. A mail with no empty line is
/// all header.
fn split_header(source: &[u8]) -> (&[u8], &[u8]) {
    let mut line_start = 0;
    while line_start < source.len() {
        let line_end = source[line_start..].iter().position(|&b| b == b'\n').map(|i| line_start + i + 1);
        let line = &source[line_start..line_end.unwrap_or(source.len())];
        if line == b"\n" || line == b"\r\n" {
            return (&source[..line_start], &source[line_start + line.len()..]);
        }
        match line_end {
            Some(end) => line_start = end,
            None => break,
        }
    }
    (source, &[])
}

/// The header's fields as (name, raw value with its folding); lines without a colon (an mbox
/// `From ` line, garbage) are passed over.
fn header_fields(header: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    let mut rest = header;
    std::iter::from_fn(move || loop {
        if rest.is_empty() {
            return None;
        }
        // A field runs on over every following line that starts with a space or tab.
        let mut end = 0;
        loop {
            end += rest[end..].iter().position(|&b| b == b'\n').map_or(rest.len() - end, |i| i + 1);
            if end >= rest.len() || !matches!(rest[end], b' ' | b'\t') {
                break;
            }
        }
        let (field, tail) = rest.split_at(end);
        rest = tail;
        let Some(colon) = field.iter().position(|&b| b == b':') else { continue };
        // Obsolete syntax allows space before the colon ("Subject :"), never inside a name.
        let name = field[..colon].trim_ascii_end();
        if !name.is_empty() && !name.iter().any(u8::is_ascii_whitespace) {
            return Some((name, &field[colon + 1..]));
        }
    })
}

/// `value` unfolded, with every run of whitespace one space, trimmed.
fn collapsed(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    for word in value.split(|b| b.is_ascii_whitespace()).filter(|w| !w.is_empty()) {
        if !out.is_empty() {
            out.push(b' ');
        }
        out.extend_from_slice(word);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRITTEN: &str = "From: Ann <ann@example.org>\r\nTo: support@example.com\r\nCc: sales@example.com\r\nSubject: Order 5 has not\r\n arrived\r\nMessage-ID: <ann-1@example.org>\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nWhere is it?\r\n";

    /// `written` as one delivery left it in the mailbox: that delivery's `trace` fields before it.
    fn delivered(trace: &str, written: &str) -> Vec<u8> {
        format!("{trace}{written}").into_bytes()
    }

    #[test]
    fn two_deliveries_of_one_mail_are_one_mail() {
        let direct = delivered(
            "Return-Path: <ann@example.org>\r\nDelivered-To: support@example.com\r\nReceived: from mx.example.net by imap.example.com with LMTP id 1; Mon, 23 Nov 2026 10:00:02 +0000\r\nX-Spam-Status: No, score=-0.1\r\n",
            WRITTEN,
        );
        // Through the sales@ forwarder: more trace fields, the verdicts of another filter, a
        // Subject refolded by a server that rewrote the header, a final line break added.
        let forwarded = delivered(
            "Return-Path: <SRS0=ab=cd=example.org=ann@fwd.example.net>\r\nDelivered-To: support@example.com\r\nReceived: from fwd.example.net by imap.example.com with LMTP id 2; Mon, 23 Nov 2026 10:00:09 +0000\r\nReceived: from mx.example.org by fwd.example.net; Mon, 23 Nov 2026 10:00:05 +0000\r\nX-Forwarded-To: support@example.com\r\nAuthentication-Results: fwd.example.net; dkim=pass\r\nX-Spam-Status: No, score=1.3\r\n",
            &WRITTEN.replace("Subject: Order 5 has not\r\n arrived", "subject:   Order 5 has not arrived").replace("Where is it?\r\n", "Where is it?\r\n\r\n"),
        );
        let (a, b) = (MailKeys::of(&direct), MailKeys::of(&forwarded));
        assert!(a.dedup.starts_with("mail-sha256:"), "{a:?}");
        assert_eq!(a.dedup, b.dedup);
        assert_ne!(a.source_sha256, b.source_sha256, "two sources, two blobs");
        assert_eq!(a.source_sha256, Blobs::hash(&direct));
        assert_eq!(a.superseded(), Some(format!("sha256:{}", a.source_sha256)), "stored before migration 8 by it");
    }

    #[test]
    fn mails_that_share_a_message_id_but_differ_in_what_was_written_stay_apart() {
        let original = MailKeys::of(WRITTEN.as_bytes()).dedup;
        for (what, changed) in [
            ("date", WRITTEN.replace("10:00:00", "10:00:01")),
            ("body", WRITTEN.replace("Where is it?", "Where is it now?")),
            ("sender", WRITTEN.replace("ann@example.org>", "bob@example.org>")),
            ("recipients", WRITTEN.replace("Cc: sales@example.com", "Cc: billing@example.com")),
            ("subject", WRITTEN.replace("arrived", "shipped")),
            ("type", WRITTEN.replace("utf-8", "iso-8859-2")),
        ] {
            assert_ne!(MailKeys::of(changed.as_bytes()).dedup, original, "a different {what}");
        }
        // What no author writes tells nothing: a list's or a server's fields.
        let listed = format!("List-Id: <orders.example.com>\r\nX-Mailer-Queue: 7\r\n{WRITTEN}");
        assert_eq!(MailKeys::of(listed.as_bytes()).dedup, original);
        // Field names are case-insensitive; the order of different fields is the server's.
        let reordered = WRITTEN.replace("Message-ID: <ann-1@example.org>\r\n", "").replacen(
            "From:",
            "MESSAGE-ID: <ann-1@example.org>\r\nFrom:",
            1,
        );
        assert_eq!(MailKeys::of(reordered.as_bytes()).dedup, original);
    }

    /// Without a Message-ID two deliveries cannot be told from two identical mails (a script's
    /// repeated alert): the whole source decides, as it did before.
    #[test]
    fn a_mail_without_a_message_id_is_known_by_its_whole_source() {
        let alert = "From: cron@example.org\r\nTo: support@example.com\r\nSubject: disk full\r\n\r\n/var is full\r\n";
        for source in [alert.to_owned(), alert.replace("Subject", "Message-ID:\r\nSubject"), String::new()] {
            let keys = MailKeys::of(source.as_bytes());
            assert_eq!(keys.dedup, format!("sha256:{}", Blobs::hash(source.as_bytes())), "{source:?}");
            assert_eq!(keys.superseded(), None);
        }
        let first = delivered("Received: by mx; Mon, 23 Nov 2026 10:00:00 +0000\r\n", alert);
        let second = delivered("Received: by mx; Mon, 23 Nov 2026 11:00:00 +0000\r\n", alert);
        assert_ne!(MailKeys::of(&first).dedup, MailKeys::of(&second).dedup);
    }

    #[test]
    fn odd_headers_are_read_without_error() {
        // An mbox "From " line, a stray continuation line, a line without a colon, LF endings,
        // obsolete space before a colon, no body at all.
        let odd = "From ann@example.org Mon Nov 23 10:00:00 2026\n continued nothing\ngarbage line\nMessage-ID : <x@example.org>\nFrom: ann@example.org";
        let keys = MailKeys::of(odd.as_bytes());
        assert!(keys.dedup.starts_with("mail-sha256:"), "{keys:?}");
        let header_only = "Message-ID: <x@example.org>\nFrom: ann@example.org\n\n";
        assert_eq!(MailKeys::of(header_only.as_bytes()).dedup, keys.dedup, "the same fields, no body either way");
        assert_eq!(split_header(b"A: 1\r\n\r\nbody\r\n\r\nmore"), (&b"A: 1\r\n"[..], &b"body\r\n\r\nmore"[..]));
        assert_eq!(split_header(b"A: 1\nB: 2"), (&b"A: 1\nB: 2"[..], &b""[..]));
    }
}
