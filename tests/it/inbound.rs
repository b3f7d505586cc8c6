//! Inbound through the api channel to a signed webhook.

use std::time::Duration;

use serde_json::json;

use crate::harness::*;

#[tokio::test]
async fn inbound_message_reaches_the_webhook_signed() {
    let helpdesk = Receiver::start().await;
    let server =
        TestServer::start(&format!("{}{}", api_channel("web", None, ""), webhook("helpdesk", &helpdesk, "[\"1s\"]")))
            .await;

    let (status, body) = server
        .inbound(
            "web",
            json!({"from": {"address": "visitor-42", "name": "Ann"}, "text": "Hello", "html": null, "subject": null,
                   "external_id": "abc-1", "thread": "chat-42",
                   "attachments": [{"filename": "a.png", "content_type": "image/png", "content_base64": "aGVsbG8="}]}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["duplicate"], false);
    let message_id = body["message_id"].as_str().unwrap().to_owned();
    assert!(message_id.starts_with("msg_"));
    assert!(body["conversation_id"].as_str().unwrap().starts_with("cnv_"));

    let event = helpdesk.expect_event("message.received").await;
    let message = &event["data"];
    assert_eq!(message["id"], message_id.as_str());
    assert_eq!(message["text"], "Hello");
    assert_eq!(message["reply_text"], "Hello");
    assert_eq!(message["from"]["name"], "Ann");
    assert_eq!(message["channel"], json!({"id": "web", "type": "api"}));
    assert_eq!(message["provider"]["message_id"], "abc-1");
    assert_eq!(message["stitch"]["reason"], "new");
    let attachment = &message["attachments"][0];
    assert_eq!(attachment["size"], 5);
    assert_eq!(attachment["sha256"], "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");

    // Every delivery carries a valid Standard Webhooks signature over the exact bytes sent.
    let deliveries = helpdesk.accepted();
    assert!(deliveries.len() >= 2, "conversation.created and message.received");
    for d in &deliveries {
        assert!(verify_signature(SECRET, d), "bad signature on {}", d.header("webhook-id"));
        assert_eq!(d.header("webhook-id"), d.json()["id"].as_str().unwrap());
        let ts: i64 = d.header("webhook-timestamp").parse().unwrap();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
        assert!((now - ts).abs() < 300, "timestamp {ts} is not current");
    }
    // The consumer filter ("all" by default) delivered conversation.created before the message.
    let types: Vec<String> = deliveries.iter().map(|d| d.event_type()).collect();
    let created = types.iter().position(|t| t == "conversation.created").unwrap();
    let received = types.iter().position(|t| t == "message.received").unwrap();
    assert!(created < received, "{types:?}");

    // The attachment is served back byte for byte.
    let url = attachment["url"].as_str().unwrap();
    let bytes = server.http.get(url).bearer_auth(TOKEN).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(&bytes[..], b"hello");
    server.stop().await;
}

#[tokio::test]
async fn official_standardwebhooks_package_verifies_our_signatures() {
    let helpdesk = Receiver::start().await;
    let hook = format!(
        "{}\n[[webhooks]]\nid = \"h\"\nurl = \"{}/events\"\nsecret = \"{SECRET}\"\nprevious_secrets = [\"{OLD_SECRET}\"]\n",
        api_channel("web", None, ""),
        helpdesk.url
    );
    let server = TestServer::start(&hook).await;
    for i in 0..5 {
        let (status, _) =
            server.inbound("web", json!({"from": {"address": format!("v{i}")}, "text": format!("héllo {i} ✓")})).await;
        assert_eq!(status, 202);
    }
    let deliveries = helpdesk
        .wait_until(Duration::from_secs(10), "5 messages", |r| {
            r.iter().filter(|c| c.event_type() == "message.received").count() == 5
        })
        .await;
    assert!(
        deliveries.iter().all(|d| d.header("webhook-signature").split(' ').count() == 2),
        "one signature per secret"
    );
    let as_json = |secret: &str| {
        json!({
            "secret": secret,
            "deliveries": deliveries.iter().map(|d| json!({
                "headers": {
                    "webhook-id": d.header("webhook-id"),
                    "webhook-timestamp": d.header("webhook-timestamp"),
                    "webhook-signature": d.header("webhook-signature"),
                },
                "body": String::from_utf8(d.body.clone()).unwrap(),
            })).collect::<Vec<_>>(),
        })
    };
    // Both the current and the previous secret verify during a rotation.
    let out = python("verify_webhooks.py", &[], &as_json(SECRET));
    assert!(out.contains(&format!("verified {}", deliveries.len())), "{out}");
    python("verify_webhooks.py", &[], &as_json(OLD_SECRET));
    server.stop().await;
}

/// `limits.inbound_per_sender_per_hour` on an api channel: the caller is told at once (422
/// `rejected`, with the reason) when one sender goes over; other senders, and other channels,
/// go on; a reload raising the limit lets the sender in again.
#[tokio::test]
async fn a_sender_over_the_hourly_limit_is_refused_with_the_reason() {
    let limited = api_channel("web", None, "inbound_per_sender_per_hour = 2");
    let server = TestServer::start(&format!("{limited}{}", api_channel("chat", None, ""))).await;
    let from = |who: &str, n: u32| json!({"from": {"address": who}, "text": format!("spam {n}")});
    for n in 0..2 {
        assert_eq!(server.inbound("web", from("bot", n)).await.0, 202);
    }
    let held_back = json!({"from": {"address": "bot"}, "text": "spam 2", "external_id": "e-2"});
    let (status, refused) = server.inbound("web", held_back.clone()).await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["error"]["code"], "rejected");
    assert_eq!(
        refused["error"]["message"],
        "more than 2 messages from this sender within an hour (limits.inbound_per_sender_per_hour)"
    );
    assert_eq!(server.inbound("web", from("ann", 0)).await.0, 202, "another sender");
    for n in 0..3 {
        assert_eq!(server.inbound("chat", from("bot", n)).await.0, 202, "a channel without the limit");
    }
    let received = server.all_events().await.into_iter().filter(|e| e["type"] == "message.received").count();
    assert_eq!(received, 6);
    let (_, listed) = server.get("/v1/channels/web/rejected").await;
    assert_eq!(listed["rejected"].as_array().map(Vec::len), Some(1), "{listed}");
    // A reload raising the limit lets the sender in again, the held-back message too when its
    // caller retries it (a limit judges the moment, not the message).
    let mut server = server;
    let raised = api_channel("web", None, "inbound_per_sender_per_hour = 5");
    let reloaded = server.reload(&format!("{raised}{}", api_channel("chat", None, ""))).await;
    assert!(reloaded.applied.iter().any(|a| a.contains("channel `web` reconfigured")), "{:?}", reloaded.applied);
    let (status, retried) = server.inbound("web", held_back).await;
    assert_eq!((status, &retried["duplicate"]), (202, &json!(false)), "{retried}");
    assert_eq!(server.inbound("web", from("bot", 3)).await.0, 202);
    // The listed refusal names the message the held-back item became.
    let (_, listed) = server.get("/v1/channels/web/rejected").await;
    assert_eq!(listed["rejected"][0]["accepted_message_id"], retried["message_id"], "{listed}");
    assert!(listed["rejected"][0]["accepted_at"].is_string(), "{listed}");
    server.stop().await;
}

#[tokio::test]
async fn duplicate_external_id_stores_one_message_and_emits_one_event() {
    let server = TestServer::start(&api_channel("web", None, "")).await;
    let body = json!({"from": {"address": "v1"}, "text": "once", "external_id": "ext-7"});
    let (s1, first) = server.inbound("web", body.clone()).await;
    let (s2, second) =
        server.inbound("web", json!({"from": {"address": "v1"}, "text": "changed", "external_id": "ext-7"})).await;
    assert_eq!((s1, s2), (202, 202));
    assert_eq!(first["duplicate"], false);
    assert_eq!(second["duplicate"], true);
    assert_eq!(first["message_id"], second["message_id"]);
    assert_eq!(first["conversation_id"], second["conversation_id"]);

    let events = server.all_events().await;
    let received: Vec<_> = events.iter().filter(|e| e["type"] == "message.received").collect();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0]["data"]["text"], "once");
    assert_eq!(events.len(), 3, "contact, conversation, message: {events:?}");
    // The same external id on another channel is another message.
    server.stop().await;
}

#[tokio::test]
async fn same_sender_and_thread_join_one_conversation_and_contact() {
    let server = TestServer::start(&format!("{}{}", api_channel("web", None, ""), api_channel("form", None, ""))).await;
    let (_, a) = server.inbound("web", json!({"from": {"address": "v1"}, "text": "1", "thread": "t1"})).await;
    let (_, b) = server.inbound("web", json!({"from": {"address": "v1"}, "text": "2", "thread": "t1"})).await;
    let (_, c) = server.inbound("web", json!({"from": {"address": "v1"}, "text": "3", "thread": "t2"})).await;
    let (_, d) = server.inbound("form", json!({"from": {"address": "v1"}, "text": "4", "thread": "t1"})).await;
    assert_eq!(a["conversation_id"], b["conversation_id"]);
    assert_ne!(a["conversation_id"], c["conversation_id"]);
    assert_ne!(a["conversation_id"], d["conversation_id"], "threads are per channel");

    let (_, msg_b) = server.get(&format!("/v1/messages/{}", b["message_id"].as_str().unwrap())).await;
    assert_eq!(msg_b["stitch"]["reason"], "thread");
    let (_, msg_c) = server.get(&format!("/v1/messages/{}", c["message_id"].as_str().unwrap())).await;
    assert_eq!(msg_b["contact_id"], msg_c["contact_id"], "one contact per identity");

    let (status, listing) =
        server.get(&format!("/v1/conversations/{}/messages", a["conversation_id"].as_str().unwrap())).await;
    assert_eq!(status, 200);
    let texts: Vec<_> = listing["messages"].as_array().unwrap().iter().map(|m| m["text"].clone()).collect();
    assert_eq!(texts, vec![json!("1"), json!("2")]);
    let (_, contact) = server.get(&format!("/v1/contacts/{}", msg_b["contact_id"].as_str().unwrap())).await;
    assert_eq!(contact["identities"], json!(["ext:web:v1"]));
    server.stop().await;
}

/// `server.public_url` changes in an appliance's life (a reverse proxy put in front, a new host
/// name; every test server restart here listens on a new port, so its public URL changes too).
/// Whatever is read out after the restart carries the current one: the message API, the event
/// log, a webhook replay, and a reply queued before the restart and sent after it. The log
/// itself is not rewritten.
#[tokio::test]
async fn attachment_urls_follow_server_public_url_across_a_restart() {
    let helpdesk = Receiver::start().await;
    let backend = Receiver::start().await;
    backend.respond_with(|_| Reply::status(503));
    let config =
        format!("{}{}", api_channel("web", Some(&backend), ""), webhook("h", &helpdesk, "[\"50ms\", \"50ms\"]"));
    let server = TestServer::start(&config).await;
    let file = json!([{"filename": "a.txt", "content_type": "text/plain", "content_base64": "aGVsbG8="}]);
    let (_, inbound) =
        server.inbound("web", json!({"from": {"address": "visitor-7"}, "text": "Hi", "attachments": file})).await;
    let message_id = inbound["message_id"].as_str().unwrap().to_owned();
    let (code, reply) = server
        .post(
            "/v1/messages",
            json!({"conversation_id": inbound["conversation_id"], "text": "See", "attachments": file}),
        )
        .await;
    assert_eq!(code, 202, "{reply}");
    let reply_id = reply["id"].as_str().unwrap().to_owned();
    backend.wait_until(Duration::from_secs(10), "a refused attempt", |r| !r.is_empty()).await;
    let before = format!("{}/v1/attachments/", server.base);
    let (_, message) = server.get(&format!("/v1/messages/{message_id}")).await;
    assert!(message["attachments"][0]["url"].as_str().unwrap().starts_with(&before), "{message}");
    helpdesk
        .wait_until(Duration::from_secs(10), "the first round", |r| {
            r.iter().any(|c| c.event_type() == "message.queued")
        })
        .await;
    let dir = server.stop().await;

    backend.respond_with(|_| Reply::ok());
    let server = TestServer::start_in(dir, &config).await;
    let now = format!("{}/v1/attachments/", server.base);
    assert_ne!(now, before, "the restart changed public_url");
    let (_, message) = server.get(&format!("/v1/messages/{message_id}")).await;
    let url = message["attachments"][0]["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with(&now), "{message}");
    let download = server.http.get(&url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(download.text().await.unwrap(), "hello");
    let (_, listed) =
        server.get(&format!("/v1/conversations/{}/messages", inbound["conversation_id"].as_str().unwrap())).await;
    assert!(
        listed["messages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["attachments"][0]["url"].as_str().unwrap().starts_with(&now)),
        "{listed}"
    );
    let events = server.all_events().await;
    let attached: Vec<&str> = events.iter().filter_map(|e| e["data"]["attachments"][0]["url"].as_str()).collect();
    assert!(!attached.is_empty() && attached.iter().all(|u| u.starts_with(&now)), "{attached:?}");

    let posts = backend
        .wait_until(Duration::from_secs(20), "the reply, sent after the restart", |r| {
            r.iter().any(|c| c.answered == 200)
        })
        .await;
    let sent = posts.iter().rev().find(|c| c.answered == 200).unwrap().json();
    assert_eq!(sent["id"], reply_id.as_str());
    assert!(sent["attachments"][0]["url"].as_str().unwrap().starts_with(&now), "{sent}");

    let delivered = helpdesk.accepted().len();
    let (code, _) = server.post("/v1/webhooks/h/replay", json!({"after_seq": 0})).await;
    assert_eq!(code, 202);
    let replayed = helpdesk
        .wait_until(Duration::from_secs(10), "the replay", |r| {
            r[delivered.min(r.len())..].iter().any(|c| c.event_type() == "message.received")
        })
        .await;
    let again = replayed[delivered..].iter().find(|c| c.event_type() == "message.received").unwrap();
    assert!(verify_signature(SECRET, again));
    assert!(again.json()["data"]["attachments"][0]["url"].as_str().unwrap().starts_with(&now), "{}", again.json());

    let db = rusqlite::Connection::open(server.dir.path().join("switchboard.db")).unwrap();
    let stored: String =
        db.query_row("SELECT data FROM events WHERE type = 'message.received'", [], |r| r.get(0)).unwrap();
    assert!(stored.contains(&before), "the log keeps what it recorded: {stored}");
    server.stop().await;
}
