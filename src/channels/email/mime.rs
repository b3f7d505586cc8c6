//! A raw mail (RFC 5322 bytes) → `RawInbound`, with mail-parser: text and HTML parts in any
//! charset, quoted-printable and base64, nested multiparts, attachments (over the limit: listed
//! in `attachments_skipped`, not dropped), threading headers.
//!
//! Pure and total: a mail that does not parse still becomes a message (subject "(unparseable
//! message)", the raw source as an attachment) rather than an error. Every mail's source is
//! kept as its `source` too (unless the channel sets `keep_source = false`): MIME parsing is
//! lenient, and a malformed part it skipped is still in there.

use std::borrow::Cow;

use bytes::Bytes;
use mail_parser::decoders::base64::base64_decode;
use mail_parser::decoders::charsets::map::charset_decoder;
use mail_parser::decoders::html::text_to_html;
use mail_parser::decoders::quoted_printable::quoted_printable_decode;
use mail_parser::{Address, HeaderValue, Message, MessageParser, MessagePart, MimeHeaders, PartType};

use super::authentication;
use super::calendar;
use super::config::EmailChannelConfig;
use super::dedup::MailKeys;
use super::forward;
use super::html_text::html_to_text;
use super::openpgp;
use super::openpgp_decrypt;
use super::reply::reply_text;
use super::report;
use super::smime;
use super::tnef;
use crate::channels::{RawAttachment, RawInbound};
use crate::model::{Party, SkippedAttachment};
use crate::stitch::email::{body_token, normalize_subject, reply_token, MailThreading};
use crate::stitch::identity_for;

/// Default per-attachment limit when the channel sets none.
pub const DEFAULT_MAX_ATTACHMENT: usize = 25 * 1024 * 1024;

/// Content types of the signature part of a `multipart/signed` mail (RFC 8551, RFC 3156).
const DETACHED_SIGNATURES: &[&str] =
    &["application/pkcs7-signature", "application/x-pkcs7-signature", "application/pgp-signature"];

/// How far a forwarded original's time may lie after the forward's own Date (the two clocks
/// need not agree) before it is taken for misread.
const LATER_CLOCK_MS: i64 = 60 * 60 * 1000;

fn parties(address: Option<&Address<'_>>) -> Vec<Party> {
    address
        .map(|a| {
            a.iter()
                .filter_map(|addr| {
                    let address = addr.address()?.trim().to_owned();
                    (!address.is_empty())
                        .then(|| Party { address, name: addr.name().map(str::to_owned).filter(|n| !n.is_empty()) })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `X-Original-From`: Google Groups' copy of the sender's From when it rewrote From to the
/// group's own address. mail-parser reads unknown headers raw; the value is read as a From.
fn original_from(message: &Message<'_>) -> Option<Party> {
    let raw = message.header_raw("X-Original-From")?;
    let header = format!("From:{raw}\r\n\r\n");
    let parsed = MessageParser::default().parse_headers(header.as_bytes())?;
    parties(parsed.from()).into_iter().next()
}

fn id_list(value: &HeaderValue<'_>) -> Vec<String> {
    match value {
        HeaderValue::Text(t) => vec![t.to_string()],
        HeaderValue::TextList(list) => list.iter().map(|t| t.to_string()).collect(),
        _ => Vec::new(),
    }
}

/// The source as a blob (shares `bytes`, no copy), named by the hash `keys` hold.
fn source_attachment(bytes: &Bytes, keys: &MailKeys) -> RawAttachment {
    RawAttachment {
        filename: Some("message.eml".into()),
        content_id: None,
        content_type: "message/rfc822".into(),
        bytes: bytes.clone(),
        sha256: Some(keys.source_sha256.clone()),
    }
}

/// `source`: the mail as fetched; kept as the message's `source` without being copied.
pub fn to_raw_inbound(channel: &EmailChannelConfig, source: impl Into<Bytes>) -> RawInbound {
    let source: Bytes = source.into();
    let keys = MailKeys::of(&source);
    guarded(channel, &source, keys, translate)
}

/// A mail over the channel's `max_mail_bytes`, of which only `header` was fetched: a message
/// all the same (sender, subject, threading), its body listed under `attachments_skipped`.
pub fn oversized_to_raw_inbound(channel: &EmailChannelConfig, header: impl Into<Bytes>, size: u64) -> RawInbound {
    let header: Bytes = header.into();
    let keys = MailKeys::of(&header);
    let mut raw = guarded(channel, &header, keys, translate);
    // What a header-only parse keeps as a readable-nothing fallback is the header, not the mail.
    raw.attachments.clear();
    raw.source = None;
    raw.attachments_skipped.push(SkippedAttachment {
        filename: Some("message.eml".into()),
        content_type: Some("message/rfc822".into()),
        size: Some(size),
        reason: format!(
            "the mail is larger than the channel's max_mail_bytes of {}: only its header was fetched; the mail stays on the server",
            channel.max_mail_bytes
        ),
    });
    raw
}

/// Runs `translate`. A panic in it (a parser bug some input triggers) must not stop the folder:
/// the same mail would fail again at every retry and nothing after it would ever be read. The
/// mail is kept whole instead, as an unparseable message with its source, and reading goes on.
pub(super) fn guarded(
    channel: &EmailChannelConfig,
    source: &Bytes,
    keys: MailKeys,
    translate: impl FnOnce(&EmailChannelConfig, &Bytes, MailKeys) -> RawInbound,
) -> RawInbound {
    let attempt = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| translate(channel, source, keys.clone())));
    attempt.unwrap_or_else(|_| {
        tracing::error!(channel = %channel.id, key = keys.dedup, "MIME parsing panicked on this mail (a parser bug); kept whole as an unparseable message");
        unparseable(channel, source, keys)
    })
}

/// Whether `part` only shows the protected header fields of an encrypted mail to readers that
/// do not know them (Enigmail's and Thunderbird's `text/rfc822-headers; protected-headers="v1"`
/// part: "Subject: …"): the subject is read from the header itself, and this is no text of
/// the sender's.
fn is_header_display(part: &MessagePart<'_>) -> bool {
    part.content_type().is_some_and(|c| c.subtype().is_some_and(|s| s.eq_ignore_ascii_case("rfc822-headers")))
        && openpgp_decrypt::declares_protected_headers(part)
}

/// How many more layers of signing and encryption are opened inside the outermost one (Outlook's
/// signed, then encrypted, needs one).
const MAX_LAYERS: usize = 3;

fn translate(channel: &EmailChannelConfig, bytes: &Bytes, keys: MailKeys) -> RawInbound {
    let Some(message) = MessageParser::default().parse(bytes) else {
        return unparseable(channel, bytes, keys);
    };
    let mut opened = smime::open(&message, bytes, channel);
    // An opaque-signed S/MIME mail is read as the mail it signs (see `smime`), a decrypted one
    // as the mail it encrypts (`smime_decrypt`, `openpgp_decrypt`).
    let Some(mut carried) = opened.mail.take() else { return read(channel, bytes, &message, keys, opened) };
    // What it carries may be wrapped once more: signed inside the encryption, opaque (Outlook
    // signs, then encrypts) or as its own PGP/MIME layer (Thunderbird). The outermost signature
    // and encryption are the message's; the innermost mail, parsed once, is read.
    for depth in 1..=MAX_LAYERS {
        let Some(inner) = MessageParser::default().parse(&carried) else { break };
        let next = smime::open(&inner, &carried, channel);
        if opened.signature.is_none() {
            opened.sender_certificates = next.sender_certificates;
        }
        opened.signature = opened.signature.or(next.signature);
        opened.encryption = opened.encryption.or(next.encryption);
        match next.mail {
            Some(mail) if depth < MAX_LAYERS => carried = mail,
            _ => {
                opened.subject = openpgp_decrypt::protected_subject(&inner);
                return read(channel, bytes, &inner, keys, opened);
            }
        }
    }
    // What it carries cannot be parsed: the mail as fetched is read.
    read(channel, bytes, &message, keys, opened)
}

/// The message `message` makes; `bytes` is its source as fetched, `smime` what opening the
/// mail's layers found (`smime::open`: its signature, whether and how it was encrypted, the
/// protected subject).
fn read(
    channel: &EmailChannelConfig,
    bytes: &Bytes,
    message: &Message<'_>,
    keys: MailKeys,
    smime: smime::Opened,
) -> RawInbound {
    let smime::Opened { mut signature, mut encryption, subject: protected_subject, sender_certificates, .. } = smime;
    let max = channel.max_attachment_bytes.unwrap_or(DEFAULT_MAX_ATTACHMENT);
    let ours = |address: &str| channel.owns(address);
    let from =
        parties(message.from()).into_iter().next().unwrap_or(Party { address: "unknown@invalid".into(), name: None });
    // Our own list (a Google Group as support address) rewrote a DMARC-protected sender's From
    // to itself ("'Bob' via Support <support@…>"), kept the sender in X-Original-From, and may
    // set Reply-To to the group: the mail is the sender's, not ours.
    let from = match ours(&from.address).then(|| original_from(message)).flatten() {
        Some(original) if !ours(&original.address) && report::relayed_by_our_list(message, ours) => original,
        _ => from,
    };
    let to = parties(message.to());
    let cc = parties(message.cc());
    // A Reply-To naming someone else than From (not us: our own mail carries our reply token)
    // makes the mail theirs, unless the channel says otherwise.
    let reply_to = parties(message.reply_to())
        .into_iter()
        .next()
        .filter(|r| channel.use_reply_to && !r.address.eq_ignore_ascii_case(&from.address))
        .filter(|r| !channel.owns(&r.address));
    // From us, and not a form that names its customer in Reply-To.
    let sent_by_us = reply_to.is_none() && channel.owns(&from.address);
    // What the trusted receiving server found of the sender. A mail in our name that failed is
    // no agent's answer: taken for ours, it could write into any conversation as us, past the
    // sender guard. It is refused (`refusal`, below), and a forward that failed is not taken
    // for a colleague's.
    let authentication = channel.authserv_id.as_deref().and_then(|id| authentication::read(message, id));
    let forged = authentication.as_ref().filter(|a| a.failed()).map(|found| {
        let server = found.authserv_id.as_deref().unwrap_or("the receiving server");
        format!("from our own address {}, which {server} found forged ({})", from.address, found.summary())
    });
    let subject = protected_subject.or_else(|| message.subject().map(str::to_owned));
    let sent_at = message.date().filter(|d| d.is_valid()).map(|d| d.to_timestamp() * 1000).filter(|ms| *ms > 0);
    // Every body part, not the first: an iPhone sends each photo between two text parts, Apple
    // Mail between two HTML documents, and what follows the first photo is the customer's too.
    let mut text = joined_text(
        message.text_bodies().filter(|part| !is_header_display(part)).filter_map(|part| body(message, part, false)),
    );
    let mut html = joined_html(message.html_bodies().filter_map(|part| body(message, part, true)).collect());
    // Encrypted inline (mutt, Mailvelope in webmail), to our key: the text is what it encrypts.
    if let Some(opened) = text.as_deref().and_then(|t| openpgp_decrypt::inline(message, t, &from.address, channel)) {
        if opened.text.is_some() {
            text = opened.text;
            signature = signature.or(opened.signature);
            // An HTML copy of the same block would show the ciphertext.
            html = html.filter(|h| !h.contains(openpgp::ENCRYPTED));
        }
        encryption = encryption.or(Some(opened.encryption));
    }
    // Inline PGP (mutt, Enigmail) signs the text itself, which then reads as a mail client
    // shows it: without the armor and the signature block (the source keeps them).
    if signature.is_none() {
        if let Some(signed) =
            text.as_deref().and_then(|t| openpgp::inline(message, t, &from.address, &channel.openpgp_keys))
        {
            signature = Some(signed.signature);
            text = signed.text.or(text);
        }
    }

    let mut attachments = Vec::new();
    let mut skipped = Vec::new();
    // Files encrypted one by one (`openpgp_decrypt::file`): those decrypted, the key, and those
    // not, with why.
    let (mut decrypted_files, mut file_key, mut encrypted_files) = (Vec::new(), None, Vec::new());
    // (Not the encrypted body of a PGP/MIME mail that stayed encrypted.)
    let pgp_mime = openpgp::is_pgp_mime_encrypted(message);
    // The first calendar part's event (an invitation carries one; the rest would repeat it).
    let mut calendar = None;
    for part in message.attachments() {
        let filename = part.attachment_name().map(str::to_owned).or_else(|| forwarded_mail_name(part));
        let content_type = part
            .content_type()
            .map(|c| format!("{}/{}", c.ctype(), c.subtype().unwrap_or("octet-stream")))
            .unwrap_or_else(|| "application/octet-stream".into())
            .to_lowercase();
        let is_calendar = calendar::is_calendar(&content_type, filename.as_deref());
        if is_calendar {
            match (calendar::read(part.contents()), &calendar) {
                (Some(event), None) => calendar = Some(event),
                // Google Calendar sends its invitation twice: as the body's `text/calendar`
                // alternative and as `invite.ics`. One file of it is enough.
                (Some(event), Some(kept)) if &event == kept => continue,
                _ => {}
            }
        }
        // Outlook's invitation part has no name; Gmail names its own `invite.ics`, as does a
        // helpdesk's download now.
        let filename = filename.or_else(|| is_calendar.then(|| "invite.ics".to_owned()));
        // A signed mail's detached signature (S/MIME `smime.p7s`, OpenPGP `signature.asc`) is
        // no file of the sender's: mail clients show a badge, not an attachment, and a
        // helpdesk would list one on every message of a signing sender (freescout#1033). It
        // can only be checked against the exact signed bytes, which the kept source holds.
        // PGP/MIME's control part ("Version: 1", RFC 3156 §4) is no file either.
        // Nor is the display copy of an encrypted mail's protected header (`is_header_display`).
        if DETACHED_SIGNATURES.contains(&content_type.as_str())
            || (content_type == "application/pgp-encrypted" && !openpgp_decrypt::is_encrypted_message(part.contents()))
            || is_header_display(part)
        {
            continue;
        }
        let contents = part.contents();
        let content_id = part.content_id().map(|c| c.trim_matches(['<', '>']).to_owned());
        // Outlook's winmail.dat: the files in it instead, when there are any (the mail's source
        // keeps the stream itself).
        let mut unwrapped = tnef::is_tnef(&content_type, filename.as_deref()).then(|| tnef::read(contents)).flatten();
        // A mail whose body is only in winmail.dat (Outlook's "Rich Text" through Exchange):
        // the body is that one.
        let mut body_taken = false;
        if let Some(tnef) = unwrapped.as_mut().filter(|_| html.is_none() && !text.as_deref().is_some_and(readable)) {
            html = tnef.html.take();
            text = tnef.text.take().or_else(|| html.as_deref().map(html_to_text));
            body_taken = text.is_some();
        }
        let files = match unwrapped.map(|t| t.files).filter(|files| !files.is_empty()) {
            Some(files) => files
                .into_iter()
                .map(|f| {
                    let content_type = f.content_type.unwrap_or_else(|| "application/octet-stream".into());
                    (f.filename, content_type, None, Cow::Owned(f.bytes))
                })
                .collect(),
            // Its body is the message's and it carries no files: nothing else to show of it
            // (the mail's source keeps it).
            None if body_taken => Vec::new(),
            // A file encrypted on its own (`report.pdf.pgp`): read as the file it encrypts.
            None => {
                match (!pgp_mime).then(|| openpgp_decrypt::file(filename.as_deref(), contents, channel)).flatten() {
                    Some(Ok(file)) => {
                        decrypted_files.push(filename.unwrap_or_default());
                        file_key = Some(file.key);
                        vec![(Some(file.name), file.content_type.to_owned(), content_id, Cow::Owned(file.data))]
                    }
                    Some(Err(why)) => {
                        encrypted_files.push((filename.clone().unwrap_or_default(), why));
                        vec![(filename, content_type, content_id, Cow::Borrowed(contents))]
                    }
                    None => vec![(filename, content_type, content_id, Cow::Borrowed(contents))],
                }
            }
        };
        for (filename, content_type, content_id, contents) in files {
            if contents.len() > max {
                skipped.push(SkippedAttachment {
                    filename,
                    content_type: Some(content_type),
                    size: Some(contents.len() as u64),
                    reason: format!("larger than the channel's limit of {max} bytes"),
                });
                continue;
            }
            let bytes = match contents {
                Cow::Borrowed(contents) => bytes::Bytes::copy_from_slice(contents),
                Cow::Owned(contents) => bytes::Bytes::from(contents),
            };
            attachments.push(RawAttachment { sha256: None, filename, content_id, content_type, bytes });
        }
    }

    // A colleague's forward is the original sender's mail, all of it new to us (the
    // colleague's note above it too). Our own forwards (the watched Sent folder) stay ours.
    let forwarded = (channel.is_forwarder(&from.address) && !sent_by_us && forged.is_none())
        .then(|| forward::original(message, text.as_deref(), ours))
        .flatten();
    // The message is the original's, and so is its time: when the customer wrote it, as the
    // forward tells it. A time after the forward's own is misread, and the forward's is kept.
    let sent_at = forwarded
        .as_ref()
        .and_then(|original| original.sent_at)
        .filter(|at| *at > 0 && sent_at.is_none_or(|forwarded_at| *at <= forwarded_at + LATER_CLOCK_MS))
        .or(sent_at);
    let forwarded_from = forwarded.map(|original| original.sender);
    // HTML-only mail: the text is the HTML parts' text (`html_text`), a line per block.
    let reply = text.as_deref().filter(|_| forwarded_from.is_none()).map(|text| reply_text(text, Some(&from)));
    let encryption = encryption.or_else(|| openpgp::encryption(message, text.as_deref()));
    // What became of files encrypted one by one, after what became of the text.
    let encryption = match (
        encryption,
        openpgp_decrypt::files_encryption(&decrypted_files, file_key.as_deref(), &encrypted_files),
    ) {
        (Some(mut text), Some(files)) => {
            text.detail = format!("{}; {}", text.detail, files.detail);
            Some(text)
        }
        (text, files) => text.or(files),
    };
    if text.is_none() && html.is_none() && attachments.is_empty() {
        // Nothing readable came out of it: keep the source, so nothing is lost.
        attachments.push(source_attachment(bytes, &keys));
    }
    let delivery_report = report::delivery_report(message);
    let auto_reply = delivery_report.is_some() || report::is_auto_reply(message, ours);
    let message_id = message.message_id().map(str::to_owned);
    let in_reply_to = id_list(message.in_reply_to());
    let references = id_list(message.references());
    // The plus address first (a reply-all may carry it in Cc); else our marker quoted in the
    // body (from `body_token`).
    let token = to
        .iter()
        .chain(&cc)
        .find_map(|p| channel.our_addresses().find_map(|ours| reply_token(&p.address, ours)))
        .or_else(|| text.as_deref().and_then(body_token))
        .or_else(|| html.as_deref().and_then(body_token));
    let participants: Vec<String> = to
        .iter()
        .chain(&cc)
        .filter(|p| !channel.owns(&p.address))
        .map(|p| identity_for("email", &channel.id, &p.address))
        .collect();
    let sender_autocrypt_key = openpgp::autocrypt_keydata(message, &from.address);

    let mut raw = RawInbound {
        channel_id: channel.id.clone(),
        channel_type: "email",
        provider_message_id: message_id.clone(),
        dedup_key: Some(keys.dedup.clone()),
        superseded_dedup_key: keys.superseded(),
        provider_thread_id: None,
        thread_key: format!("mail:{}", keys.dedup),
        // Set below, from whose the message is.
        identity: String::new(),
        from,
        reply_to,
        forwarded_from,
        to,
        cc,
        sent_at,
        received_at: None,
        mail: Some(MailThreading {
            message_id,
            in_reply_to,
            references,
            reply_token: token,
            subject_key: subject
                .as_deref()
                .map(normalize_subject)
                .filter(|key| !openpgp_decrypt::hides_its_subject(key, encryption.as_ref())),
            participants,
            subject_window_ms: channel.subject_window.0.as_millis() as i64,
            // (Exchange's UIDs are 112 characters; one of kilobytes would only bloat the index.)
            calendar_uid: calendar
                .as_ref()
                .filter(|c| c.method.as_deref().is_some_and(|m| m != "PUBLISH"))
                .and_then(|c| c.uid.clone())
                .filter(|uid| uid.len() <= 1000),
        }),
        subject,
        text,
        html,
        reply_text: reply,
        attachments,
        attachments_skipped: skipped,
        auto_reply,
        delivery_report,
        sent_by_us,
        source: channel.keep_source.then(|| source_attachment(bytes, &keys)),
        accepted_refusal: None,
        authentication,
        signature,
        encryption,
        calendar,
        sender_certificates,
        sender_autocrypt_key,
        refusal: forged.filter(|_| sent_by_us).or_else(|| {
            let spam = channel.refuse_spam.then(|| report::spam_verdict(message)).flatten();
            spam.map(|header| format!("marked as spam by the receiving server ({header})"))
        }),
    };
    raw.identity = identity_for("email", &channel.id, &raw.owner().address);
    raw
}

/// A mail forwarded as an attachment (message/rfc822) rarely has a file name: it is named after
/// its subject, as mail clients show it, so the helpdesk has more to show than a bare type.
fn forwarded_mail_name(part: &MessagePart<'_>) -> Option<String> {
    let forwarded = part.message()?;
    let subject: String = forwarded
        .subject()
        .unwrap_or_default()
        .chars()
        .map(|c| if c.is_control() || c == '/' || c == '\\' { '_' } else { c })
        .take(100)
        .collect();
    let subject = subject.trim();
    Some(if subject.is_empty() { "forwarded.eml".to_owned() } else { format!("{subject}.eml") })
}

/// A body part as text (HTML converted: an HTML-only mail's text) or as HTML (text converted:
/// a text-only mail's HTML), like mail-parser's `body_text` and `body_html`, with `relabelled`
/// charsets.
fn body<'a>(message: &'a Message<'a>, part: &'a MessagePart<'a>, as_html: bool) -> Option<Cow<'a, str>> {
    let (content, is_html) = match &part.body {
        PartType::Text(text) => (text.as_ref(), false),
        PartType::Html(html) => (html.as_ref(), true),
        _ => return None,
    };
    let content = relabelled(message, part, content).map_or(Cow::Borrowed(content), Cow::Owned);
    let content_type = part.content_type();
    let flowed = content_type.and_then(|c| c.attribute("format")).is_some_and(|f| f.eq_ignore_ascii_case("flowed"));
    let content = if flowed && !is_html {
        let delsp = content_type.and_then(|c| c.attribute("delsp")).is_some_and(|d| d.eq_ignore_ascii_case("yes"));
        Cow::Owned(unflowed(&content, delsp))
    } else {
        content
    };
    Some(match (is_html, as_html) {
        (true, false) => Cow::Owned(html_to_text(&content)),
        (false, true) => Cow::Owned(text_to_html(&content)),
        _ => content,
    })
}

/// `format=flowed` text (RFC 3676; Thunderbird's and Apple Mail's plain text) as its writer's
/// paragraphs: a line ending in a space goes on in the next line of the same quote depth (the
/// space dropped with `DelSp=yes`), a space-stuffed line loses its stuffing, and `-- ` stays the
/// signature line. Read as it comes, the text is cut into 72-character lines.
fn unflowed(text: &str, delsp: bool) -> String {
    // Line breaks as they came (mail-parser keeps CRLF).
    let eol = if text.contains("\r\n") { "\r\n" } else { "\n" };
    let mut out = String::with_capacity(text.len());
    // The quote depth of the paragraph being joined, while its last line flowed on.
    let mut open: Option<usize> = None;
    let lines: Vec<&str> = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).collect();
    // A final line break leaves an empty last piece that is no line.
    let lines = if text.ends_with('\n') { &lines[..lines.len() - 1] } else { &lines[..] };
    for line in lines {
        let depth = line.bytes().take_while(|b| *b == b'>').count();
        let content = &line[depth..];
        let content = content.strip_prefix(' ').unwrap_or(content);
        let flows = content.ends_with(' ') && content != "-- ";
        let content = if flows && delsp { &content[..content.len() - 1] } else { content };
        if open.is_some_and(|d| d != depth) {
            out.push_str(eol);
        }
        if open != Some(depth) && depth > 0 {
            out.push_str(&">".repeat(depth));
            out.push(' ');
        }
        out.push_str(content);
        open = flows.then_some(depth);
        if !flows {
            out.push_str(eol);
        }
    }
    if open.is_some() && text.ends_with('\n') {
        out.push_str(eol);
    }
    if !text.ends_with('\n') && open.is_none() {
        out.truncate(out.len() - eol.len());
    }
    out
}

/// The text of a part labelled US-ASCII, or not labelled (which means US-ASCII), that has 8-bit
/// bytes all the same: they are in some other charset its sender did not name. UTF-8 when they
/// are valid UTF-8 (web forms and scripts), else Windows-1252 — where mail-parser reads the
/// first as Windows-1252 ("ZamÃ³wienie") and the second as UTF-8 with U+FFFD ("Caf�").
/// `None`: nothing to fix, mail-parser's `decoded` text stands. What it decoded tells: ASCII
/// text under a US-ASCII label, and text without U+FFFD under none, came from bytes it read
/// right, so the common part is never decoded twice.
fn relabelled(message: &Message<'_>, part: &MessagePart<'_>, decoded: &str) -> Option<String> {
    let charset = part.content_type().and_then(|c| c.attribute("charset")).map(str::to_ascii_lowercase);
    let misread = match charset.as_deref() {
        None => decoded.contains('\u{FFFD}'),
        Some("us-ascii" | "ascii" | "us_ascii" | "ansi_x3.4-1968") => !decoded.is_ascii(),
        Some(_) => false,
    };
    if !misread {
        return None;
    }
    let raw = message.raw_message().get(part.raw_body_offset() as usize..part.raw_end_offset() as usize)?;
    let encoding = part.content_transfer_encoding().map(str::to_ascii_lowercase);
    let bytes = match encoding.as_deref() {
        Some("base64") => base64_decode(raw)?,
        Some("quoted-printable") => quoted_printable_decode(raw)?,
        _ => raw.to_vec(),
    };
    Some(utf8_or_windows_1252(bytes))
}

/// Whether a text says anything.
pub(super) fn readable(text: &str) -> bool {
    !text.trim().is_empty()
}

/// Text in an unnamed charset: UTF-8 when it is valid UTF-8, else Windows-1252.
pub(super) fn utf8_or_windows_1252(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| windows_1252(e.as_bytes()))
}

/// 8-bit text in Windows-1252, the West's legacy default (a superset of ISO-8859-1's printable
/// characters).
pub(super) fn windows_1252(bytes: &[u8]) -> String {
    charset_decoder(b"windows-1252").expect("mail-parser knows Windows-1252")(bytes)
}

/// Text parts shown one after another, as one text (`None` when there is no text in them).
fn joined_text<'a>(parts: impl Iterator<Item = Cow<'a, str>>) -> Option<String> {
    let mut text = String::new();
    for part in parts {
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&part);
    }
    (!text.trim().is_empty()).then_some(text)
}

/// HTML parts shown one after another, as one document: each part's body, in order, in one
/// body (each of Apple Mail's parts is a whole `<html>` document). One part is kept as it is.
fn joined_html(parts: Vec<Cow<'_, str>>) -> Option<String> {
    let html = if parts.len() > 1 {
        let inner: String = parts.iter().map(|part| html_body_content(part)).collect();
        format!("<html><body>{inner}</body></html>")
    } else {
        parts.into_iter().next()?.into_owned()
    };
    (!html.trim().is_empty()).then_some(html)
}

/// What is between `<body …>` and `</body>`, or the whole text when it has no body element.
fn html_body_content(html: &str) -> &str {
    // ASCII lowercasing keeps every byte offset, so positions found in it slice the original.
    let lower = html.to_ascii_lowercase();
    let start = lower.find("<body").and_then(|at| lower[at..].find('>').map(|end| at + end + 1)).unwrap_or(0);
    let end = lower.rfind("</body").filter(|end| *end >= start).unwrap_or(html.len());
    &html[start..end]
}

/// A mail mail-parser cannot read at all: kept, with its source attached.
fn unparseable(channel: &EmailChannelConfig, bytes: &Bytes, keys: MailKeys) -> RawInbound {
    let from = Party { address: "unknown@invalid".into(), name: None };
    RawInbound {
        channel_id: channel.id.clone(),
        channel_type: "email",
        provider_message_id: None,
        dedup_key: Some(keys.dedup.clone()),
        superseded_dedup_key: keys.superseded(),
        provider_thread_id: None,
        thread_key: format!("mail:{}", keys.dedup),
        identity: identity_for("email", &channel.id, &from.address),
        from,
        reply_to: None,
        forwarded_from: None,
        to: Vec::new(),
        cc: Vec::new(),
        sent_at: None,
        received_at: None,
        subject: Some("(unparseable message)".into()),
        text: None,
        html: None,
        reply_text: None,
        attachments: vec![source_attachment(bytes, &keys)],
        attachments_skipped: Vec::new(),
        mail: None,
        auto_reply: false,
        delivery_report: None,
        sent_by_us: false,
        source: channel.keep_source.then(|| source_attachment(bytes, &keys)),
        accepted_refusal: None,
        authentication: None,
        signature: None,
        encryption: None,
        calendar: None,
        sender_certificates: Vec::new(),
        sender_autocrypt_key: None,
        refusal: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flowed_text_comes_back_as_paragraphs() {
        let flowed = "Hello, the lid of the box I \r\nordered arrived \r\ncracked.\r\n\r\n>> Old quote that \r\n>> flowed.\r\n> Our answer \r\n> also.\r\n From the stuffed line.\r\n-- \r\nAnn\r\n";
        assert_eq!(
            unflowed(flowed, false),
            "Hello, the lid of the box I ordered arrived cracked.\r\n\r\n>> Old quote that flowed.\r\n> Our answer also.\r\nFrom the stuffed line.\r\n-- \r\nAnn\r\n"
        );
        assert_eq!(unflowed("a \nb\n", false), "a b\n");
        assert_eq!(unflowed("Zażółć \r\ngęślą\r\n", true), "Zażółćgęślą\r\n", "DelSp drops the space");
        assert_eq!(unflowed("no final break", false), "no final break");
        assert_eq!(unflowed("ends flowing ", false), "ends flowing ");
    }

    #[test]
    fn html_parts_join_into_one_body_whatever_their_markup() {
        let parts = vec![
            Cow::from("<HTML><BODY bgcolor=\"#fff\">Zażółć <b>gęślą</b></BODY></HTML>"),
            Cow::from("<p>a fragment without a body</p>"),
            Cow::from("<html><body>last</body></html>\r\n"),
        ];
        let joined = joined_html(parts).unwrap();
        assert_eq!(joined, "<html><body>Zażółć <b>gęślą</b><p>a fragment without a body</p>last</body></html>");
        assert_eq!(joined_html(vec![Cow::from("<p>one</p>")]).as_deref(), Some("<p>one</p>"), "one part is kept whole");
        assert_eq!(joined_html(Vec::new()), None);
        let text = joined_text(["first", "second\n", "third"].into_iter().map(Cow::from));
        assert_eq!(text.as_deref(), Some("first\nsecond\nthird"));
        assert_eq!(joined_text(["  ", "\r\n"].into_iter().map(Cow::from)), None);
    }
}
