//! A full disk under `storage.path` (a small tmpfs mounted over the test's storage directory;
//! the tests run as root, as tests/run.sh does): requests are refused with 503 `storage_full`
//! and nothing of them is kept — no message, no event, no blob pack eating the space the next
//! retry needs — `/readyz` says so, and once space is freed the gateway takes writes again by
//! itself, without a restart, and everything it acknowledged survives one. Before it is full, a
//! filling disk is warned of in the log and shown at `/metrics`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::*;

/// A tmpfs of `size` mounted on `path` until dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Tmpfs {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .expect("mount(8) (util-linux)");
        assert!(
            out.status.success(),
            "cannot mount a tmpfs (the tests need root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(path.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the filesystem under `dir` to the last byte with `dir`/filler.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 16 * 1024];
    while file.write_all(&chunk).is_ok() {}
    let mut byte = [0u8; 1];
    while file.write_all(&byte).is_ok() {
        byte[0] = 1;
    }
    path
}

fn packs(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("blobs/packs")).map(|d| d.count()).unwrap_or(0)
}

fn with_file(from: &str, kilobytes: usize) -> Value {
    let bytes: Vec<u8> = (0..kilobytes * 1024).map(|i| (i * 7 % 251) as u8).collect();
    use base64::Engine;
    let content = base64::engine::general_purpose::STANDARD.encode(bytes);
    json!({"from": {"address": from}, "text": format!("from {from}"),
           "attachments": [{"filename": "scan.bin", "content_type": "application/octet-stream", "content_base64": content}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_with_503_keeps_nothing_and_recovers_without_a_restart() {
    let helpdesk = Receiver::start().await;
    let backend = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mounted = Tmpfs::mount(dir.path(), "4m");
    let config = format!(
        "{}{}",
        api_channel("web", Some(&backend), ""),
        webhook("h", &helpdesk, "[\"100ms\", \"200ms\", \"500ms\", \"1s\", \"2s\"]")
    );
    let server = TestServer::start_in(dir, &config).await;
    let root = server.dir.path().to_owned();
    let (code, first) = server.inbound("web", with_file("before@example.com", 8)).await;
    assert_eq!(code, 202, "{first}");
    helpdesk
        .wait_until(Duration::from_secs(10), "the first message", |r| {
            r.iter().any(|c| c.event_type() == "message.received")
        })
        .await;
    let packs_before = packs(&root);

    let filler = fill(&root);
    for n in 0..5 {
        let response = server
            .http
            .post(format!("{}/v1/channels/web/inbound", server.base))
            .bearer_auth(TOKEN)
            .json(&with_file(&format!("refused-{n}@example.com"), 12))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()["retry-after"], "60");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "storage_full", "{body}");
    }
    let (code, refused) = server
        .post("/v1/messages", json!({"conversation_id": first["conversation_id"], "text": "A file", "attachments": [{"filename": "a.bin", "content_type": "application/octet-stream", "content_base64": "aGVsbG8gd29ybGQ="}]}))
        .await;
    assert_eq!((code, refused["error"]["code"].as_str()), (503, Some("storage_full")), "{refused}");
    assert_eq!(packs(&root), packs_before, "no pack left by the refused requests");
    let (code, ready) = server.request(reqwest::Method::GET, "/readyz", None, None).await;
    assert_eq!(code, 503, "{ready}");
    let store = ready["checks"]["store"].as_str().unwrap();
    assert!(
        store.starts_with("error: storage full (free space under storage.path): ")
            && !store.contains("commit failed: commit failed"),
        "{ready}"
    );
    // A restart on the full disk (systemd's, an administrator's): the gateway starts, and says so.
    let dir = server.stop().await;
    let server = TestServer::start_in(dir, &config).await;
    let (code, ready) = server.request(reqwest::Method::GET, "/readyz", None, None).await;
    assert_eq!(code, 503, "{ready}");
    assert!(ready["checks"]["store"].as_str().unwrap().contains("storage full"), "{ready}");

    std::fs::remove_file(&filler).unwrap();
    let (code, ready) = server.request(reqwest::Method::GET, "/readyz", None, None).await;
    assert_eq!(code, 200, "{ready}");
    let (code, after) = server.inbound("web", with_file("after@example.com", 8)).await;
    assert_eq!(code, 202, "{after}");
    let (code, _) =
        server.post("/v1/messages", json!({"conversation_id": first["conversation_id"], "text": "Now"})).await;
    assert_eq!(code, 202);
    backend.wait_until(Duration::from_secs(10), "the reply", |r| !r.is_empty()).await;

    let received: Vec<Value> = server
        .all_events()
        .await
        .into_iter()
        .filter(|e| e["type"] == "message.received")
        .map(|e| e["data"]["from"]["address"].clone())
        .collect();
    assert_eq!(received, vec![json!("before@example.com"), json!("after@example.com")], "nothing of the refused ones");
    let dir = server.stop().await;
    let server = TestServer::start_in(dir, &config).await;
    let (code, message) = server.get(&format!("/v1/messages/{}", after["message_id"].as_str().unwrap())).await;
    assert_eq!(code, 200, "{message}");
    let url = message["attachments"][0]["url"].as_str().unwrap();
    let download = server.http.get(url).bearer_auth(TOKEN).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(download.len(), 8 * 1024);
    helpdesk
        .wait_until(Duration::from_secs(10), "both messages delivered", |r| {
            r.iter().filter(|c| c.event_type() == "message.received").count() >= 2
        })
        .await;
    server.stop().await;
    drop(mounted);
}

/// Mail arriving while the disk is full waits on the IMAP server (its checkpoint does not move)
/// and comes in once space is freed, once, without a restart; meanwhile the folder does not
/// reconnect to the server only to fail again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_waits_on_the_server_while_the_disk_is_full_and_comes_in_once_after() {
    use crate::email::{count, loop_until, mail_text};
    use crate::mail_servers::*;
    let mail = MailServers::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mounted = Tmpfs::mount(dir.path(), "4m");
    let server = TestServer::start_in(dir, &mail.channel("support", "")).await;
    let root = server.dir.path().to_owned();
    mail.append(SUPPORT, &mail_text("ann@example.org", "Before", "full-1@example.org", "", "x")).await;
    loop_until(|| async { (count(&server).await == 1).then_some(()) }).await;

    let filler = fill(&root);
    let big = "a line of a long mail, long enough to need room of its own\r\n".repeat(300);
    for n in 2..5 {
        let text = mail_text("ann@example.org", &format!("While full {n}"), &format!("full-{n}@example.org"), "", &big);
        mail.append(SUPPORT, &text).await;
    }
    // The folder's session fails at its first store write and comes back with the backoff:
    // between attempts the channel reports the store's error.
    let ready = loop_until(|| async {
        let (code, ready) = server.request(reqwest::Method::GET, "/readyz", None, None).await;
        let channel = ready["checks"]["channel:support"].as_str().unwrap_or_default().to_owned();
        let full = channel.contains("No space left on device") || channel.contains("disk is full");
        (code == 503 && full).then_some(ready)
    })
    .await;
    let store = ready["checks"]["store"].as_str().unwrap();
    assert!(store.starts_with("error: storage full (free space under storage.path)"), "{ready}");
    // The folder waits for the store rather than logging in again at every backoff step only
    // to fail at its first write (several times over these seconds with a 1-2-4 s backoff).
    let sessions = mail.client_sessions().len();
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(mail.client_sessions().len(), sessions, "no new IMAP session while the disk is full");
    assert_eq!(count(&server).await, 1);

    std::fs::remove_file(&filler).unwrap();
    loop_until(|| async { (count(&server).await == 4).then_some(()) }).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(count(&server).await, 4, "each once");
    let ready = loop_until(|| async {
        let (code, ready) = server.request(reqwest::Method::GET, "/readyz", None, None).await;
        (code == 200).then_some(ready)
    })
    .await;
    assert_eq!(ready["status"], "ready");
    let db = rusqlite::Connection::open(root.join("switchboard.db")).unwrap();
    let indexed: i64 = db.query_row("SELECT count(DISTINCT pack) FROM blobs", [], |r| r.get(0)).unwrap();
    assert_eq!(packs(&root) as i64, indexed, "no pack of a failed batch is left");
    server.stop().await;
    drop(mounted);
}

/// The gauge's value for this storage directory in a Prometheus text exposition.
fn available_bytes(metrics: &str, path: &Path) -> Option<f64> {
    let series = format!("switchboard_storage_available_bytes{{path=\"{}\"}} ", path.display());
    metrics.lines().find_map(|line| line.strip_prefix(&series)).and_then(|v| v.trim().parse().ok())
}

/// A disk filling up is told before it is full: a warning in the log (as journald would keep
/// it, at warning priority) and `switchboard_storage_available_bytes` to alert on, which
/// follows the space as it is freed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filling_disk_is_warned_of_before_it_is_full() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("state");
    std::fs::create_dir(&storage).unwrap();
    let _mounted = Tmpfs::mount(&storage, "16m");
    // 15 MiB used of 16: under the low mark of 1.6 MiB, and not full.
    let filler = storage.join("filler");
    std::fs::write(&filler, vec![1u8; 15 << 20]).unwrap();
    let port = free_port();
    let config = config_text(&storage, &format!("127.0.0.1:{port}"), &api_channel("web", None, ""));
    let config_path = dir.path().join("switchboard.toml");
    std::fs::write(&config_path, config).unwrap();
    let log_path = dir.path().join("switchboard.log");
    let binary = spawn(&config_path, port, &log_path).await;
    let http = reqwest::Client::new();
    let metrics = || async { http.get(format!("{}/metrics", binary.base)).send().await.unwrap().text().await.unwrap() };

    let mut log = String::new();
    for _ in 0..50 {
        log = std::fs::read_to_string(&log_path).unwrap();
        if log.contains("little free space") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let warning = log.lines().find(|l| l.contains("little free space")).unwrap_or_else(|| panic!("no warning:\n{log}"));
    assert!(warning.contains("WARN") && warning.contains("low_mark=1 MiB"), "{warning}");
    let low = available_bytes(&metrics().await, &storage).expect("the gauge for this storage.path");
    assert!(low < (2 << 20) as f64, "{low} bytes available");
    // The gateway still takes messages: low is not full.
    let accepted = http
        .post(format!("{}/v1/channels/web/inbound", binary.base))
        .bearer_auth(TOKEN)
        .json(&json!({"from": {"address": "ann"}, "text": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 202);

    // Space freed: the gauge follows within a check (10 s), and no second warning comes.
    std::fs::remove_file(&filler).unwrap();
    let mut freed = low;
    for _ in 0..150 {
        freed = available_bytes(&metrics().await, &storage).unwrap();
        if freed > (10 << 20) as f64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(freed > (10 << 20) as f64, "{freed} bytes available after freeing 15 MiB");
    binary.signal("-TERM");
    let mut child = binary.child;
    assert!(child.wait().unwrap().success());
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert_eq!(log.matches("little free space").count(), 1, "{log}");
}
