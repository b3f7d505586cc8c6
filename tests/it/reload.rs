//! Live reload with the real binary and SIGHUP, under load: a webhook URL and a channel limit
//! change, every event is delivered exactly once across the switch and those after it go to the
//! new URL; a broken config is refused and the running one keeps working.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::*;

/// The value of `switchboard_config_reloads_total{result}` (0 before the first).
async fn reloads(http: &reqwest::Client, base: &str, result: &str) -> u64 {
    let text = http.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    let prefix = format!("switchboard_config_reloads_total{{result=\"{result}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&prefix)).map(|v| v.trim().parse().unwrap()).unwrap_or(0)
}

async fn wait_reloads(http: &reqwest::Client, base: &str, result: &str, count: u64, log: &std::path::Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while reloads(http, base, result).await < count {
        assert!(Instant::now() < deadline, "no {result} reload:\n{}", std::fs::read_to_string(log).unwrap());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn message_status(http: &reqwest::Client, base: &str, id: &str) -> String {
    let m: Value =
        http.get(format!("{base}/v1/messages/{id}")).bearer_auth(TOKEN).send().await.unwrap().json().await.unwrap();
    m["status"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sighup_under_load_moves_webhooks_and_limits_without_loss_or_duplicates() {
    let old_hook = Receiver::start().await;
    let new_hook = Receiver::start().await;
    let replies = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let config_path = dir.path().join("switchboard.toml");
    let log_path = dir.path().join("switchboard.log");
    let config = |hook: &Receiver, per_second: &str| {
        let channel = api_channel("web", Some(&replies), &format!("per_second = {per_second}"));
        config_text(dir.path(), &listen, &format!("{channel}{}", webhook("helpdesk", hook, "[\"200ms\", \"1s\"]")))
    };
    std::fs::write(&config_path, config(&old_hook, "0.02")).unwrap();
    let binary = spawn(&config_path, port, &log_path).await;
    let base = binary.base.clone();
    let http = reqwest::Client::new();

    // Two replies on a channel allowed one send per 50 s: the first goes, the second is held.
    let (_, first) = send(
        &http,
        &base,
        "/v1/channels/web/inbound",
        json!({"from": {"address": "ann"}, "text": "hi", "thread": "t"}),
    )
    .await;
    let mut reply_ids = Vec::new();
    for text in ["one", "two"] {
        let (code, r) =
            send(&http, &base, "/v1/messages", json!({"conversation_id": first["conversation_id"], "text": text}))
                .await;
        assert_eq!(code, 202, "{r}");
        reply_ids.push(r["id"].as_str().unwrap().to_owned());
    }
    replies.wait_until(Duration::from_secs(10), "the first reply", |r| r.len() == 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(message_status(&http, &base, &reply_ids[1]).await, "queued", "the old limit holds the second reply");

    // Load: four senders post inbound messages until told to stop; each records whether the
    // reload had been confirmed before it sent.
    let stop = Arc::new(AtomicBool::new(false));
    let reloaded = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<(String, bool)>>> = Arc::default();
    let mut senders = Vec::new();
    for s in 0..4 {
        let (stop, reloaded, acked, http, base) =
            (stop.clone(), reloaded.clone(), acked.clone(), http.clone(), base.clone());
        senders.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let after = reloaded.load(Ordering::SeqCst);
                let body = json!({"from": {"address": format!("c{s}-{}", i % 5)}, "text": format!("m{s}-{i}"), "external_id": format!("x{s}-{i}")});
                let (code, r) = send(&http, &base, "/v1/channels/web/inbound", body).await;
                assert_eq!(code, 202, "{r}");
                acked.lock().unwrap().push((r["message_id"].as_str().unwrap().to_owned(), after));
                i += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    old_hook.wait_until(Duration::from_secs(20), "load reaching the old URL", |r| r.len() >= 50).await;

    // The change: new webhook URL, a channel limit 5000 times higher.
    std::fs::write(&config_path, config(&new_hook, "100")).unwrap();
    binary.signal("-HUP");
    wait_reloads(&http, &base, "applied", 1, &log_path).await;
    reloaded.store(true, Ordering::SeqCst);
    let after_count = || acked.lock().unwrap().iter().filter(|(_, after)| *after).count();
    let deadline = Instant::now() + Duration::from_secs(20);
    while after_count() < 100 {
        assert!(Instant::now() < deadline, "load stalled after the reload");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A broken config is refused; the running one keeps working.
    std::fs::write(
        &config_path,
        format!("{}\n[[webhooks]]\nid = \"broken\"\nurl = \"not a url\"\n", config(&new_hook, "100")),
    )
    .unwrap();
    binary.signal("-HUP");
    wait_reloads(&http, &base, "refused", 1, &log_path).await;
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("webhooks[1].url") && log.contains("configuration refused"), "{log}");
    let before = after_count();
    let deadline = Instant::now() + Duration::from_secs(20);
    while after_count() < before + 50 {
        assert!(Instant::now() < deadline, "load stalled after the refused reload");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::SeqCst);
    for s in senders {
        s.await.unwrap();
    }

    // The held reply goes out under the new limit (the old one would hold it for 50 s).
    let deadline = Instant::now() + Duration::from_secs(15);
    while message_status(&http, &base, &reply_ids[1]).await != "sent" {
        assert!(Instant::now() < deadline, "the held reply was not sent under the new limit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(replies.accepted().len(), 2, "each reply sent exactly once");

    // Exactly once across the switch: every event in the log reaches one of the two URLs, once.
    let log_events = all_events_at(&http, &base).await;
    let wanted: HashSet<String> = log_events.iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect();
    let delivered =
        |r: &Receiver| -> Vec<String> { r.accepted().iter().map(|c| c.header("webhook-id").to_owned()).collect() };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got: HashSet<String> = delivered(&old_hook).into_iter().chain(delivered(&new_hook)).collect();
        if got.is_superset(&wanted) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} events delivered",
            got.intersection(&wanted).count(),
            wanted.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut counts: HashMap<String, usize> = HashMap::new();
    for id in delivered(&old_hook).into_iter().chain(delivered(&new_hook)) {
        *counts.entry(id).or_default() += 1;
    }
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "events delivered more than once: {twice:?}");
    assert_eq!(counts.len(), wanted.len(), "nothing delivered that is not in the log");
    assert!(!old_hook.accepted().is_empty() && !new_hook.accepted().is_empty());

    // Every acknowledged message is in the log; those sent after the reload went to the new URL.
    let received: HashMap<String, &Value> = log_events
        .iter()
        .filter(|e| e["type"] == "message.received")
        .map(|e| (e["data"]["id"].as_str().unwrap().to_owned(), e))
        .collect();
    let on_old: HashSet<String> = old_hook.accepted().iter().map(|c| c.header("webhook-id").to_owned()).collect();
    let acked = acked.lock().unwrap().clone();
    for (message_id, after) in &acked {
        let event = received.get(message_id).unwrap_or_else(|| panic!("acknowledged {message_id} is not in the log"));
        if *after {
            assert!(
                !on_old.contains(event["id"].as_str().unwrap()),
                "{message_id} went to the old URL after the reload"
            );
        }
    }
    assert!(acked.iter().filter(|(_, after)| *after).count() >= 150);

    binary.signal("-TERM");
    let mut child = binary.child;
    assert!(child.wait().unwrap().success());
}

/// `switchboard reload PID`, the unit's ExecReload: it signals the gateway and answers with the
/// gateway's own verdict (the gateway reads the file, with secrets an ExecReload= command may
/// not be given): exit 0 when applied, 1 with the problems when refused, each answer the one to
/// its own signal. Without `$RUNTIME_DIRECTORY` it says what to do instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchboard_reload_answers_with_the_gateways_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = dir.path().join("run");
    std::fs::create_dir(&runtime).unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let (config_path, log_path) = (dir.path().join("switchboard.toml"), dir.path().join("switchboard.log"));
    let config = |extra: &str| config_text(dir.path(), &listen, &format!("{}{extra}", api_channel("web", None, "")));
    std::fs::write(&config_path, config("")).unwrap();
    let binary = spawn_with_env(&config_path, port, &log_path, &[("RUNTIME_DIRECTORY", &runtime)]).await;
    let pid = binary.child.id().to_string();
    let reload = |with_runtime: bool| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"));
        command.args(["reload", &pid]).env_remove("RUNTIME_DIRECTORY");
        if with_runtime {
            command.env("RUNTIME_DIRECTORY", &runtime);
        }
        let out = command.output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.code(), text)
    };
    let http = reqwest::Client::new();
    let inbound = |channel: &str| {
        let (http, base, path) = (http.clone(), binary.base.clone(), format!("/v1/channels/{channel}/inbound"));
        async move { send(&http, &base, &path, json!({"from": {"address": "ann"}, "text": "hi", "thread": "t"})).await }
    };

    // A new channel: applied.
    std::fs::write(&config_path, config(&api_channel("chat", None, ""))).unwrap();
    let (code, said) = reload(true);
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("configuration reloaded"), "{said}");
    assert_eq!(inbound("chat").await.0, 202);

    // A broken file: refused with its problem; the running configuration is kept.
    let broken = format!("{}\n[[webhooks]]\nid = \"broken\"\nurl = \"not a url\"\n", api_channel("chat", None, ""));
    std::fs::write(&config_path, config(&broken)).unwrap();
    let (code, said) = reload(true);
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.contains("configuration refused (2 problem(s)); the running one is kept")
            && said.contains("webhooks[0].url"),
        "{said}"
    );
    assert_eq!(inbound("chat").await.0, 202);

    // Mended and removed again: the answer is to this signal, not the refusal before it.
    std::fs::write(&config_path, config("")).unwrap();
    let (code, said) = reload(true);
    assert_eq!(code, Some(0), "{said}");
    assert_eq!(inbound("chat").await.0, 404);

    // 0 (kill(2)'s own process group) and 1 (init) are refused, not signalled.
    for pid in ["0", "1"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(["reload", pid])
            .env("RUNTIME_DIRECTORY", &runtime)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains("is no gateway's process id"));
    }
    // Outside systemd there is no place for the verdict: it says so and signals nothing.
    let (code, said) = reload(false);
    assert_eq!(code, Some(2), "{said}");
    assert!(said.contains("RUNTIME_DIRECTORY is not set") && said.contains("kill -HUP"), "{said}");
    assert_eq!(reloads(&http, &binary.base, "applied").await, 2);

    binary.signal("-TERM");
    let mut child = binary.child;
    assert!(child.wait().unwrap().success());
}

async fn send(http: &reqwest::Client, base: &str, path: &str, body: Value) -> (u16, Value) {
    let r = http.post(format!("{base}{path}")).bearer_auth(TOKEN).json(&body).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}
