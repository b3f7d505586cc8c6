//! `reply_text` against the replies of Mailgun's talon: real mail clients' replies with the
//! reply talon, the quotation stripper Mailgun runs on the mail it receives, cuts from each.
//! tests/run.sh downloads talon's source distribution from PyPI (`SB_TALON_SAMPLES`);
//! `tests/python/talon_replies.py` reads the cases out of its tests.

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
    let body = base64::engine::general_purpose::STANDARD.encode(text.as_bytes());
    format!(
        "From: Ann <ann@example.org>\r\nTo: support@example.com\r\nSubject: Re: order 7\r\n\
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

fn without_whitespace(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

/// Every reply in talon's tests is cut as talon cuts it: its plain-text cases (one mail client's
/// reply header each, in English, German, French, Polish, Dutch, Danish, Swedish, Norwegian and
/// Vietnamese, and the quote shapes around them), its whole mails from AOL, Android, Apple
/// Mail, Comcast, Gmail, Hotmail, iPhone, Outlook, Sparrow, Thunderbird and Yahoo, and its HTML
/// replies from Gmail, Hotmail, mail.ru, Outlook 2003/2007/2010, Thunderbird, Windows Mail and
/// Yandex — each read from a whole mail through the channel's parser. Except where we cut
/// differently on purpose (`KNOWN_DIFFERENCES`).
///
/// talon leaves a signature and a "Sent from my iPhone" footer in place (its signature
/// extraction is a separate step); `reply_text` takes both off, so where talon's reply ends with
/// one, the expected reply is talon's without it.
#[test]
fn every_reply_in_talons_corpus_is_cut_as_talon_cuts_it() {
    let sdist = std::env::var("SB_TALON_SAMPLES").expect("SB_TALON_SAMPLES (tests/run.sh sets it)");
    let cases: Value = serde_json::from_str(&python("talon_replies.py", &[&sdist], &Value::Null)).unwrap();
    let channel = support_channel_config();
    let reply_of = |mail: Vec<u8>| -> String {
        switchboard::channels::email::mime::to_raw_inbound(&channel, mail).reply_text.unwrap_or_default()
    };

    // (name, ours, talon's, compared without whitespace)
    let mut results: Vec<(String, String, String, bool)> = Vec::new();
    let plain = cases["plain"].as_array().unwrap();
    assert!(plain.len() >= 45, "talon's plain cases: {}", plain.len());
    let mut seen = std::collections::HashMap::<&str, usize>::new();
    for case in plain {
        let test = case["test"].as_str().unwrap();
        let n = seen.entry(test).or_default();
        *n += 1;
        let name = if *n == 1 { test.to_owned() } else { format!("{test}#{n}") };
        let ours = reply_of(mail_with_text(case["text"].as_str().unwrap()));
        results.push((name, ours, case["reply"].as_str().unwrap().trim().to_owned(), false));
    }
    let standard = cases["standard_replies"].as_array().unwrap();
    assert!(standard.len() >= 12, "talon's standard replies: {standard:?}");
    for case in standard {
        let path = case["eml"].as_str().unwrap();
        let ours = reply_of(std::fs::read(path).unwrap());
        let talons = case["reply"].as_str().unwrap();
        // talon keeps the signature and footer; reply_text drops them (see above).
        let talons = talons.split("\n-- \n").next().unwrap().trim_end().trim_end_matches("Sent from my iPhone").trim();
        let name = std::path::Path::new(path).file_name().unwrap().to_str().unwrap().to_owned();
        results.push((name, ours, talons.to_owned(), false));
    }
    let html = cases["html_replies"].as_array().unwrap();
    assert!(html.len() >= 9, "talon's HTML replies: {html:?}");
    for case in html {
        let path = case["html"].as_str().unwrap();
        let ours = reply_of(mail_with_html(&String::from_utf8_lossy(&std::fs::read(path).unwrap())));
        let name = std::path::Path::new(path).file_name().unwrap().to_str().unwrap().to_owned();
        results.push((name, ours, case["reply"].as_str().unwrap().to_owned(), true));
    }

    let (mut differences, mut agreed) = (Vec::new(), 0);
    for (name, ours, talons, loose) in &results {
        let same = match loose {
            true => without_whitespace(ours) == without_whitespace(talons),
            false => ours == talons,
        };
        let known = KNOWN_DIFFERENCES.iter().any(|(known, _)| known == name);
        match (same, known) {
            (true, false) => agreed += 1,
            (false, true) => {}
            (true, true) => differences.push(format!("{name}: now cut as talon cuts it; off the list")),
            (false, false) => differences.push(format!("{name}:\n  ours:  {ours:?}\n  talon: {talons:?}")),
        }
    }
    assert!(differences.is_empty(), "{} of {}:\n{}", differences.len(), results.len(), differences.join("\n"));
    assert_eq!(agreed + KNOWN_DIFFERENCES.len(), results.len());
}
