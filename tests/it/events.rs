//! The pull API (`/v1/events`) and the SSE stream.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::harness::*;

#[tokio::test]
async fn events_page_by_seq_and_filter_by_type() {
    let server = TestServer::start(&api_channel("web", None, "")).await;
    for i in 0..5 {
        server.inbound("web", json!({"from": {"address": format!("v{i}")}, "text": "x"})).await;
    }
    // 5 × (contact, conversation, message) = 15 events, seq 1..=15.
    let (_, page) = server.get("/v1/events?after=0&limit=4").await;
    let seqs: Vec<u64> = page["events"].as_array().unwrap().iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4]);
    assert_eq!(page["next_after"], 4);
    let (_, page) = server.get("/v1/events?after=4&limit=100").await;
    assert_eq!(page["events"].as_array().unwrap().len(), 11);
    assert_eq!(page["next_after"], 15);
    let (_, page) = server.get("/v1/events?after=15").await;
    assert_eq!(page["events"], json!([]));
    assert_eq!(page["next_after"], 15);

    let (_, page) = server.get("/v1/events?after=0&types=message.*,contact.created&limit=3").await;
    let types: Vec<&str> = page["events"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, vec!["contact.created", "message.received", "contact.created"]);
    assert_eq!(page["next_after"], 4, "the cursor skips what the filter passed over");
    let (code, error) = server.get("/v1/events?limit=0").await;
    assert_eq!((code, error["error"]["field"].as_str()), (422, Some("limit")));
    server.stop().await;
}

/// Reads SSE events (`id:` and `data:` lines) until `n` have arrived.
async fn read_sse(response: reqwest::Response, n: usize) -> Vec<(u64, Value)> {
    let mut stream = response.bytes_stream();
    let mut buffer = String::new();
    let mut out = Vec::new();
    while out.len() < n {
        let chunk = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("SSE event in time")
            .unwrap()
            .unwrap();
        buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let id = block.lines().find_map(|l| l.strip_prefix("id:")).map(|v| v.trim().parse::<u64>().unwrap());
            let data = block
                .lines()
                .find_map(|l| l.strip_prefix("data:"))
                .map(|v| serde_json::from_str::<Value>(v.trim()).unwrap());
            if let (Some(id), Some(data)) = (id, data) {
                out.push((id, data));
            }
        }
    }
    out
}

#[tokio::test]
async fn sse_streams_live_and_resumes_from_last_event_id() {
    let server = TestServer::start(&api_channel("web", None, "")).await;
    server.inbound("web", json!({"from": {"address": "a"}, "text": "1"})).await;
    let response = server
        .http
        .get(format!("{}/v1/events/stream", server.base))
        .bearer_auth(TOKEN)
        .header("last-event-id", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let reader = tokio::spawn(read_sse(response, 5));
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.inbound("web", json!({"from": {"address": "a"}, "text": "2"})).await;
    server.inbound("web", json!({"from": {"address": "b"}, "text": "3"})).await;
    let events = reader.await.unwrap();
    let ids: Vec<u64> = events.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, vec![2, 3, 4, 5, 6], "resumed after 1, then live");
    for (id, envelope) in &events {
        assert_eq!(envelope["seq"], *id);
    }
    assert_eq!(events[2].1["data"]["text"], "2");
    server.stop().await;
}
