//! Webhook consumer semantics: backlog drain in order (and its gauge), same webhook-id on
//! retries, Retry-After, 410 disables, dead letters, replay.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::*;

/// Retries every 200 ms for long enough to outlast the outage.
const PATIENT: &str = "[\"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\"]";

#[tokio::test]
async fn consumer_down_builds_a_backlog_that_drains_in_order_per_conversation() {
    let helpdesk = Receiver::start().await;
    let up = Arc::new(AtomicBool::new(false));
    let flag = up.clone();
    helpdesk.respond_with(move |_| if flag.load(Ordering::SeqCst) { Reply::ok() } else { Reply::status(503) });
    let config = format!(
        "{}{}",
        api_channel("web", None, ""),
        webhook_for("helpdesk", &helpdesk, PATIENT, "[\"message.received\"]")
    );
    let mut server = TestServer::start(&config).await;

    // 100 messages across 10 conversations, interleaved, while the consumer is down.
    let mut sent: HashMap<String, Vec<String>> = HashMap::new();
    for i in 0..100 {
        let thread = format!("chat-{}", i % 10);
        let (status, body) = server
            .inbound(
                "web",
                json!({"from": {"address": format!("v{}", i % 10)}, "text": format!("m{i}"), "thread": thread}),
            )
            .await;
        assert_eq!(status, 202);
        sent.entry(body["conversation_id"].as_str().unwrap().to_owned())
            .or_default()
            .push(body["message_id"].as_str().unwrap().to_owned());
    }
    helpdesk.wait_until(Duration::from_secs(10), "failed attempts", |r| r.len() >= 20).await;
    let (_, status) = server.get("/v1/webhooks/helpdesk").await;
    assert!(status["backlog"].as_u64().unwrap() >= 90, "{status}");
    assert!(status["last_error"]["message"].as_str().unwrap().contains("HTTP 503"), "{status}");
    let backlog_gauge = |metrics: String| {
        let series = "switchboard_webhook_backlog{consumer=\"helpdesk\"} ";
        metrics.lines().find_map(|l| l.strip_prefix(series)?.parse::<f64>().ok())
    };
    let gauge = backlog_gauge(server.metrics().await);
    assert!(gauge.is_some_and(|backlog| backlog >= 90.0), "{gauge:?}");

    up.store(true, Ordering::SeqCst);
    helpdesk
        .wait_until(Duration::from_secs(30), "all 100 delivered", |r| {
            r.iter().filter(|c| c.answered == 200).count() == 100
        })
        .await;

    let accepted = helpdesk.accepted();
    let mut delivered: HashMap<String, Vec<(u64, String)>> = HashMap::new();
    for c in &accepted {
        let e = c.json();
        delivered
            .entry(e["data"]["conversation_id"].as_str().unwrap().to_owned())
            .or_default()
            .push((e["seq"].as_u64().unwrap(), e["data"]["id"].as_str().unwrap().to_owned()));
    }
    assert_eq!(delivered.len(), 10);
    for (conversation, events) in &delivered {
        let seqs: Vec<u64> = events.iter().map(|(s, _)| *s).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "conversation {conversation} out of order: {seqs:?}");
        let ids: Vec<String> = events.iter().map(|(_, id)| id.clone()).collect();
        assert_eq!(&ids, &sent[conversation], "each conversation's messages in the order they arrived");
    }
    // Each event was delivered once, and every failed attempt used the id it was finally delivered with.
    let delivered_ids: HashSet<&str> = accepted.iter().map(|c| c.header("webhook-id")).collect();
    assert_eq!(delivered_ids.len(), 100);
    let failed = helpdesk.requests().into_iter().filter(|c| c.answered == 503).collect::<Vec<_>>();
    assert!(!failed.is_empty());
    for f in &failed {
        assert!(delivered_ids.contains(f.header("webhook-id")), "a retry changed its webhook-id");
        assert_eq!(f.json()["id"], f.header("webhook-id"));
    }
    // The last acknowledgements are recorded a moment after the receiver answered them.
    let mut status = Value::Null;
    for _ in 0..100 {
        status = server.get("/v1/webhooks/helpdesk").await.1;
        if status["backlog"] == 0 && status["in_flight"] == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!((status["backlog"].as_u64(), status["in_flight"].as_u64()), (Some(0), Some(0)), "{status}");
    // A reload that removes the consumer removes its backlog gauge, rather than leave its last
    // value to alert on.
    server.reload(&api_channel("web", None, "")).await;
    let metrics = server.metrics().await;
    assert_eq!(backlog_gauge(metrics.clone()), None, "{metrics}");
    server.stop().await;
}

#[tokio::test]
async fn retry_after_on_429_is_honoured() {
    let helpdesk = Receiver::start().await;
    let calls = Arc::new(AtomicUsize::new(0));
    let n = calls.clone();
    helpdesk.respond_with(move |_| {
        if n.fetch_add(1, Ordering::SeqCst) == 0 {
            Reply { status: 429, headers: vec![("retry-after", "2".into())], body: String::new() }
        } else {
            Reply::ok()
        }
    });
    let config = format!(
        "{}{}",
        api_channel("web", None, ""),
        webhook_for("h", &helpdesk, "[\"50ms\", \"50ms\"]", "[\"message.received\"]")
    );
    let server = TestServer::start(&config).await;
    server.inbound("web", json!({"from": {"address": "v"}, "text": "x"})).await;
    let requests = helpdesk.wait_until(Duration::from_secs(10), "the retry", |r| r.len() == 2).await;
    assert_eq!(requests[0].answered, 429);
    assert_eq!(requests[0].header("webhook-id"), requests[1].header("webhook-id"));
    let gap = requests[1].at - requests[0].at;
    assert!(gap >= Duration::from_millis(1900), "retried after {gap:?}, not after Retry-After: 2 (schedule is 50 ms)");
    server.stop().await;
}

#[tokio::test]
async fn gone_410_disables_the_consumer_until_enabled_and_loses_nothing() {
    let helpdesk = Receiver::start().await;
    let gone = Arc::new(AtomicBool::new(true));
    let flag = gone.clone();
    helpdesk.respond_with(move |_| if flag.load(Ordering::SeqCst) { Reply::status(410) } else { Reply::ok() });
    let config = format!(
        "{}{}",
        api_channel("web", None, ""),
        webhook_for("h", &helpdesk, "[\"50ms\"]", "[\"message.received\"]")
    );
    let server = TestServer::start(&config).await;
    server.inbound("web", json!({"from": {"address": "a"}, "text": "1"})).await;
    helpdesk.wait_until(Duration::from_secs(10), "the 410", |r| !r.is_empty()).await;
    // The 410 reached the receiver before the gateway read it: wait until it has acted on it.
    let mut status = Value::Null;
    for _ in 0..200 {
        status = server.get("/v1/webhooks/h").await.1;
        if status["disabled"] == true {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status["disabled"], true, "{status}");
    assert!(status["disabled_reason"].as_str().unwrap().contains("410"), "{status}");
    // Disabled: no more attempts, even for new events.
    server.inbound("web", json!({"from": {"address": "b"}, "text": "2"})).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(helpdesk.requests().len(), 1, "a disabled consumer gets no attempts");

    gone.store(false, Ordering::SeqCst);
    let (code, enabled) = server.post("/v1/webhooks/h/enable", Value::Null).await;
    assert_eq!(code, 200, "{enabled}");
    assert_eq!(enabled["disabled"], false);
    helpdesk
        .wait_until(Duration::from_secs(10), "both events", |r| r.iter().filter(|c| c.answered == 200).count() == 2)
        .await;
    let texts: Vec<_> = helpdesk.accepted().iter().map(|c| c.json()["data"]["text"].clone()).collect();
    assert_eq!(texts, vec![json!("1"), json!("2")]);
    server.stop().await;
}

#[tokio::test]
async fn exhausted_retries_become_dead_letters_that_can_be_listed_and_retried() {
    let helpdesk = Receiver::start().await;
    let healthy = Arc::new(AtomicBool::new(false));
    let flag = healthy.clone();
    helpdesk.respond_with(move |_| if flag.load(Ordering::SeqCst) { Reply::ok() } else { Reply::status(500) });
    let config = format!(
        "{}{}",
        api_channel("web", None, ""),
        webhook_for("h", &helpdesk, "[\"50ms\", \"50ms\"]", "[\"message.received\"]")
    );
    let server = TestServer::start(&config).await;
    let (_, first) = server.inbound("web", json!({"from": {"address": "a"}, "text": "dies", "thread": "t"})).await;
    // 1 attempt + 2 retries, then dead; the next event of the same conversation then goes ahead.
    helpdesk.wait_until(Duration::from_secs(10), "3 attempts", |r| r.len() >= 3).await;
    healthy.store(true, Ordering::SeqCst);
    server.inbound("web", json!({"from": {"address": "a"}, "text": "lives", "thread": "t"})).await;
    helpdesk.wait_until(Duration::from_secs(10), "the second event", |r| r.iter().any(|c| c.answered == 200)).await;

    let (code, dead) = server.get("/v1/webhooks/h/dead_letters").await;
    assert_eq!(code, 200);
    let dead = dead["dead_letters"].as_array().unwrap().clone();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["attempts"], 3);
    assert_eq!(dead[0]["last_error"], "HTTP 500");
    let event_id = dead[0]["event_id"].as_str().unwrap().to_owned();
    let (_, status) = server.get("/v1/webhooks/h").await;
    assert_eq!(status["dead_letters"], 1);

    let (code, retried) = server.post("/v1/webhooks/h/dead_letters/retry", json!({"event_ids": [event_id]})).await;
    assert_eq!((code, retried["queued"].as_u64()), (202, Some(1)));
    helpdesk
        .wait_until(Duration::from_secs(10), "the dead letter", |r| r.iter().filter(|c| c.answered == 200).count() == 2)
        .await;
    let last = helpdesk.accepted().pop().unwrap();
    assert_eq!(last.header("webhook-id"), event_id);
    assert_eq!(last.json()["data"]["id"], first["message_id"]);
    let (_, dead) = server.get("/v1/webhooks/h/dead_letters").await;
    assert_eq!(dead["dead_letters"], json!([]));
    server.stop().await;
}

#[tokio::test]
async fn replay_redelivers_after_a_sequence_number() {
    let helpdesk = Receiver::start().await;
    let server =
        TestServer::start(&format!("{}{}", api_channel("web", None, ""), webhook("h", &helpdesk, "[\"50ms\"]"))).await;
    for i in 0..3 {
        server.inbound("web", json!({"from": {"address": "a"}, "text": format!("{i}")})).await;
    }
    // contact + conversation + 3 messages
    helpdesk.wait_until(Duration::from_secs(10), "5 events", |r| r.len() == 5).await;
    let first_round: Vec<String> = helpdesk.accepted().iter().map(|c| c.header("webhook-id").to_owned()).collect();
    // Replay skips events still owed (they are coming anyway): wait until all are recorded.
    for _ in 0..100 {
        let (_, status) = server.get("/v1/webhooks/h").await;
        if status["backlog"] == 0 && status["in_flight"] == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (code, body) = server.post("/v1/webhooks/h/replay", json!({"after_seq": 2})).await;
    assert_eq!((code, body["queued"].as_u64()), (202, Some(3)));
    helpdesk.wait_until(Duration::from_secs(10), "3 replayed", |r| r.len() == 8).await;
    let replayed: Vec<String> = helpdesk.accepted()[5..].iter().map(|c| c.header("webhook-id").to_owned()).collect();
    assert_eq!(replayed, first_round[2..].to_vec(), "replays carry the original event ids");
    let (code, _) = server.post("/v1/webhooks/nope/replay", json!({"after_seq": 0})).await;
    assert_eq!(code, 404);
    server.stop().await;
}

/// The `last_error` a consumer's status shows first (waiting up to 5 s for one).
async fn first_error(server: &TestServer, consumer: &str) -> String {
    for _ in 0..100 {
        let (_, status) = server.get(&format!("/v1/webhooks/{consumer}")).await;
        if let Some(message) = status["last_error"]["message"].as_str() {
            return message.to_owned();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("consumer {consumer} shows no last_error after 5 s");
}

/// A helpdesk behind nginx with its default body limit (1 MiB), and one behind a 100 kB limit
/// (Express's `express.json()` default): an event larger than a consumer's `max_body_bytes`
/// arrives cut to fit, signed, naming what was cut, instead of a 413 retried for days. The
/// API still has the whole message.
#[tokio::test]
async fn large_events_reach_a_consumer_behind_nginx_cut_to_its_body_limit() {
    let helpdesk = Receiver::start().await;
    let proxy = Nginx::start(
        &helpdesk,
        &format!("location /small {{ client_max_body_size 100k; proxy_pass {}; }}", helpdesk.url),
    )
    .await;
    let received = "events = [\"message.received\"]";
    let hooks = |small_limit: &str| {
        let big = webhook_at("big", &format!("{}/events", proxy.url), "[\"200ms\"]", received);
        let small = webhook_at("small", &format!("{}/small", proxy.url), "[\"1h\"]", received);
        format!("{big}{small}{small_limit}\n")
    };
    let config = format!("{}{}", api_channel("web", None, ""), hooks(""));
    let mut server = TestServer::start_adjusted(tempfile::tempdir().unwrap(), &config, |c| {
        c.server.max_body_bytes = 4 << 20;
    })
    .await;

    // 420 kB of text and 900 kB of HTML: 1.3 MB of event.
    let text = "Zażółć gęślą jaźń, \"dzień dobry\".\n".repeat(10_000);
    let html = format!("<html><body>{}</body></html>", "<p>Zażółć gęślą jaźń</p>".repeat(30_000));
    let (code, sent) = server.inbound("web", json!({"from": {"address": "ann"}, "text": text, "html": html})).await;
    assert_eq!(code, 202, "{sent}");
    let (_, whole) = server.get(&format!("/v1/messages/{}", sent["message_id"].as_str().unwrap())).await;
    assert_eq!(whole["html"], html.as_str(), "the API has the whole message");

    // Behind nginx's default limit: the HTML is left out, the text is whole.
    let big = helpdesk
        .wait_until(Duration::from_secs(10), "the event through nginx", |r| {
            r.iter().any(|c| c.path == "/events" && c.answered == 200)
        })
        .await
        .into_iter()
        .find(|c| c.path == "/events" && c.answered == 200)
        .unwrap();
    assert!(big.body.len() <= 1 << 20, "{} bytes", big.body.len());
    let event = big.json();
    assert_eq!(event["truncated"], json!(["html"]));
    assert_eq!(event["data"]["html"], Value::Null);
    assert_eq!(event["data"]["text"], text.as_str());
    assert_eq!(event["data"]["id"], sent["message_id"]);

    // Behind 100 kB with the default 1 MiB: nginx answers 413, and the status says what to do.
    let small_refused = |r: &[Captured]| r.iter().any(|c| c.path == "/small");
    assert!(!small_refused(&helpdesk.requests()), "nginx passes no body over its limit on");
    let error = first_error(&server, "small").await;
    assert!(error.contains("HTTP 413") && error.contains("max_body_bytes (now 1048576)"), "{error}");

    // Setting the consumer's limit sends the waiting event at once (not after its 1 h retry),
    // cut to 100 kB: the HTML left out, the beginnings of the text and of the reply text (the
    // whole text, on an api channel) kept, about half of the room each.
    server.reload(&format!("{}{}", api_channel("web", None, ""), hooks("max_body_bytes = 102400"))).await;
    let small = helpdesk
        .wait_until(Duration::from_secs(10), "the event through the 100 kB limit", |r| small_refused(r))
        .await
        .into_iter()
        .find(|c| c.path == "/small")
        .unwrap();
    assert_eq!(small.answered, 200);
    assert!(small.body.len() <= 102_400, "{} bytes", small.body.len());
    let cut = small.json();
    assert_eq!(cut["truncated"], json!(["html", "reply_text", "text"]));
    for field in ["text", "reply_text"] {
        let kept = cut["data"][field].as_str().unwrap();
        assert!(kept.len() > 40_000 && text.starts_with(kept), "{field}: kept {} bytes", kept.len());
    }
    assert_eq!(small.header("webhook-id"), big.header("webhook-id"));

    // Cut bodies are signed like any other (checked with the official library) and keep to the
    // published envelope schema.
    let deliveries: Vec<Value> = [&big, &small]
        .iter()
        .map(|d| {
            json!({
                "headers": {
                    "webhook-id": d.header("webhook-id"),
                    "webhook-timestamp": d.header("webhook-timestamp"),
                    "webhook-signature": d.header("webhook-signature"),
                },
                "body": String::from_utf8(d.body.clone()).unwrap(),
            })
        })
        .collect();
    let out = python("verify_webhooks.py", &[], &json!({"secret": SECRET, "deliveries": deliveries}));
    assert!(out.contains("verified 2"), "{out}");
    let items = [event, cut].into_iter().map(|e| json!({"schema": "Event", "instance": e})).collect();
    server.validate_contract(items).await;
    server.stop().await;
}

/// A helpdesk served over HTTPS (nginx in front) with a certificate of a private CA. Without
/// `ca_file`, `check --connect` and the consumer's status name the certificate as the problem;
/// once a reload sets it,
/// the waiting event goes at once, not after its retry wait. An api channel's replies reach an
/// `outbound_url` behind the same CA with the channel's own `ca_file`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_behind_a_private_ca_is_reached_once_its_ca_file_is_set() {
    let certificates = tempfile::tempdir().unwrap();
    make_certificates(certificates.path());
    let ca = certificates.path().join("ca.pem");
    let helpdesk = Receiver::start().await;
    let proxy = Nginx::start_tls(&helpdesk.url, certificates.path()).await;
    let channel = format!(
        "[[channels]]\nid = \"web\"\ntype = \"api\"\noutbound_url = \"{}/replies\"\nsecret = \"{SECRET}\"\nca_file = \"{}\"\n",
        proxy.url,
        ca.display()
    );
    let config = |consumer_ca: &str| {
        let events = format!("events = [\"message.received\"]\n{consumer_ca}");
        format!("{channel}{}", webhook_at("h", &format!("{}/events", proxy.url), "[\"1h\"]", &events))
    };
    // `check --connect` reaches both through the proxy before the service runs, and says why
    // the consumer cannot be reached yet.
    let (code, out) = check_connect(&config(""));
    assert_eq!(code, 1, "{out}");
    let url = &proxy.url;
    assert!(out.contains(&format!("web: outbound_url {url}/replies: ok, reached (HTTP ")), "{out}");
    let refused =
        format!("webhooks.h: {url}/events: FAILED, connection failed: invalid peer certificate: UnknownIssuer");
    assert!(out.contains(&refused), "{out}");
    let with_ca = config(&format!("ca_file = \"{}\"", ca.display()));
    let (code, out) = check_connect(&with_ca);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("webhooks.h: {url}/events: ok, reached (HTTP ")), "{out}");
    assert!(helpdesk.accepted().iter().all(|c| c.body.is_empty()), "nothing was delivered");

    let mut server = TestServer::start(&config("")).await;
    let (code, sent) = server.inbound("web", json!({"from": {"address": "ann"}, "text": "hello"})).await;
    assert_eq!(code, 202, "{sent}");

    let error = first_error(&server, "h").await;
    assert!(error.contains("connection failed: invalid peer certificate: UnknownIssuer"), "{error}");
    assert!(error.contains("needs ca_file"), "{error}");
    assert!(helpdesk.requests().iter().all(|c| c.body.is_empty()), "no event passed the TLS handshake");

    server.reload(&with_ca).await;
    let event = helpdesk.expect_event("message.received").await;
    assert_eq!(event["data"]["id"], sent["message_id"]);

    // The reply goes out through the same proxy, trusting the channel's ca_file.
    let (code, reply) = server.post("/v1/messages", json!({"channel": "web", "to": "ann", "text": "hi"})).await;
    assert_eq!(code, 202, "{reply}");
    server.wait_status(reply["id"].as_str().unwrap(), "sent").await;
    assert!(helpdesk.accepted().iter().any(|c| c.path == "/replies"));
    server.stop().await;
}

/// Two channels and two consumers: the one with `channels = ["sales"]` gets that channel's
/// conversations and messages only, no contact events, also on a replay; the one without a
/// list gets everything. `GET /v1/events?channels=` filters alike.
#[tokio::test]
async fn a_consumer_with_channels_gets_only_those_channels_events() {
    let crm = Receiver::start().await;
    let helpdesk = Receiver::start().await;
    let config = format!(
        "{}{}{}channels = [\"sales\"]\n{}",
        api_channel("support", None, ""),
        api_channel("sales", None, ""),
        webhook("crm", &crm, "[\"100ms\"]"),
        webhook("helpdesk", &helpdesk, "[\"100ms\"]"),
    );
    let server = TestServer::start(&config).await;
    let (_, _) = server.inbound("support", json!({"from": {"address": "ann"}, "text": "my order?"})).await;
    let (code, sale) = server.inbound("sales", json!({"from": {"address": "bob"}, "text": "a quote, please"})).await;
    assert_eq!(code, 202, "{sale}");

    // Each: contact.created, conversation.created, message.received.
    helpdesk.wait_until(Duration::from_secs(10), "6 events", |r| r.len() == 6).await;
    crm.wait_until(Duration::from_secs(10), "2 events", |r| r.len() == 2).await;
    let taken: Vec<(String, Value)> =
        crm.accepted().iter().map(|c| (c.event_type(), c.json()["data"]["channel"]["id"].clone())).collect();
    assert_eq!(
        taken,
        [("conversation.created".to_owned(), json!("sales")), ("message.received".to_owned(), json!("sales"))]
    );
    assert_eq!(crm.events_of("message.received")[0]["data"]["id"], sale["message_id"]);

    let (_, status) = server.get("/v1/webhooks/crm").await;
    assert_eq!(status["channels"], json!(["sales"]));
    for _ in 0..100 {
        if server.get("/v1/webhooks/crm").await.1["in_flight"] == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (code, replayed) = server.post("/v1/webhooks/crm/replay", json!({"after_seq": 0})).await;
    assert_eq!((code, replayed["queued"].as_u64()), (202, Some(2)), "{replayed}");
    crm.wait_until(Duration::from_secs(10), "2 replayed", |r| r.len() == 4).await;
    assert!(crm.accepted().iter().all(|c| c.json()["data"]["channel"]["id"] == "sales"));

    // The pull API takes the same filter.
    let (_, page) = server.get("/v1/events?channels=sales&types=message.*,conversation.*").await;
    let pulled: Vec<(&str, &str)> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["type"].as_str().unwrap(), e["data"]["channel"]["id"].as_str().unwrap()))
        .collect();
    assert_eq!(pulled, [("conversation.created", "sales"), ("message.received", "sales")]);
    server.stop().await;
}

/// A URL that redirects (here nginx's `return 301`, as for http → https or a missing slash):
/// redirects are not followed, since a redirected POST arrives without its body, so the
/// consumer's status and `check --connect` name where it points.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirecting_url_is_reported_with_where_it_points() {
    let helpdesk = Receiver::start().await;
    let proxy = Nginx::start(&helpdesk, "location = /old { return 301 /events; }").await;
    let redirecting = format!("{}/old", proxy.url);
    let config = format!("{}{}", api_channel("web", None, ""), webhook_at("h", &redirecting, "[\"1h\"]", ""));
    let (code, out) = check_connect(&config);
    assert_eq!(code, 1, "{out}");
    let expected = format!("HTTP 301: redirects to {}/events, and redirects are not followed", proxy.url);
    assert!(out.contains(&format!("webhooks.h: {}/old: FAILED, {expected}", proxy.url)), "{out}");

    let server = TestServer::start(&config).await;
    server.inbound("web", json!({"from": {"address": "ann"}, "text": "hello"})).await;
    let error = first_error(&server, "h").await;
    assert!(error.contains(&expected), "{error}");
    assert!(helpdesk.requests().is_empty(), "nothing followed the redirect");
    server.stop().await;
}
