//! Unit tests of the email translation (no sockets); end-to-end tests against Dovecot and a
//! real SMTP server are in tests/it/email.rs.

use super::config::EmailChannelConfig;
use super::mime::to_raw_inbound;

pub(super) fn channel() -> EmailChannelConfig {
    channel_from(
        r#"
id = "support"
address = "support@example.com"
[smtp]
host = "127.0.0.1"
tls = "none"
"#,
    )
}

/// The next number of Marsaglia's xorshift64 from `seed`: the same sequence every run, for
/// tests that damage inputs many ways.
pub(super) fn xorshift(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

/// `count` copies of `bytes`, each with one bit flipped, and where: the same sequence every run
/// (xorshift), for the tests that check damaged signatures.
pub(super) fn bit_flips(bytes: &[u8], count: usize) -> impl Iterator<Item = (usize, Vec<u8>)> + '_ {
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    (0..count).map(move |_| {
        let seed = xorshift(&mut seed);
        let mut damaged = bytes.to_vec();
        let at = (seed % bytes.len() as u64) as usize;
        damaged[at] ^= 1 << (seed >> 60 & 7);
        (at, damaged)
    })
}

/// A channel block (TOML, without `type`) read as the config loader reads it.
fn channel_from(toml: &str) -> EmailChannelConfig {
    let value: figment::value::Value =
        figment::Figment::from(figment::providers::Serialized::defaults(toml::from_str::<toml::Value>(toml).unwrap()))
            .extract()
            .unwrap();
    value.deserialize().unwrap()
}

/// Gmail's and Microsoft's receiving servers are trusted for Authentication-Results when the
/// mailbox is theirs, unless the channel says `none`; any other host's only when named.
#[test]
fn the_large_providers_receiving_servers_are_trusted_unless_told_otherwise() {
    let with = |imap_host: &str, authserv_id: &str| {
        let mut config = channel_from(&format!(
            "id = \"support\"\naddress = \"support@example.com\"\n{authserv_id}\n[imap]\nhost = \"{imap_host}\"\nusername = \"u\"\npassword = \"p\"\n"
        ));
        assert_eq!(config.validate(), Vec::new());
        config.authserv_id
    };
    assert_eq!(with("imap.gmail.com", "").as_deref(), Some("mx.google.com"));
    assert_eq!(with("outlook.office365.com", "").as_deref(), Some("*"));
    assert_eq!(with("imap.gmail.com", "authserv_id = \"none\"").as_deref(), None);
    assert_eq!(with("imap.example.com", "").as_deref(), None);
    assert_eq!(with("imap.example.com", "authserv_id = \"MX.Example.com\"").as_deref(), Some("mx.example.com"));
}

#[test]
fn our_addresses_in_an_internationalised_domain_are_kept_in_a_labels() {
    let mut config = channel();
    config.address = "support@bücher.example".into();
    config.aliases = vec!["hilfe@bücher.example".into()];
    assert_eq!(config.validate(), Vec::new());
    assert_eq!(config.address, "support@xn--bcher-kva.example");
    assert_eq!(config.aliases, ["hilfe@xn--bcher-kva.example"]);
    assert_eq!(config.domain(), "xn--bcher-kva.example");
    assert!(config.owns("Hilfe@xn--bcher-kva.example"));
    assert!(config.owns("hilfe+cnv_1@Bücher.example"), "named in Unicode, with a reply token");
}

#[test]
fn forwarders_are_addresses_or_domains_kept_in_a_labels() {
    let mut config = channel();
    config.forwarders = vec!["bea@Example.org".into(), " Partner.example ".into(), "bücher.example".into()];
    assert_eq!(config.validate(), Vec::new());
    assert_eq!(config.forwarders, ["bea@example.org", "partner.example", "xn--bcher-kva.example"]);
    assert!(config.is_forwarder("Bea@example.org") && !config.is_forwarder("ann@example.org"));
    assert!(config.is_forwarder("anyone@partner.example") && !config.is_forwarder("anyone@sub.partner.example"));
    assert!(config.is_forwarder("hans@bücher.example"));
    // Our own forward of a customer's mail (the watched Sent folder) stays ours.
    let mut ours = channel();
    ours.forwarders = vec!["example.com".into()];
    let forward = "From: support@example.com\r\nTo: warehouse@example.net\r\nSubject: FW: Order 5\r\n\r\n\
                   ________________________________\r\nFrom: Ann <ann@example.org>\r\nSent: Monday\r\n\r\nWhere is it?\r\n";
    let raw = to_raw_inbound(&ours, forward.as_bytes());
    assert!(raw.sent_by_us && raw.forwarded_from.is_none(), "{:?}", raw.forwarded_from);
    let colleague = forward.replace("From: support@", "From: bea@");
    assert_eq!(
        to_raw_inbound(&ours, colleague.into_bytes()).forwarded_from.map(|p| p.address).as_deref(),
        Some("ann@example.org")
    );
    config.forwarders = vec!["not a domain".into(), "bea@".into(), "localhost".into()];
    let problems: Vec<String> = config.validate().into_iter().map(|(key, _)| key).collect();
    assert_eq!(problems, ["forwarders[0]", "forwarders[1]", "forwarders[2]"]);
}

/// A colleague's forward is the customer's mail, written when the forward says; a date it
/// cannot place, or one after the forward's own (misread), leaves the forward's Date.
#[test]
fn a_forwards_sent_at_is_when_its_original_was_written() {
    let mut config = channel();
    config.forwarders = vec!["bea@example.org".into()];
    let sent_at = |date_line: &str| {
        let forward = format!(
            "From: bea@example.org\r\nTo: support@example.com\r\nSubject: FW: Order 5\r\n\
             Date: Mon, 30 Nov 2026 09:00:00 -0500\r\n\r\n________________________________\r\n\
             From: Ann <ann@example.org>\r\n{date_line}\r\nSubject: Order 5\r\n\r\nWhere is it?\r\n"
        );
        let raw = to_raw_inbound(&config, forward.into_bytes());
        assert_eq!(raw.forwarded_from.map(|p| p.address).as_deref(), Some("ann@example.org"));
        raw.sent_at.map(crate::model::time::rfc3339)
    };
    // Outlook writes Bea's local time, five hours west of UTC like the forward's Date.
    assert_eq!(sent_at("Sent: Monday, November 23, 2026 10:00 AM").as_deref(), Some("2026-11-23T15:00:00.000Z"));
    let forwards_own = Some("2026-11-30T14:00:00.000Z");
    assert_eq!(sent_at("Sent: Monday").as_deref(), forwards_own, "no date to read");
    assert_eq!(sent_at("Sent: Monday, December 7, 2026 10:00 AM").as_deref(), forwards_own, "after the forward");
}

#[test]
fn a_folder_read_twice_or_moved_into_is_refused() {
    let mut config = channel_from(
        r#"
id = "support"
address = "support@example.com"
[imap]
host = "127.0.0.1"
tls = "none"
username = "support@example.com"
password = "secret-pass-1"
folders = ["INBOX", "Support", "inbox", "Support"]
after_import = "move:Support"
"#,
    );
    let problems: Vec<String> = config.validate().into_iter().map(|(key, reason)| format!("{key}: {reason}")).collect();
    assert_eq!(
        problems,
        [
            "imap.folders[2]: `inbox` is listed twice",
            "imap.folders[3]: `Support` is listed twice",
            "imap.after_import: moves mail into `Support`, which the channel reads: every mail would be moved from it again",
        ]
    );
}

#[test]
fn a_plain_reply_translates() {
    let mail = b"From: Ann <Ann@Example.org>\r\nTo: support@example.com\r\nSubject: Re: Invoice 42\r\nMessage-ID: <a1@example.org>\r\nIn-Reply-To: <b2@example.com>\r\nReferences: <b1@example.com> <b2@example.com>\r\n\r\nThanks!\r\n\r\nOn Mon, Support wrote:\r\n> Hello\r\n";
    let raw = to_raw_inbound(&channel(), &mail[..]);
    assert_eq!(raw.identity, "email:ann@example.org");
    assert_eq!(raw.from.name.as_deref(), Some("Ann"));
    assert_eq!(raw.reply_text.as_deref(), Some("Thanks!"));
    let m = raw.mail.unwrap();
    assert_eq!(m.message_id.as_deref(), Some("a1@example.org"));
    assert_eq!(m.in_reply_to, vec!["b2@example.com"]);
    assert_eq!(m.references, vec!["b1@example.com", "b2@example.com"]);
    assert_eq!(m.subject_key.as_deref(), Some("invoice 42"));
    assert!(
        raw.dedup_key.unwrap().starts_with("mail-sha256:"),
        "a mail with a Message-ID is known by what its author wrote"
    );
}

/// A parser panic on one mail (a bug some input triggers) keeps that mail whole, with its
/// source, instead of failing its batch at every retry and blocking the folder behind it.
#[test]
fn a_parser_panic_keeps_the_mail_whole_instead_of_blocking_the_folder() {
    let source = bytes::Bytes::from_static(b"From: a@example.org\r\nSubject: poison\r\n\r\nbody\r\n");
    let keys = super::dedup::MailKeys::of(&source);
    let raw = super::mime::guarded(&channel(), &source, keys.clone(), |_, _, _| panic!("a parser bug"));
    assert_eq!(raw.subject.as_deref(), Some("(unparseable message)"));
    assert_eq!(raw.dedup_key.as_deref(), Some(keys.dedup.as_str()));
    assert_eq!(&raw.attachments[0].bytes[..], &source[..], "the mail, byte for byte");
    assert_eq!(&raw.source.expect("kept as the source too").bytes[..], &source[..]);
}

#[test]
fn charsets_and_encodings_decode() {
    let mail = "From: =?ISO-8859-2?Q?Pawe=B3?= <p@example.pl>\r\nTo: support@example.com\r\nSubject: =?windows-1250?Q?Za=9E=F3=B3=E6?=\r\nContent-Type: text/plain; charset=ISO-8859-2\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nZa=BF=F3=B3=E6 g=EA=B6l=B1 ja=BC=F1\r\n";
    let raw = to_raw_inbound(&channel(), mail.as_bytes());
    assert_eq!(raw.from.name.as_deref(), Some("Paweł"));
    assert_eq!(raw.subject.as_deref(), Some("Zažółć"));
    assert_eq!(raw.text.as_deref().map(str::trim), Some("Zażółć gęślą jaźń"));
}

#[test]
fn oversized_attachments_are_listed_not_dropped() {
    let mut config = channel();
    config.max_attachment_bytes = Some(10);
    let mail = "From: a@example.org\r\nTo: support@example.com\r\nSubject: files\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n--XX\r\nContent-Type: text/plain\r\n\r\nsee files\r\n--XX\r\nContent-Type: image/png\r\nContent-Disposition: attachment; filename=small.png\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n--XX\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=big.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8gd29ybGQgdGhpcyBpcyBiaWc=\r\n--XX--\r\n";
    let raw = to_raw_inbound(&config, mail.as_bytes());
    assert_eq!(raw.attachments.len(), 1);
    assert_eq!(raw.attachments[0].filename.as_deref(), Some("small.png"));
    assert_eq!(&raw.attachments[0].bytes[..], b"hello");
    assert_eq!(raw.attachments_skipped.len(), 1);
    assert_eq!(raw.attachments_skipped[0].filename.as_deref(), Some("big.pdf"));
    assert!(raw.attachments_skipped[0].reason.contains("limit of 10 bytes"));
}

#[test]
fn the_source_is_kept_unless_the_channel_says_not_to() {
    let mail = b"From: a@example.org\r\nSubject: hi\r\n\r\nhello\r\n";
    let source = to_raw_inbound(&channel(), &mail[..]).source.expect("kept by default");
    assert_eq!((&source.bytes[..], source.content_type.as_str()), (&mail[..], "message/rfc822"));
    let mut lean = channel();
    lean.keep_source = false;
    assert!(to_raw_inbound(&lean, &mail[..]).source.is_none());
    // A mail that parses to nothing keeps its source as an attachment either way.
    let garbage = to_raw_inbound(&lean, &b""[..]);
    assert!(garbage.attachments.iter().any(|a| a.content_type == "message/rfc822"), "{garbage:?}");
}

#[test]
fn garbage_still_becomes_a_message() {
    let garbage = b"\x00\x01 not a mail at all";
    let raw = to_raw_inbound(&channel(), &garbage[..]);
    assert!(raw.text.is_some() || raw.attachments.iter().any(|a| &a.bytes[..] == garbage), "{raw:?}");
}

/// Every `tests/fixtures/email/NAME.eml` against `NAME.expected.json`: each key present in the
/// expectation must hold (see `check` for the keys).
#[test]
fn fixture_corpus_matches_expectations() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/email");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().into_string().ok()?.strip_suffix(".eml").map(str::to_owned))
        .collect();
    names.sort();
    assert!(names.len() >= 15, "the corpus is missing: {names:?}");
    let mut failures = Vec::new();
    for name in &names {
        let bytes = std::fs::read(dir.join(format!("{name}.eml"))).unwrap();
        let expected: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(format!("{name}.expected.json"))).unwrap()).unwrap();
        let raw = to_raw_inbound(&channel(), bytes.clone());
        for problem in check(&raw, &bytes, &expected) {
            failures.push(format!("{name}: {problem}"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

fn check(raw: &crate::channels::RawInbound, bytes: &[u8], expected: &serde_json::Value) -> Vec<String> {
    use serde_json::{json, Value};
    let mut problems = Vec::new();
    fn expect(problems: &mut Vec<String>, what: &str, got: Value, want: &Value) {
        if &got != want {
            problems.push(format!("{what}: got {got}, want {want}"));
        }
    }
    let mail = raw.mail.clone().unwrap_or_default();
    for (key, want) in expected.as_object().unwrap() {
        match key.as_str() {
            "from" => expect(&mut problems, key, serde_json::to_value(&raw.from).unwrap(), want),
            "to" => expect(&mut problems, key, serde_json::to_value(&raw.to).unwrap(), want),
            "cc" => expect(&mut problems, key, serde_json::to_value(&raw.cc).unwrap(), want),
            "sent_at" => expect(&mut problems, key, json!(raw.sent_at.map(crate::model::time::rfc3339)), want),
            "subject" => expect(&mut problems, key, json!(raw.subject), want),
            "text" => expect(&mut problems, key, json!(raw.text), want),
            "reply_text" => expect(&mut problems, key, json!(raw.reply_text), want),
            "auto_reply" => expect(&mut problems, key, json!(raw.auto_reply), want),
            "sent_by_us" => expect(&mut problems, key, json!(raw.sent_by_us), want),
            "refusal" => expect(&mut problems, key, json!(raw.refusal), want),
            "signature" => expect(&mut problems, key, serde_json::to_value(&raw.signature).unwrap(), want),
            "encryption" => expect(&mut problems, key, serde_json::to_value(&raw.encryption).unwrap(), want),
            "calendar" => expect(&mut problems, key, serde_json::to_value(&raw.calendar).unwrap(), want),
            "reply_to" => expect(&mut problems, key, serde_json::to_value(&raw.reply_to).unwrap(), want),
            "subject_key" => expect(&mut problems, key, json!(mail.subject_key), want),
            "mail" => {
                for (field, want) in want.as_object().unwrap() {
                    let got = match field.as_str() {
                        "message_id" => json!(mail.message_id),
                        "in_reply_to" => json!(mail.in_reply_to),
                        "references" => json!(mail.references),
                        "subject_key" => json!(mail.subject_key),
                        other => panic!("unknown mail field {other}"),
                    };
                    expect(&mut problems, &format!("mail.{field}"), got, want);
                }
            }
            "text_contains" | "html_contains" => {
                let body = if key == "text_contains" { &raw.text } else { &raw.html };
                if !body.as_deref().unwrap_or("").contains(want.as_str().unwrap()) {
                    problems.push(format!("{key} {want}: got {body:?}"));
                }
            }
            "attachments" => {
                let got: Vec<Value> = raw
                    .attachments
                    .iter()
                    .map(|a| json!({"filename": a.filename, "content_type": a.content_type, "size": a.bytes.len(), "content_id": a.content_id}))
                    .collect();
                // Expectations may leave content_id out when it does not matter.
                let want: Vec<Value> = want
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|w| {
                        let mut w = w.clone();
                        w.as_object_mut().unwrap().entry("content_id").or_insert(Value::Null);
                        w
                    })
                    .collect();
                expect(&mut problems, key, json!(got), &json!(want));
            }
            "delivery_report" => match (&raw.delivery_report, want) {
                (None, Value::Null) => {}
                (Some(report), Value::Object(fields)) => {
                    let got = serde_json::to_value(report).unwrap();
                    for (field, want) in fields {
                        expect(&mut problems, &format!("delivery_report.{field}"), got[field].clone(), want);
                    }
                }
                (got, want) => problems.push(format!("delivery_report: got {got:?}, want {want}")),
            },
            "source_kept" => {
                if !raw.attachments.iter().any(|a| &a.bytes[..] == bytes) {
                    problems.push("the raw source is not kept as an attachment".into());
                }
            }
            other => panic!("unknown expectation {other}"),
        }
    }
    problems
}

/// Batches queued one behind another move the folder checkpoint as a chain: a batch whose
/// predecessor failed fails too (nothing of it stored, the checkpoint untouched), so a failed
/// batch is fetched again instead of being skipped.
#[tokio::test]
async fn a_batch_queued_behind_a_failed_one_is_not_committed() {
    use crate::store::StoreError;

    let dir = tempfile::tempdir().unwrap();
    let (store, cx) = pull_context(dir.path());
    let mail = |n: u32| {
        let bytes =
            format!("From: c{n}@example.org\r\nTo: support@example.com\r\nSubject: Order {n}\r\n\r\nHello {n}\r\n");
        to_raw_inbound(&channel(), bytes.into_bytes())
    };
    let key = "imap:INBOX";
    let first = cx.prepare_batch(vec![mail(1), mail(2)]).await.unwrap();
    cx.submit_batch(first, key, None, "7:2").await.unwrap();

    // Batch "3" expects a checkpoint the store does not have (as if the batch before it had
    // failed); batch "4" is queued behind it, before either commits.
    let third = cx.prepare_batch(vec![mail(3)]).await.unwrap();
    let fourth = cx.prepare_batch(vec![mail(4)]).await.unwrap();
    let third = cx.submit_batch(third, key, Some("7:1".into()), "7:3");
    let fourth = cx.submit_batch(fourth, key, Some("7:3".into()), "7:4");
    let (third, fourth) = tokio::join!(third, fourth);
    assert!(matches!(third, Err(StoreError::Stale(_))), "{third:?}");
    assert!(matches!(fourth, Err(StoreError::Stale(_))), "{fourth:?}");

    assert_eq!(cx.checkpoint(key).await.unwrap().as_deref(), Some("7:2"));
    let stored =
        store.read(|c| Ok(c.query_row("SELECT count(*) FROM messages", [], |r| r.get::<_, i64>(0))?)).await.unwrap();
    assert_eq!(stored, 2, "only the first batch is stored");
    store.close();
}

/// A second delivery of a stored mail (its own trace fields, so its own bytes) is decided
/// before its batch stores anything: no pack is written for its source. Should the store no
/// longer know the mail when the batch commits, the batch fails and is read again, rather than
/// store a message without its source.
#[tokio::test]
async fn a_second_delivery_stores_no_source_and_fails_its_batch_if_the_first_is_gone() {
    use crate::store::StoreError;

    let dir = tempfile::tempdir().unwrap();
    let (store, cx) = pull_context(dir.path());
    let delivery = |to: &str| {
        let bytes = format!(
            "Delivered-To: {to}\r\nFrom: ann@example.org\r\nTo: support@example.com\r\nCc: sales@example.net\r\n\
             Message-ID: <twice@example.org>\r\nSubject: Order\r\n\r\nWhere is it?\r\n"
        );
        to_raw_inbound(&channel(), bytes.into_bytes())
    };
    let packs = || std::fs::read_dir(dir.path().join("blobs/packs")).unwrap().count();
    let key = "imap:INBOX";
    let first = cx.prepare_batch(vec![delivery("support@example.com")]).await.unwrap();
    cx.submit_batch(first, key, None, "7:1").await.unwrap();
    assert_eq!(packs(), 1);

    let second = cx.prepare_batch(vec![delivery("sales@example.net")]).await.unwrap();
    assert_eq!(packs(), 1, "the second delivery's source was not written");
    store.write(|c| Ok(c.execute("DELETE FROM messages", [])?)).await.unwrap();
    let result = cx.submit_batch(second, key, Some("7:1".into()), "7:2").await;
    assert!(matches!(result, Err(StoreError::Stale(_))), "{result:?}");
    assert_eq!(cx.checkpoint(key).await.unwrap().as_deref(), Some("7:1"), "read again from where it was");
    store.close();
}

/// A store in `dir` and the support channel's context over it, as a pull loop gets it.
fn pull_context(dir: &std::path::Path) -> (crate::store::Store, crate::pipeline::InboundContext) {
    use crate::pipeline::{Health, InboundContext, Pipeline};
    let store = crate::store::Store::open(dir).unwrap();
    let cx = InboundContext::new(
        "support",
        "email",
        Pipeline::new(store.clone(), crate::live::Live::default()),
        Health::default(),
        tokio_util::sync::CancellationToken::new(),
    );
    (store, cx)
}
