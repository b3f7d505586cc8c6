//! `storage.retention`: old content, refused items and events go; what threads, deduplicates
//! and tells a reader what it missed stays; blob packs give their space back.

use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};

use crate::harness::*;

/// The retention the tests run with: far below the 1d minimum a config may set, so that
/// "old" is a few seconds away (`TestServer::start_adjusted` sets it after validation). A new
/// message must stay new until the test's last prune: on a loaded 2-core machine 3 s was not
/// always enough.
const KEEP: Duration = Duration::from_secs(5);

fn file(name: &str, bytes: &[u8]) -> Value {
    json!({"filename": name, "content_type": "application/octet-stream",
           "content_base64": base64::engine::general_purpose::STANDARD.encode(bytes)})
}

/// The packs under the storage dir and their bytes in all.
fn packs(server: &TestServer) -> (usize, u64) {
    let dir = server.dir.path().join("blobs/packs");
    let sizes: Vec<u64> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).collect();
    (sizes.len(), sizes.iter().sum())
}

async fn start(dir: tempfile::TempDir, extra: &str) -> TestServer {
    TestServer::start_adjusted(dir, extra, |config| {
        config.storage.retention = Some(switchboard::config::ConfigDuration(KEEP));
    })
    .await
}

/// A conversation whose first message is older than the retention and whose second is new.
/// The prune removes the first message's content (its own file's blob too, while the logo the
/// second message also carries stays, its pack compacted), the events before the new ones and
/// a refused item; the message row stays, so the same item sent again is still a duplicate,
/// and the thread goes on. A pull cursor before the removed events gets 410 with where to go
/// on; the webhook consumer gets every event it was owed. All of it holds across a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_removes_old_content_and_events_and_keeps_what_threads_and_deduplicates() {
    let helpdesk = Receiver::start().await;
    let extra = format!(
        "{}{}",
        api_channel("web", None, "inbound_per_sender_per_hour = 1"),
        webhook("h", &helpdesk, "[\"1s\"]")
    );
    let server = start(tempfile::tempdir().unwrap(), &extra).await;
    let logo = vec![7u8; 200];
    let invoice: Vec<u8> = (0..16_000u32).map(|n| (n * 31 % 251) as u8).collect();
    let first = json!({"from": {"address": "ann"}, "thread": "t-1", "external_id": "e-1", "text": "Where is my order?",
                       "attachments": [file("invoice.pdf", &invoice), file("logo.png", &logo)]});
    let (status, old) = server.inbound("web", first.clone()).await;
    assert_eq!(status, 202, "{old}");
    let refused = json!({"from": {"address": "ann"}, "thread": "t-1", "external_id": "e-2", "text": "Hello??"});
    assert_eq!(server.inbound("web", refused).await.0, 422, "over the sender limit: refused and listed");
    helpdesk.expect_event("message.received").await;
    let old_message = old["message_id"].as_str().unwrap().to_owned();
    let (_, before) = server.get(&format!("/v1/messages/{old_message}")).await;
    let old_invoice = before["attachments"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(packs(&server).0, 1);

    tokio::time::sleep(KEEP + Duration::from_millis(500)).await;
    let second = json!({"from": {"address": "bob"}, "thread": "t-1", "external_id": "e-3", "text": "Any news?",
                        "attachments": [file("logo.png", &logo)]});
    let (status, new) = server.inbound("web", second).await;
    assert_eq!(status, 202, "{new}");
    assert_eq!(new["conversation_id"], old["conversation_id"], "the thread goes on");
    let new_message = new["message_id"].as_str().unwrap().to_owned();
    helpdesk
        .wait_until(Duration::from_secs(10), "the new message", |r| {
            r.iter().any(|c| c.answered < 300 && c.json()["data"]["id"] == new_message.as_str())
        })
        .await;
    let (_, events) = server.get("/v1/events?limit=1000").await;
    let oldest_new = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["data"]["id"] == new_message.as_str())
        .map(|e| e["seq"].as_u64().unwrap())
        .unwrap();

    let (status, pruned) = server.post("/v1/storage/prune", json!({})).await;
    assert_eq!(status, 200, "{pruned}");
    assert_eq!(
        (&pruned["messages"], &pruned["rejected"], &pruned["blobs"], &pruned["packs_compacted"]),
        (&json!(1), &json!(1), &json!(1), &json!(1)),
        "the old message's content, the refused item, the invoice's blob; the logo's pack compacted: {pruned}"
    );
    assert!(pruned.get("held_back_by").is_none(), "the consumer is caught up: {pruned}");
    let through = pruned["events_pruned_through"].as_u64().unwrap();
    assert!(through > 0 && through < oldest_new, "the old events went, the new stayed: {pruned}");

    // The message is still there, without its content; its own file is gone, the shared one
    // still downloads through the new message (from its new pack).
    let (status, message) = server.get(&format!("/v1/messages/{old_message}")).await;
    assert_eq!(status, 200, "{message}");
    assert!(message["pruned_at"].is_string(), "{message}");
    assert_eq!((&message["text"], &message["attachments"]), (&Value::Null, &json!([])), "{message}");
    assert_eq!(message["provider"]["message_id"], "e-1");
    assert_eq!(server.get(&format!("/v1/attachments/{old_invoice}")).await.0, 404);
    let (_, kept) = server.get(&format!("/v1/messages/{new_message}")).await;
    let logo_path = format!("/v1/attachments/{}", kept["attachments"][0]["id"].as_str().unwrap());
    let download = server.http.get(format!("{}{}", server.base, logo_path)).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(download.status(), 200);
    assert_eq!(download.bytes().await.unwrap().to_vec(), logo);
    let (_, rejected) = server.get("/v1/channels/web/rejected").await;
    assert_eq!(rejected["rejected"], json!([]), "{rejected}");

    // The same item sent again is known: nothing new.
    let (status, again) = server.inbound("web", first).await;
    assert_eq!((status, &again["duplicate"], &again["message_id"]), (202, &json!(true), &json!(old_message)));

    // A reader behind the removed events learns it; from where they end it reads on.
    let (status, gone) = server.get("/v1/events?after=0").await;
    assert_eq!(status, 410, "{gone}");
    assert_eq!(gone["error"]["code"], "events_pruned");
    assert!(gone["error"]["message"].as_str().unwrap().contains(&format!("after={through}")), "{gone}");
    let (status, rest) = server.get(&format!("/v1/events?after={through}")).await;
    assert_eq!(status, 200, "{rest}");
    assert!(rest["events"].as_array().unwrap().iter().any(|e| e["data"]["id"] == new_message.as_str()));

    // The compacted pack goes at the next prune (a download may have just opened it).
    let (count, bytes) = packs(&server);
    let (status, next) = server.post("/v1/storage/prune", json!({})).await;
    assert_eq!(status, 200, "{next}");
    let after = packs(&server);
    assert_eq!(after.0, count - 1, "{next}");
    assert_eq!(next["bytes_freed"].as_u64().unwrap(), bytes - after.1, "{next}");
    assert!(after.1 < invoice.len() as u64, "the invoice's bytes are given back: {after:?}");
    // After the prunes: the validator's start-up takes seconds, in which the new message ages.
    server
        .validate_contract(vec![
            json!({"schema": "Message", "instance": message}),
            json!({"path": "/v1/storage/prune", "method": "post", "status": "200", "instance": pruned}),
            json!({"path": "/v1/events", "method": "get", "status": "410", "instance": gone}),
        ])
        .await;

    let dir = server.stop().await;
    let server = start(dir, &extra).await;
    assert_eq!(server.get("/v1/events?after=0").await.0, 410, "the horizon is kept");
    let download = server.http.get(format!("{}{}", server.base, logo_path)).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(download.bytes().await.unwrap().to_vec(), logo);
    let owed = helpdesk.accepted().iter().filter(|c| c.event_type() == "message.received").count();
    assert_eq!(owed, 2, "the consumer got both messages, once");
    server.stop().await;
}

/// Without a retention nothing is pruned, and asking says so; a retention under a day is
/// refused by the config check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_retention_nothing_is_pruned_and_a_short_one_is_refused() {
    let server = TestServer::start(&api_channel("web", None, "")).await;
    let (status, refused) = server.post("/v1/storage/prune", json!({})).await;
    assert_eq!((status, refused["error"]["code"].as_str()), (409, Some("no_retention")), "{refused}");
    server.stop().await;
    let problems = switchboard::config::load_str(
        &config_text(std::path::Path::new("/tmp/sb"), "127.0.0.1:1", "")
            .replace("[storage]\n", "[storage]\nretention = \"12h\"\n"),
    )
    .unwrap_err();
    let said = format!("{problems:?}");
    assert!(said.contains("storage.retention") && said.contains("at least 1d"), "{said}");
}

/// An item sent again with other files (a provider's retry that re-encoded them) is a
/// duplicate: its files are written before the store knows that, but nothing keeps them — no
/// index row points at their bytes and their pack is removed at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicates_files_are_not_kept() {
    let server = TestServer::start(&api_channel("web", None, "")).await;
    let item = |bytes: &[u8]| {
        json!({"from": {"address": "ann"}, "external_id": "e-1", "text": "Hi",
                                      "attachments": [file("photo.jpg", bytes)]})
    };
    let (status, first) = server.inbound("web", item(b"the first encoding")).await;
    assert_eq!((status, &first["duplicate"]), (202, &json!(false)), "{first}");
    let (status, again) = server.inbound("web", item(b"another encoding of it")).await;
    assert_eq!((status, &again["duplicate"]), (202, &json!(true)), "{again}");
    assert_eq!(packs(&server).0, 1, "only the first item's pack");
    let dir = server.stop().await;
    let db = rusqlite::Connection::open(dir.path().join("switchboard.db")).unwrap();
    let unreferenced: i64 = db
        .query_row("SELECT count(*) FROM blobs WHERE sha256 NOT IN (SELECT sha256 FROM attachments)", [], |r| r.get(0))
        .unwrap();
    assert_eq!(unreferenced, 0);
}

/// A reply still waiting to be sent when the prune comes (its channel's endpoint down) is left
/// whole, and a prune after it was sent removes its content: it does not stay for ever behind
/// the watermark. The retention itself is set and taken away by reloads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_waiting_to_be_sent_is_pruned_after_it_is_sent_and_a_reload_sets_the_retention() {
    let backend = Receiver::start().await;
    backend.respond_with(|_| Reply::status(503));
    let extra = format!(
        "\n[outbound]\nretry_schedule = [{}]\n{}",
        vec!["\"1s\""; 30].join(", "),
        api_channel("web", Some(&backend), "")
    );
    let mut server = TestServer::start(&extra).await;
    let (status, refused) = server.post("/v1/storage/prune", json!({})).await;
    assert_eq!((status, refused["error"]["code"].as_str()), (409, Some("no_retention")), "{refused}");

    let (status, inbound) =
        server.inbound("web", json!({"from": {"address": "ann"}, "text": "Where is my order?"})).await;
    assert_eq!(status, 202, "{inbound}");
    let (status, reply) = server
        .post("/v1/messages", json!({"conversation_id": inbound["conversation_id"], "text": "On its way."}))
        .await;
    assert_eq!(status, 202, "{reply}");
    let reply_id = reply["id"].as_str().unwrap().to_owned();
    backend.wait_until(Duration::from_secs(10), "a first attempt", |r| !r.is_empty()).await;
    tokio::time::sleep(KEEP + Duration::from_millis(500)).await;

    server.reload_adjusted(&extra, |c| c.storage.retention = Some(switchboard::config::ConfigDuration(KEEP))).await;
    let (status, pruned) = server.post("/v1/storage/prune", json!({})).await;
    assert_eq!((status, &pruned["messages"]), (200, &json!(1)), "the customer's message only: {pruned}");
    let (_, waiting) = server.get(&format!("/v1/messages/{reply_id}")).await;
    assert_eq!(
        (&waiting["status"], &waiting["text"], &waiting["pruned_at"]),
        (&json!("queued"), &json!("On its way."), &Value::Null),
        "{waiting}"
    );

    backend.respond_with(|_| Reply::ok());
    server.wait_status(&reply_id, "sent").await;
    let (status, pruned) = server.post("/v1/storage/prune", json!({})).await;
    assert_eq!((status, &pruned["messages"]), (200, &json!(1)), "the reply, now sent: {pruned}");
    let (_, sent) = server.get(&format!("/v1/messages/{reply_id}")).await;
    assert!(sent["pruned_at"].is_string() && sent["text"].is_null(), "{sent}");

    server.reload(&extra).await;
    let (status, refused) = server.post("/v1/storage/prune", json!({})).await;
    assert_eq!((status, refused["error"]["code"].as_str()), (409, Some("no_retention")), "taken away: {refused}");
    server.stop().await;
}
