//! `message.calendar` against the `icalendar` library (PyPI), which Python calendar software
//! reads and writes iCalendar with: `tests/python/icalendar_cases.py` writes invitations of
//! every shape mail clients send (UTC, floating, whole-day and zoned times, each zone described
//! by its own VTIMEZONE as icalendar or as Outlook writes one; DTEND or DURATION; escaped,
//! folded, non-ASCII text; quoted names; answers and cancellations) and reads each back. Each
//! goes into a mail as a body part or as an `.ics` file, 8-bit or base64, through the channel's
//! parser; the gateway's reading must be icalendar's, times in UTC included.

use base64::Engine;
use serde_json::Value;

use crate::email::support_channel_config;
use crate::harness::python;

/// The mail a calendar client would send with `ics`, in one of three shapes.
fn mail_with(ics: &str, n: usize) -> String {
    let head = format!(
        "From: Ann <ann@example.org>\r\nTo: support@example.com\r\nSubject: Invitation {n}\r\n\
         Message-ID: <cal-{n}@example.org>\r\nMIME-Version: 1.0\r\n"
    );
    let base64 = base64::engine::general_purpose::STANDARD.encode(ics.as_bytes());
    let base64: Vec<&str> = base64.as_bytes().chunks(76).map(|c| std::str::from_utf8(c).unwrap()).collect();
    let base64 = base64.join("\r\n");
    match n % 3 {
        0 => format!(
            "{head}Content-Type: multipart/alternative; boundary=\"A\"\r\n\r\n--A\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\r\nAn invitation.\r\n--A\r\n\
             Content-Type: text/calendar; charset=utf-8; method=REQUEST\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\
             {ics}\r\n--A--\r\n"
        ),
        1 => format!(
            "{head}Content-Type: multipart/alternative; boundary=\"A\"\r\n\r\n--A\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\r\nAn invitation.\r\n--A\r\n\
             Content-Type: text/calendar; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n\
             {base64}\r\n--A--\r\n"
        ),
        _ => format!(
            "{head}Content-Type: multipart/mixed; boundary=\"M\"\r\n\r\n--M\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\r\nSee the file.\r\n--M\r\n\
             Content-Type: application/ics; name=\"meeting.ics\"\r\n\
             Content-Disposition: attachment; filename=\"meeting.ics\"\r\nContent-Transfer-Encoding: base64\r\n\r\n\
             {base64}\r\n--M--\r\n"
        ),
    }
}

#[test]
fn every_invitation_icalendar_writes_reads_as_icalendar_reads_it() {
    let corpus: Value =
        serde_json::from_str(&python("icalendar_cases.py", &["20261202", "600"], &Value::Null)).unwrap();
    let cases = corpus["cases"].as_array().unwrap();
    // Times in the hour clocks skip are among them, where RFC 5545 and icalendar part (the script
    // expects the RFC's reading there).
    assert!(corpus["skipped_times"].as_u64().unwrap() >= 10, "{}", corpus["skipped_times"]);
    assert_eq!(cases.len(), 600);
    let channel = support_channel_config();
    let mut differences = Vec::new();
    let mut zoned = 0;
    for (n, case) in cases.iter().enumerate() {
        let ics = case["ics"].as_str().unwrap();
        let raw = switchboard::channels::email::mime::to_raw_inbound(&channel, mail_with(ics, n));
        let ours = serde_json::to_value(&raw.calendar).unwrap();
        let theirs = &case["expected"];
        zoned += usize::from(theirs["start"]["time_zone"].is_string() && theirs["start"]["utc"].is_string());
        if &ours != theirs {
            differences.push(format!("case {n}:\n  ours:   {ours}\n  theirs: {theirs}\n{ics}"));
        }
    }
    // The corpus holds what it is for: times placed in UTC by a VTIMEZONE.
    assert!(zoned > 150, "only {zoned} zoned times");
    assert!(
        differences.is_empty(),
        "{} of {} differ:\n{}",
        differences.len(),
        cases.len(),
        differences[..differences.len().min(5)].join("\n")
    );
}
