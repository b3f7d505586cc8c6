//! Real responses and delivered events validated against the served OpenAPI document and the
//! JSON Schemas (with Python's jsonschema and openapi-spec-validator).

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::*;

#[tokio::test]
async fn responses_and_events_match_the_published_contract() {
    let helpdesk = Receiver::start().await;
    let backend = Receiver::start().await;
    backend.respond_with(|c| if c.json()["to"][0]["address"] == "refuses" { Reply::status(400) } else { Reply::ok() });
    let server = TestServer::start(&format!(
        "{}{}",
        api_channel("web", Some(&backend), ""),
        webhook("helpdesk", &helpdesk, "[\"1s\"]")
    ))
    .await;
    let mut items: Vec<Value> = Vec::new();
    let mut response = |path: &str, method: &str, status: u16, instance: &Value| {
        items.push(json!({"path": path, "method": method, "status": status.to_string(), "instance": instance}));
    };

    let (s, inbound) = server
        .inbound("web", json!({"from": {"address": "v1", "name": "Ann"}, "text": "Hi", "external_id": "e1",
                               "attachments": [{"filename": "a.txt", "content_type": "text/plain", "content_base64": "aGk="}]}))
        .await;
    response("/v1/channels/{id}/inbound", "post", s, &inbound);
    let (s, dup) = server.inbound("web", json!({"from": {"address": "v1"}, "text": "Hi", "external_id": "e1"})).await;
    response("/v1/channels/{id}/inbound", "post", s, &dup);
    let (s, queued) = server
        .post(
            "/v1/messages",
            json!({"conversation_id": inbound["conversation_id"], "text": "Hello", "html": "<p>Hello</p>"}),
        )
        .await;
    response("/v1/messages", "post", s, &queued);
    let (_, refused) = server.post("/v1/messages", json!({"channel": "web", "to": "refuses", "text": "x"})).await;
    backend.wait_until(Duration::from_secs(10), "two sends", |r| r.len() == 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let cnv = inbound["conversation_id"].as_str().unwrap();
    for id in [inbound["message_id"].as_str().unwrap(), queued["id"].as_str().unwrap(), refused["id"].as_str().unwrap()]
    {
        let (s, m) = server.get(&format!("/v1/messages/{id}")).await;
        response("/v1/messages/{id}", "get", s, &m);
    }
    let (s, c) = server.get(&format!("/v1/conversations/{cnv}")).await;
    response("/v1/conversations/{id}", "get", s, &c);
    let (s, list) = server.get(&format!("/v1/conversations/{cnv}/messages")).await;
    response("/v1/conversations/{id}/messages", "get", s, &list);
    let (s, patched) = server
        .request(
            reqwest::Method::PATCH,
            &format!("/v1/conversations/{cnv}"),
            Some(TOKEN),
            Some(br#"{"status": "closed"}"#.to_vec()),
        )
        .await;
    response("/v1/conversations/{id}", "patch", s, &patched);
    let (s, contact) = server.get(&format!("/v1/contacts/{}", c["contact_id"].as_str().unwrap())).await;
    response("/v1/contacts/{id}", "get", s, &contact);
    let (s, events) = server.get("/v1/events?after=0").await;
    response("/v1/events", "get", s, &events);
    helpdesk
        .wait_until(Duration::from_secs(10), "message.failed", |r| r.iter().any(|c| c.event_type() == "message.failed"))
        .await;
    let (s, hook) = server.get("/v1/webhooks/helpdesk").await;
    response("/v1/webhooks/{id}", "get", s, &hook);
    let (s, hooks) = server.get("/v1/webhooks").await;
    response("/v1/webhooks", "get", s, &hooks);
    let (s, dead) = server.get("/v1/webhooks/helpdesk/dead_letters").await;
    response("/v1/webhooks/{id}/dead_letters", "get", s, &dead);
    let (s, replay) = server.post("/v1/webhooks/helpdesk/replay", json!({"after_seq": 0})).await;
    response("/v1/webhooks/{id}/replay", "post", s, &replay);
    let (s, retry) = server.post("/v1/webhooks/helpdesk/dead_letters/retry", json!({})).await;
    response("/v1/webhooks/{id}/dead_letters/retry", "post", s, &retry);
    let (s, bad) = server.inbound("web", json!({"from": {}})).await;
    response("/v1/channels/{id}/inbound", "post", s, &bad);
    let (s, unauthorized) = server.request(reqwest::Method::GET, "/v1/events", None, None).await;
    response("/v1/events", "get", s, &unauthorized);
    let (s, missing) = server.get("/v1/messages/msg_01AAAAAAAAAAAAAAAAAAAAAAAA").await;
    response("/v1/messages/{id}", "get", s, &missing);
    let (s, ready) = server.request(reqwest::Method::GET, "/readyz", None, None).await;
    response("/readyz", "get", s, &ready);

    // Every event the consumer received, and every one in the log, is a valid envelope whose
    // data matches its type's schema.
    let mut delivered: Vec<Value> = helpdesk.accepted().iter().map(|c| c.json()).collect();
    delivered.extend(events["events"].as_array().unwrap().iter().cloned());
    let types: std::collections::HashSet<String> =
        delivered.iter().map(|e| e["type"].as_str().unwrap().to_owned()).collect();
    for t in [
        "message.received",
        "message.queued",
        "message.sent",
        "message.failed",
        "conversation.created",
        "conversation.updated",
        "contact.created",
    ] {
        assert!(types.contains(t), "no {t} event to validate; got {types:?}");
    }
    items.extend(delivered.into_iter().map(|e| json!({"schema": "Event", "instance": e})));

    server.validate_contract(items).await;
    server.stop().await;
}
