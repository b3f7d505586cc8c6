//! `reply_text` against the replies and signatures of Mailgun's talon: real mail clients'
//! replies with the reply talon, the quotation and signature stripper Mailgun runs on the mail it
//! receives, cuts from each, and messages with the signature it finds in each.
//! tests/run.sh downloads talon's source distribution from PyPI (`SB_TALON_SAMPLES`);
//! `tests/python/talon_replies.py` reads the cases out of its tests.

use std::collections::HashMap;
use std::sync::OnceLock;

use base64::Engine;
use serde_json::Value;

use crate::email::support_channel_config;
use crate::harness::python;

/// Where we cut differently from talon on purpose, with why. Each must still differ, so that the
/// list is only ever as long as it needs to be.
const KNOWN_DIFFERENCES: &[(&str, &str)] = &[
    (
        "test_too_many_lines",
        "the test caps talon's own line limit (MAX_LINES_COUNT) at one line, so talon reads the first \
         line only; the text's answer is \"Test reply\\nHi\"",
    ),
    (
        "test_pattern_on_date_polymail",
        "Polymail's header is broken over five lines around a mailto: link, one of them blank and its \
         \"wrote:\" quoted: a header that loose would also match a customer's own lines",
    ),
    (
        "test_link_closed_with_quotation_marker_on_new_line",
        "a lone \"From:\" line, with no other header field within the three lines below it, is read as \
         the customer's text: a customer writes \"From: my account page\" too",
    ),
];

/// A plain-text reply as a customer's mail to the support address.
fn mail_with_text(text: &str) -> Vec<u8> {
    mail_from_with_text("Ann <ann@example.org>", text)
}

/// A plain-text mail from `from` (a From header's value) to the support address.
fn mail_from_with_text(from: &str, text: &str) -> Vec<u8> {
    let body = base64::engine::general_purpose::STANDARD.encode(text.as_bytes());
    format!(
        "From: {from}\r\nTo: support@example.com\r\nSubject: Re: order 7\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

/// An HTML-only reply (as a client sends one with no text part) as a customer's mail.
fn mail_with_html(html: &str) -> Vec<u8> {
    let body = base64::engine::general_purpose::STANDARD.encode(html.as_bytes());
    format!(
        "From: Ann <ann@example.org>\r\nTo: support@example.com\r\nSubject: Re: order 7\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

/// Every reply in talon's tests is cut as talon cuts it: its plain-text cases (one mail client's
/// reply header each, in English, German, French, Polish, Dutch, Danish, Swedish, Norwegian and
/// Vietnamese, and the quote shapes around them), its whole mails from AOL, Android, Apple
/// Mail, Comcast, Gmail, Hotmail, iPhone, Outlook, Sparrow, Thunderbird and Yahoo, and its HTML
/// replies from Gmail, Hotmail, mail.ru, Outlook 2003/2007/2010, Thunderbird, Windows Mail and
/// Yandex — each read from a whole mail through the channel's parser. Except where we cut
/// differently on purpose (`KNOWN_DIFFERENCES`).
///
/// talon leaves a signature in place: its signature extraction is a separate step, as it is in
/// Mailgun's `stripped-text`. `reply_text` takes the signature off too, so the expected reply is
/// talon's passed through talon's own signature extraction (`bruteforce.extract_signature`).
#[test]
fn every_reply_in_talons_corpus_is_cut_as_talon_cuts_it() {
    let cases = talons_cases();
    let channel = support_channel_config();
    let reply_of = |mail: Vec<u8>| -> String {
        switchboard::channels::email::mime::to_raw_inbound(&channel, mail).reply_text.unwrap_or_default()
    };

    // (name, ours, talon's)
    let mut results: Vec<(String, String, String)> = Vec::new();
    let plain = cases["plain"].as_array().unwrap();
    assert!(plain.len() >= 45, "talon's plain cases: {}", plain.len());
    let mut seen = HashMap::new();
    for case in plain {
        let name = case_name(case, &mut seen);
        let ours = reply_of(mail_with_text(case["text"].as_str().unwrap()));
        results.push((name, ours, case["unsigned"].as_str().unwrap().trim().to_owned()));
    }
    let standard = cases["standard_replies"].as_array().unwrap();
    assert!(standard.len() >= 12, "talon's standard replies: {standard:?}");
    for case in standard {
        let path = case["eml"].as_str().unwrap();
        let ours = reply_of(std::fs::read(path).unwrap());
        let talons = case["unsigned"].as_str().unwrap().trim();
        let name = std::path::Path::new(path).file_name().unwrap().to_str().unwrap().to_owned();
        results.push((name, ours, talons.to_owned()));
    }
    let html = cases["html_replies"].as_array().unwrap();
    assert!(html.len() >= 9, "talon's HTML replies: {html:?}");
    for case in html {
        let path = case["html"].as_str().unwrap();
        let ours = reply_of(mail_with_html(&String::from_utf8_lossy(&std::fs::read(path).unwrap())));
        let name = std::path::Path::new(path).file_name().unwrap().to_str().unwrap().to_owned();
        results.push((name, ours, case["unsigned"].as_str().unwrap().to_owned()));
    }

    compare(&results, KNOWN_DIFFERENCES);
}

/// Where we find a signature differently from talon on purpose, with why.
const KNOWN_SIGNATURE_DIFFERENCES: &[(&str, &str)] = &[(
    "test_capitalized",
    "\"At your service,\" above the name is a sign-off to us, and left out with the signature; talon's \
     classifier keeps it in the text",
)];

/// Every signature in talon's signature tests is left out as talon leaves it out: the cases of
/// its rule-based extractor (`bruteforce`, answered by talon's own code: dashes, sign-offs,
/// phone footers, lists, long lines, blank lines), and the expectations of its classifier's
/// tests, which know the sender (a name on its own line, business-card lines). Each is a
/// whole mail from that sender through the channel's parser.
#[test]
fn every_signature_in_talons_tests_is_left_out_as_talon_leaves_it_out() {
    let channel = support_channel_config();
    let cases = talons_cases()["signatures"].as_array().unwrap();
    assert!(cases.len() >= 30, "talon's signature cases: {}", cases.len());
    let mut seen = HashMap::new();
    let results: Vec<(String, String, String)> = cases
        .iter()
        .map(|case| {
            let name = case_name(case, &mut seen);
            let from = match case["sender"].as_str().unwrap() {
                "" => "customer@example.org".to_owned(),
                address if address.contains('@') => address.to_owned(),
                name => format!("{name} <customer@example.org>"),
            };
            let mail = mail_from_with_text(&from, case["text"].as_str().unwrap());
            let ours =
                switchboard::channels::email::mime::to_raw_inbound(&channel, mail).reply_text.unwrap_or_default();
            (name, ours, case["unsigned"].as_str().unwrap().trim().to_owned())
        })
        .collect();
    compare(&results, KNOWN_SIGNATURE_DIFFERENCES);
}

/// talon's cases, read once for the tests here (`talon_replies.py` runs talon's own code).
fn talons_cases() -> &'static Value {
    static CASES: OnceLock<Value> = OnceLock::new();
    CASES.get_or_init(|| {
        let sdist = std::env::var("SB_TALON_SAMPLES").expect("SB_TALON_SAMPLES (tests/run.sh sets it)");
        serde_json::from_str(&python("talon_replies.py", &[&sdist], &Value::Null)).unwrap()
    })
}

/// A case's test name, numbered from its second case on ("test_x", "test_x#2").
fn case_name<'a>(case: &'a Value, seen: &mut HashMap<&'a str, usize>) -> String {
    let test = case["test"].as_str().unwrap();
    let n = seen.entry(test).or_default();
    *n += 1;
    if *n == 1 {
        test.to_owned()
    } else {
        format!("{test}#{n}")
    }
}

/// Fails with every case (name, ours, talon's) where we and talon differ, but those `known`
/// (which must still differ, so that the list is only ever as long as it needs to be).
fn compare(results: &[(String, String, String)], known: &[(&str, &str)]) {
    let (mut differences, mut agreed) = (Vec::new(), 0);
    for (name, ours, talons) in results {
        let known = known.iter().any(|(known, _)| known == name);
        match (ours == talons, known) {
            (true, false) => agreed += 1,
            (false, true) => {}
            (true, true) => differences.push(format!("{name}: now as talon has it; off the list")),
            (false, false) => differences.push(format!("{name}:\n  ours:  {ours:?}\n  talon: {talons:?}")),
        }
    }
    assert!(differences.is_empty(), "{} of {}:\n{}", differences.len(), results.len(), differences.join("\n"));
    assert_eq!(agreed + known.len(), results.len());
}
