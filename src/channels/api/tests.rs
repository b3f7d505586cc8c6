//! Unit tests of the api channel's translation (no sockets); the HTTP paths are covered by the
//! integration tests in tests/it/.

use super::inbound::parse;
use crate::json_input::InputError;

const MAX: usize = 1024;

#[test]
fn translates_a_full_body() {
    let body = br#"{"from": {"address": "visitor-42", "name": "Ann"}, "text": "Hello", "html": null,
        "subject": null, "external_id": "abc-1", "thread": "chat-42",
        "attachments": [{"filename": "a.png", "content_type": "image/png", "content_base64": "aGVsbG8="}]}"#;
    let raw = parse("web", body, MAX).unwrap();
    assert_eq!(raw.identity, "ext:web:visitor-42");
    assert_eq!(raw.thread_key, "chat-42");
    assert_eq!(raw.provider_message_id.as_deref(), Some("abc-1"));
    assert_eq!(raw.from.name.as_deref(), Some("Ann"));
    assert_eq!(raw.attachments.len(), 1);
    assert_eq!(&raw.attachments[0].bytes[..], b"hello");
}

#[test]
fn thread_defaults_to_the_sender() {
    let raw = parse("web", br#"{"from": {"address": "v1"}, "text": "x"}"#, MAX).unwrap();
    assert_eq!(raw.thread_key, "v1");
    assert_eq!(raw.provider_message_id, None);
}

#[test]
fn refusals_name_the_field() {
    let cases: [(&[u8], &str); 7] = [
        (br#"{"text": "x"}"#, "from"),
        (br#"{"from": {"name": "Ann"}, "text": "x"}"#, "from.address"),
        (br#"{"from": {"address": " "}, "text": "x"}"#, "from.address"),
        (br#"{"from": {"address": "a"}}"#, "text"),
        (br#"{"from": {"address": "a"}, "text": "x", "colour": 1}"#, "colour"),
        (br#"{"from": {"address": "a"}, "attachments": [{"content_base64": "!!"}]}"#, "attachments[0].content_base64"),
        (br#"{"from": {"address": "a"}, "text": "x", "external_id": ""}"#, "external_id"),
    ];
    for (body, field) in cases {
        match parse("web", body, MAX) {
            Err(InputError::Invalid(e)) => assert_eq!(e.field, field, "{}", String::from_utf8_lossy(body)),
            other => panic!("{}: {other:?}", String::from_utf8_lossy(body)),
        }
    }
}

#[test]
fn oversized_attachment_is_refused_not_dropped() {
    let big = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, vec![0u8; MAX + 1]);
    let body = format!(r#"{{"from": {{"address": "a"}}, "attachments": [{{"content_base64": "{big}"}}]}}"#);
    match parse("web", body.as_bytes(), MAX) {
        Err(InputError::TooLarge(e)) => assert_eq!(e.field, "attachments[0].content_base64"),
        other => panic!("{other:?}"),
    }
}
