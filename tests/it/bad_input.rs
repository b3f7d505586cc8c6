//! Refused requests get the documented error, name the field, and store nothing.

use reqwest::Method;
use serde_json::json;

use crate::harness::*;

#[tokio::test]
async fn refused_requests_store_nothing() {
    let backend = Receiver::start().await;
    let server = TestServer::start(&api_channel("web", Some(&backend), "")).await;
    let inbound = "/v1/channels/web/inbound";
    let ok_body = json!({"from": {"address": "v"}, "text": "hi"}).to_string().into_bytes();
    // (what, method, path, token, body, expected status, expected error code, the field named)
    type Case<'a> = (&'a str, Method, &'a str, Option<&'a str>, Vec<u8>, u16, &'a str, Option<&'a str>);
    let cases: Vec<Case> = vec![
        ("malformed JSON", Method::POST, inbound, Some(TOKEN), b"{\"from\": ".to_vec(), 400, "invalid_json", None),
        ("not an object", Method::POST, inbound, Some(TOKEN), b"[1, 2]".to_vec(), 422, "invalid_request", None),
        (
            "missing from",
            Method::POST,
            inbound,
            Some(TOKEN),
            br#"{"text": "hi"}"#.to_vec(),
            422,
            "invalid_request",
            Some("from"),
        ),
        (
            "missing address",
            Method::POST,
            inbound,
            Some(TOKEN),
            br#"{"from": {}, "text": "hi"}"#.to_vec(),
            422,
            "invalid_request",
            Some("from.address"),
        ),
        (
            "no content",
            Method::POST,
            inbound,
            Some(TOKEN),
            br#"{"from": {"address": "v"}}"#.to_vec(),
            422,
            "invalid_request",
            Some("text"),
        ),
        (
            "wrong type",
            Method::POST,
            inbound,
            Some(TOKEN),
            br#"{"from": {"address": "v"}, "text": 5}"#.to_vec(),
            422,
            "invalid_request",
            Some("text"),
        ),
        (
            "unknown field",
            Method::POST,
            inbound,
            Some(TOKEN),
            br#"{"from": {"address": "v"}, "text": "x", "prio": 1}"#.to_vec(),
            422,
            "invalid_request",
            Some("prio"),
        ),
        (
            "bad base64",
            Method::POST,
            inbound,
            Some(TOKEN),
            br#"{"from": {"address": "v"}, "attachments": [{"content_base64": "%%%"}]}"#.to_vec(),
            422,
            "invalid_request",
            Some("attachments[0].content_base64"),
        ),
        (
            "attachment too large",
            Method::POST,
            inbound,
            Some(TOKEN),
            format!(
                r#"{{"from": {{"address": "v"}}, "attachments": [{{"content_base64": "{}"}}]}}"#,
                "A".repeat(24_000)
            )
            .into_bytes(),
            413,
            "payload_too_large",
            Some("attachments[0].content_base64"),
        ),
        (
            "body too large",
            Method::POST,
            inbound,
            Some(TOKEN),
            format!(r#"{{"from": {{"address": "v"}}, "text": "{}"}}"#, "x".repeat(70_000)).into_bytes(),
            413,
            "payload_too_large",
            None,
        ),
        ("missing token", Method::POST, inbound, None, ok_body.clone(), 401, "unauthorized", None),
        (
            "wrong token",
            Method::POST,
            inbound,
            Some("not-a-real-token-at-all"),
            ok_body.clone(),
            401,
            "unauthorized",
            None,
        ),
        ("wrong scope", Method::POST, inbound, Some(READ_TOKEN), ok_body.clone(), 403, "forbidden", None),
        (
            "unknown channel",
            Method::POST,
            "/v1/channels/nope/inbound",
            Some(TOKEN),
            ok_body.clone(),
            404,
            "unknown_channel",
            None,
        ),
        (
            "send: unknown channel",
            Method::POST,
            "/v1/messages",
            Some(TOKEN),
            br#"{"channel": "nope", "to": "v", "text": "x"}"#.to_vec(),
            404,
            "unknown_channel",
            Some("channel"),
        ),
        (
            "send: unknown conversation",
            Method::POST,
            "/v1/messages",
            Some(TOKEN),
            br#"{"conversation_id": "cnv_01AAAAAAAAAAAAAAAAAAAAAAAA", "text": "x"}"#.to_vec(),
            404,
            "not_found",
            Some("conversation_id"),
        ),
        (
            "send: no target",
            Method::POST,
            "/v1/messages",
            Some(TOKEN),
            br#"{"text": "x"}"#.to_vec(),
            422,
            "invalid_request",
            Some("conversation_id"),
        ),
        (
            "send: unknown in_reply_to",
            Method::POST,
            "/v1/messages",
            Some(TOKEN),
            br#"{"channel": "web", "to": "v", "text": "x", "in_reply_to": "msg_01AAAAAAAAAAAAAAAAAAAAAAAA"}"#.to_vec(),
            422,
            "invalid_request",
            Some("in_reply_to"),
        ),
        (
            "send: wrong scope",
            Method::POST,
            "/v1/messages",
            Some(READ_TOKEN),
            br#"{"channel": "web", "to": "v", "text": "x"}"#.to_vec(),
            403,
            "forbidden",
            None,
        ),
        ("admin: wrong scope", Method::GET, "/v1/webhooks", Some(READ_TOKEN), vec![], 403, "forbidden", None),
        ("read: missing token", Method::GET, "/v1/events", None, vec![], 401, "unauthorized", None),
        (
            "no such message",
            Method::GET,
            "/v1/messages/msg_01AAAAAAAAAAAAAAAAAAAAAAAA",
            Some(TOKEN),
            vec![],
            404,
            "not_found",
            None,
        ),
        ("no such route", Method::GET, "/v2/nothing", Some(TOKEN), vec![], 404, "not_found", None),
    ];
    for (name, method, path, token, body, status, code, field) in cases {
        let body = (!body.is_empty()).then_some(body);
        let (got, error) = server.request(method, path, token, body).await;
        assert_eq!(got, status, "{name}: {error}");
        assert_eq!(error["error"]["code"], code, "{name}: {error}");
        assert!(error["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{name}: {error}");
        if let Some(field) = field {
            assert_eq!(error["error"]["field"], field, "{name}: {error}");
        }
    }
    // Nothing of the above was stored: no events, no messages, no blobs, no sends.
    assert_eq!(server.all_events().await, Vec::<serde_json::Value>::new());
    let blobs = server.dir.path().join("blobs");
    let loose = std::fs::read_dir(&blobs).unwrap().filter(|e| e.as_ref().unwrap().file_name() != "packs").count();
    let packs = std::fs::read_dir(blobs.join("packs")).unwrap().count();
    assert_eq!((loose, packs), (0, 0), "no attachment blob was written");
    assert!(backend.requests().is_empty());
    server.stop().await;
}
