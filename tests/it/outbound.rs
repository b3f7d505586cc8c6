//! Outbound: idempotency, rate limits, retries, failures, status events.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::*;

/// Polls a message until it reaches `status`.

#[tokio::test]
async fn reply_to_a_conversation_is_posted_signed_to_the_channel() {
    let backend = Receiver::start().await;
    backend.respond_with(|_| Reply { status: 200, headers: vec![], body: r#"{"id": "remote-1"}"#.into() });
    let server = TestServer::start(&api_channel("web", Some(&backend), "")).await;
    let (_, inbound) =
        server.inbound("web", json!({"from": {"address": "visitor-42"}, "text": "Hi", "thread": "chat-42"})).await;
    let (code, queued) = server
        .post(
            "/v1/messages",
            json!({"conversation_id": inbound["conversation_id"], "text": "Hello Ann", "in_reply_to": inbound["message_id"]}),
        )
        .await;
    assert_eq!(code, 202, "{queued}");
    assert_eq!(queued["status"], "queued");
    assert_eq!(queued["conversation_id"], inbound["conversation_id"]);
    let id = queued["id"].as_str().unwrap();

    let posts = backend.wait_until(Duration::from_secs(10), "the reply", |r| !r.is_empty()).await;
    let post = &posts[0];
    assert_eq!(post.path, "/replies");
    assert!(verify_signature(SECRET, post));
    assert_eq!(post.header("webhook-id"), id);
    let body = post.json();
    assert_eq!(body["text"], "Hello Ann");
    assert_eq!(body["to"], json!([{"address": "visitor-42"}]));
    assert_eq!(body["in_reply_to"], inbound["message_id"]);

    let sent = server.wait_status(id, "sent").await;
    assert_eq!(sent["provider"]["message_id"], "remote-1");
    let types: Vec<String> = server
        .all_events()
        .await
        .iter()
        .filter(|e| e["data"]["id"] == id)
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(types, vec!["message.queued", "message.sent"]);
    server.stop().await;
}

#[tokio::test]
async fn idempotency_key_returns_the_same_response_and_refuses_another_body() {
    let backend = Receiver::start().await;
    let server = TestServer::start(&api_channel("web", Some(&backend), "")).await;
    let send = |key: &'static str, body: Value| {
        let req = server
            .http
            .post(format!("{}/v1/messages", server.base))
            .bearer_auth(TOKEN)
            .header("idempotency-key", key)
            .json(&body);
        async move {
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let body = json!({"channel": "web", "to": "v1", "text": "once"});
    let (c1, r1) = send("key-1", body.clone()).await;
    // Same JSON, other key order and spacing: the same request.
    let (c2, r2) = send("key-1", json!({"text": "once", "to": "v1", "channel": "web"})).await;
    assert_eq!((c1, c2), (202, 202));
    assert_eq!(r1, r2);
    let (c3, r3) = send("key-1", json!({"channel": "web", "to": "v1", "text": "twice"})).await;
    assert_eq!(c3, 409, "{r3}");
    assert_eq!(r3["error"]["code"], "idempotency_conflict");
    let (c4, r4) = send("key-2", body).await;
    assert_eq!(c4, 202);
    assert_ne!(r4["id"], r1["id"]);

    backend.wait_until(Duration::from_secs(10), "two sends", |r| r.len() == 2).await;
    let queued = server.all_events().await.into_iter().filter(|e| e["type"] == "message.queued").count();
    assert_eq!(queued, 2, "a repeated key queues nothing");
    server.stop().await;
}

#[tokio::test]
async fn channel_and_per_recipient_limits_are_honoured() {
    let backend = Receiver::start().await;
    let server =
        TestServer::start(&api_channel("web", Some(&backend), "per_second = 8\nper_recipient_per_second = 2")).await;
    // 6 to one recipient, 14 spread over 7 others: 20 in all.
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(server.post("/v1/messages", json!({"channel": "web", "to": "hot", "text": format!("h{i}")})).await.1);
    }
    for i in 0..14 {
        ids.push(
            server
                .post("/v1/messages", json!({"channel": "web", "to": format!("r{}", i % 7), "text": format!("c{i}")}))
                .await
                .1,
        );
    }
    assert!(ids.iter().all(|r| r["status"] == "queued"));
    let posts = backend.wait_until(Duration::from_secs(30), "20 sends", |r| r.len() == 20).await;

    // Per recipient at 2/s: 6 sends span at least 5 periods (2.5 s), and no two come close
    // together. Spans are measured where the sends arrive, so allow for delivery jitter.
    let mut by_recipient: HashMap<String, Vec<std::time::Instant>> = HashMap::new();
    for p in &posts {
        by_recipient.entry(p.json()["to"][0]["address"].as_str().unwrap().to_owned()).or_default().push(p.at);
    }
    let hot = &by_recipient["hot"];
    assert_eq!(hot.len(), 6);
    let span = *hot.last().unwrap() - hot[0];
    assert!(span >= Duration::from_millis(2300), "6 sends to one recipient within {span:?} at 2/s");
    for (recipient, times) in &by_recipient {
        for w in times.windows(2) {
            assert!(w[1] - w[0] >= Duration::from_millis(250), "{recipient}: two sends {:?} apart at 2/s", w[1] - w[0]);
        }
    }
    // Channel at 8/s: 20 sends span at least 19 periods (2.375 s); no one-second window holds
    // much more than 8.
    let span = posts.last().unwrap().at - posts[0].at;
    assert!(span >= Duration::from_millis(2200), "20 sends within {span:?} at 8/s");
    let offsets: Vec<Duration> = posts.iter().map(|p| p.at - posts[0].at).collect();
    for (i, t) in offsets.iter().enumerate() {
        let in_window = offsets[i..].iter().take_while(|u| **u < *t + Duration::from_secs(1)).count();
        assert!(in_window <= 10, "{in_window} sends within one second at 8/s");
    }
    server.stop().await;
}

#[tokio::test]
async fn temporary_failures_are_retried_and_permanent_ones_fail() {
    let backend = Receiver::start().await;
    let calls = Arc::new(AtomicUsize::new(0));
    let n = calls.clone();
    backend.respond_with(move |c| {
        let to = c.json()["to"][0]["address"].as_str().unwrap().to_owned();
        match to.as_str() {
            // First attempt 503, then accepted.
            "flaky" => {
                if n.fetch_add(1, Ordering::SeqCst) == 0 {
                    Reply::status(503)
                } else {
                    Reply::ok()
                }
            }
            "unknown" => Reply::status(400),
            _ => Reply::status(500),
        }
    });
    let config = api_channel("web", Some(&backend), "") + "\n[outbound]\nretry_schedule = [\"100ms\", \"100ms\"]\n";
    let server = TestServer::start(&config).await;
    let send = |to: &str| server.post("/v1/messages", json!({"channel": "web", "to": to, "text": "x"}));
    let flaky = send("flaky").await.1["id"].as_str().unwrap().to_owned();
    let refused = send("unknown").await.1["id"].as_str().unwrap().to_owned();
    let down = send("down").await.1["id"].as_str().unwrap().to_owned();

    let sent = server.wait_status(&flaky, "sent").await;
    assert!(sent["error"].is_null());
    let attempts: Vec<_> = backend.requests().into_iter().filter(|c| c.json()["id"] == flaky.as_str()).collect();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0].header("webhook-id"), attempts[1].header("webhook-id"));

    let failed = server.wait_status(&refused, "failed").await;
    assert_eq!(failed["error"]["permanent"], true);
    assert_eq!(failed["error"]["code"], "http_400");
    assert_eq!(
        backend.requests().iter().filter(|c| c.json()["id"] == refused.as_str()).count(),
        1,
        "a permanent error is not retried"
    );

    let exhausted = server.wait_status(&down, "failed").await;
    assert_eq!(exhausted["error"]["permanent"], false);
    assert!(exhausted["error"]["message"].as_str().unwrap().contains("gave up after 3 attempts"), "{exhausted}");

    let events = server.all_events().await;
    let failed_events: Vec<_> = events.iter().filter(|e| e["type"] == "message.failed").collect();
    assert_eq!(failed_events.len(), 2);
    assert!(failed_events.iter().all(|e| e["data"]["error"]["code"].is_string()));
    server.stop().await;
}

#[tokio::test]
async fn sends_survive_a_restart_and_are_not_lost() {
    let backend = Receiver::start().await;
    backend.respond_with(|_| Reply::status(503));
    let config = api_channel("web", Some(&backend), "") + "\n[outbound]\nretry_schedule = [\"300ms\", \"300ms\", \"300ms\", \"300ms\", \"300ms\", \"300ms\", \"300ms\", \"300ms\", \"300ms\", \"300ms\"]\n";
    let server = TestServer::start(&config).await;
    let id = server.post("/v1/messages", json!({"channel": "web", "to": "v", "text": "persist"})).await.1["id"]
        .as_str()
        .unwrap()
        .to_owned();
    backend.wait_until(Duration::from_secs(10), "a failed attempt", |r| !r.is_empty()).await;
    let dir = server.stop().await;
    backend.respond_with(|_| Reply::ok());
    let server = TestServer::start_in(dir, &config).await;
    server.wait_status(&id, "sent").await;
    server.stop().await;
}

/// A channel removed by a reload while a reply to it waits does not fail the reply at once: it
/// waits through the retry schedule, and goes out (once) when a reload brings the channel back.
#[tokio::test]
async fn a_reply_queued_to_a_removed_channel_waits_and_goes_out_when_the_channel_returns() {
    let backend = Receiver::start().await;
    let outbound = "\n[outbound]\nretry_schedule = [\"100ms\", \"100ms\", \"100ms\", \"30s\"]\n";
    // One send per 50 s: the second reply is held by the limit.
    let mut server = TestServer::start(&(api_channel("web", Some(&backend), "per_second = 0.02") + outbound)).await;
    let (_, inbound) = server.inbound("web", json!({"from": {"address": "ann"}, "text": "hi", "thread": "t"})).await;
    let mut replies = Vec::new();
    for text in ["one", "two"] {
        let (code, r) =
            server.post("/v1/messages", json!({"conversation_id": inbound["conversation_id"], "text": text})).await;
        assert_eq!(code, 202, "{r}");
        replies.push(r["id"].as_str().unwrap().to_owned());
    }
    server.wait_status(&replies[0], "sent").await;

    let report = server.reload(outbound).await;
    assert!(report.applied.iter().any(|a| a.contains("channel `web` removed")), "{report:?}");
    // Made due by the reload, tried three times without a channel, now waiting 30 s.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (_, waiting) = server.get(&format!("/v1/messages/{}", replies[1])).await;
    assert_eq!(waiting["status"], "queued", "{waiting}");

    server.reload(&(api_channel("web", Some(&backend), "per_second = 100") + outbound)).await;
    server.wait_status(&replies[1], "sent").await;
    let posts = backend.requests();
    assert_eq!(posts.iter().filter(|c| c.json()["id"] == replies[1].as_str()).count(), 1, "sent once");
    assert!(!server.all_events().await.iter().any(|e| e["type"] == "message.failed"));
    server.stop().await;
}

/// A chat bot's answers are automatic too: on an api channel automatic sends are not limited
/// unless the channel says so (mail channels limit them to end mail loops); when it does, the
/// one over the limit is refused with 422 and nothing is sent.
#[tokio::test]
async fn automatic_sends_on_api_channels_are_limited_only_when_configured() {
    let backend = Receiver::start().await;
    for (limits, allowed) in [("", 5), ("auto_replies_per_contact_per_hour = 2", 2)] {
        let server = TestServer::start(&api_channel("web", Some(&backend), limits)).await;
        let (_, inbound) =
            server.inbound("web", json!({"from": {"address": "visitor-7"}, "text": "Hi", "thread": "chat-7"})).await;
        let mut statuses = Vec::new();
        for n in 0..5 {
            let bot =
                json!({"conversation_id": inbound["conversation_id"], "text": format!("Bot {n}"), "auto_reply": true});
            let (status, body) = server.post("/v1/messages", bot).await;
            if status == 422 {
                assert_eq!(body["error"]["code"], "auto_reply_limit", "{body}");
            }
            statuses.push(status);
        }
        let accepted = statuses.iter().filter(|s| **s == 202).count();
        assert_eq!(accepted, allowed, "{limits:?}: {statuses:?}");
        server.stop().await;
    }
}
