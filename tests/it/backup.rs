//! `switchboard backup` while the real binary runs under load: the copy opens, passes SQLite's
//! integrity check, and holds every message (and attachment) acknowledged before it started.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

use crate::harness::*;

fn backup(config: &std::path::Path, dest: &std::path::Path) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["backup", "--config"])
        .arg(config)
        .arg(dest)
        .output()
        .unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_taken_under_load_holds_every_acknowledged_message() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config_path = dir.path().join("switchboard.toml");
    let log_path = dir.path().join("switchboard.log");
    std::fs::write(&config_path, config_text(dir.path(), &format!("127.0.0.1:{port}"), &api_channel("web", None, "")))
        .unwrap();
    let binary = spawn(&config_path, port, &log_path).await;
    let base = binary.base.clone();

    // Four senders, every third message with an attachment of its own bytes.
    let stop = Arc::new(AtomicBool::new(false));
    // (message id, the attachment's bytes when it had one)
    type Acked = Vec<(String, Option<Vec<u8>>)>;
    let acked: Arc<Mutex<Acked>> = Arc::default();
    let mut senders = Vec::new();
    for s in 0..4 {
        let (stop, acked, base) = (stop.clone(), acked.clone(), base.clone());
        senders.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let bytes = (i % 3 == 0).then(|| format!("attachment {s}-{i}").into_bytes());
                let attachments: Vec<Value> = bytes
                    .iter()
                    .map(|b| {
                        json!({"filename": "a.txt", "content_type": "text/plain",
                        "content_base64": base64::engine::general_purpose::STANDARD.encode(b)})
                    })
                    .collect();
                let body = json!({"from": {"address": format!("c{s}")}, "text": format!("m{s}-{i}"),
                    "external_id": format!("x{s}-{i}"), "attachments": attachments});
                let r = http
                    .post(format!("{base}/v1/channels/web/inbound"))
                    .bearer_auth(TOKEN)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 202);
                let v: Value = r.json().await.unwrap();
                acked.lock().unwrap().push((v["message_id"].as_str().unwrap().to_owned(), bytes));
                i += 1;
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while acked.lock().unwrap().len() < 300 {
        assert!(Instant::now() < deadline, "load did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The backup, taken while the senders keep going.
    let before = acked.lock().unwrap().clone();
    let copy = tempfile::tempdir().unwrap();
    let dest = copy.path().to_owned();
    let config = config_path.clone();
    let (ok, out) = tokio::task::spawn_blocking(move || backup(&config, &dest)).await.unwrap();
    assert!(ok, "{out}");
    assert!(out.contains("integrity ok"), "{out}");
    let during = acked.lock().unwrap().len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    for s in senders {
        s.await.unwrap();
    }
    assert!(acked.lock().unwrap().len() > during, "the load went on during and after the backup");

    // A backup refuses a directory that is not empty, and says so.
    let (ok, out) = backup(&config_path, copy.path());
    assert!(!ok && out.contains("is not empty"), "{out}");

    // The copy opens as a state directory and holds everything acknowledged before it started.
    binary.signal("-TERM");
    let mut child = binary.child;
    assert!(child.wait().unwrap().success());
    let server = TestServer::start_in(copy, &api_channel("web", None, "")).await;
    for (id, bytes) in &before {
        let (code, message) = server.get(&format!("/v1/messages/{id}")).await;
        assert_eq!(code, 200, "acknowledged {id} is missing from the backup");
        if let Some(bytes) = bytes {
            let attachment = message["attachments"][0]["id"].as_str().unwrap();
            let response = server
                .http
                .get(format!("{}/v1/attachments/{attachment}", server.base))
                .bearer_auth(TOKEN)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            assert_eq!(&response.bytes().await.unwrap()[..], &bytes[..], "attachment of {id}");
        }
    }
    let received = server.all_events().await.iter().filter(|e| e["type"] == "message.received").count();
    assert!(received >= before.len(), "{received} message.received events for {} messages", before.len());
    server.stop().await;
}
