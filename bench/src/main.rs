//! Benchmark tools for switchboard (see bench/run.sh and BENCHMARKS.md).
//!
//! - `sbbench load URL --concurrency C --seconds S [--rate R] [--token T] [--attachment-bytes B]`:
//!   POSTs api-channel inbound bodies over C keep-alive connections, either as fast as answered
//!   or at R msg/s in total; prints throughput and latency percentiles of the 202s as one JSON
//!   line. Each body carries its send time (ns since the epoch) in `text`, for the receiver, and
//!   with B an attachment of B bytes, different in each body.
//! - `sbbench receive PORT --expect N`: a webhook receiver that answers 200 and, for every
//!   `message.received`, records now − send time; prints percentiles once N have arrived.
//! - `sbbench null PORT`: the minimal hyper server that answers 202 and does nothing.
//! - `sbbench imap-append PORT USER PASS --count N [--interval-ms M] [--size BYTES]`: APPENDs
//!   mails of about BYTES each (text, HTML and a small attachment) whose text is
//!   `sent_ns=<time>`, for the receiver's latency figure; prints the append rate.
//! - `sbbench imap-fetch PORT USER PASS`: a plain IMAP client fetching every mail of INBOX with
//!   `UID FETCH … BODY.PEEK[]` in batches of 50: the raw rate to compare ingest with.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

fn now_ns() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos()
}

/// Standard base64 with padding (the api channel's `content_base64`).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn percentiles(mut micros: Vec<u64>) -> serde_json::Value {
    micros.sort_unstable();
    let p = |q: f64| {
        micros.get(((micros.len() as f64 * q) as usize).min(micros.len().saturating_sub(1))).copied().unwrap_or(0)
            as f64
            / 1000.0
    };
    serde_json::json!({"count": micros.len(), "p50_ms": p(0.50), "p95_ms": p(0.95), "p99_ms": p(0.99), "max_ms": p(1.0)})
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("load") => load(&args).await,
        Some("receive") => receive(&args).await,
        Some("null") => null(&args).await,
        Some("imap-append") => imap_append(&args).await,
        Some("imap-fetch") => imap_fetch(&args).await,
        _ => eprintln!("usage: sbbench load URL --concurrency C --seconds S [--rate R] [--token T] | receive PORT --expect N | null PORT"),
    }
}

async fn load(args: &[String]) {
    let url: hyper::Uri = args[2].parse().expect("a URL");
    let concurrency: usize = arg(args, "--concurrency").map_or(16, |v| v.parse().unwrap());
    let seconds: u64 = arg(args, "--seconds").map_or(10, |v| v.parse().unwrap());
    let rate: Option<f64> = arg(args, "--rate").map(|v| v.parse().unwrap());
    let token = arg(args, "--token").unwrap_or_else(|| "dev-token-change-me".into());
    let attachment_bytes: usize = arg(args, "--attachment-bytes").map_or(0, |v| v.parse().unwrap());
    let client: Client<_, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).pool_max_idle_per_host(concurrency).build_http();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let counter = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let (client, url, token, counter, errors) =
            (client.clone(), url.clone(), token.clone(), counter.clone(), errors.clone());
        // At a fixed total rate each worker sends on its own evenly spaced ticks.
        let interval = rate.map(|r| Duration::from_secs_f64(concurrency as f64 / r));
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut next = Instant::now() + interval.map_or(Duration::ZERO, |i| i.mul_f64(worker as f64 / concurrency as f64));
            while Instant::now() < deadline {
                if let Some(i) = interval {
                    tokio::time::sleep_until(next.into()).await;
                    next += i;
                }
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let attachments = if attachment_bytes == 0 {
                    String::new()
                } else {
                    let bytes: Vec<u8> = format!("{n:020}").bytes().cycle().take(attachment_bytes).collect();
                    format!(
                        r#","attachments":[{{"filename":"f.bin","content_type":"application/octet-stream","content_base64":"{}"}}]"#,
                        base64(&bytes)
                    )
                };
                let body = format!(
                    r#"{{"from":{{"address":"bench-{}"}},"text":"sent_ns={}","external_id":"b-{}-{}","thread":"t-{}"{attachments}}}"#,
                    n % 1000, now_ns(), worker, n, n % 1000
                );
                let request = Request::post(url.clone())
                    .header("authorization", format!("Bearer {token}"))
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(body)))
                    .unwrap();
                let sent = Instant::now();
                match client.request(request).await {
                    Ok(response) => {
                        let status = response.status();
                        let _ = response.into_body().collect().await;
                        if status == StatusCode::ACCEPTED {
                            latencies.push(sent.elapsed().as_micros() as u64);
                        } else {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mut out = percentiles(all.clone());
    out["concurrency"] = concurrency.into();
    out["seconds"] = elapsed.into();
    out["throughput_per_s"] = ((all.len() as f64 / elapsed).round()).into();
    out["errors"] = errors.load(Ordering::Relaxed).into();
    println!("{out}");
}

async fn serve<F, Fut>(port: u16, handler: F)
where
    F: Fn(Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await.unwrap();
    loop {
        let (stream, _) = listener.accept().await.unwrap();
        let handler = handler.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(handler);
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

async fn null(args: &[String]) {
    let port: u16 = args[2].parse().unwrap();
    serve(port, |_req| async {
        Ok(Response::builder().status(202).body(Full::new(Bytes::from_static(b"{}"))).unwrap())
    })
    .await;
}

async fn receive(args: &[String]) {
    let port: u16 = args[2].parse().unwrap();
    let expect: usize = arg(args, "--expect").map_or(usize::MAX, |v| v.parse().unwrap());
    let latencies = Arc::new(Mutex::new(Vec::<u64>::new()));
    let done = Arc::new(tokio::sync::Notify::new());
    let (l, d) = (latencies.clone(), done.clone());
    tokio::spawn(serve(port, move |req: Request<hyper::body::Incoming>| {
        let (latencies, done) = (l.clone(), d.clone());
        async move {
            let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            let received = now_ns();
            if let Ok(event) = serde_json::from_slice::<serde_json::Value>(&body) {
                if event["type"] == "message.received" {
                    if let Some(sent) = event["data"]["text"]
                        .as_str()
                        .and_then(|t| t.trim().strip_prefix("sent_ns="))
                        .and_then(|t| t.split_whitespace().next())
                        .and_then(|t| t.parse::<u128>().ok())
                    {
                        let mut l = latencies.lock().unwrap();
                        l.push(((received.saturating_sub(sent)) / 1000) as u64);
                        if l.len() >= expect {
                            done.notify_one();
                        }
                    }
                }
            }
            Ok(Response::new(Full::new(Bytes::new())))
        }
    }));
    done.notified().await;
    let all = latencies.lock().unwrap().clone();
    println!("{}", percentiles(all));
}

async fn imap_session(args: &[String]) -> async_imap::Session<tokio::net::TcpStream> {
    let port: u16 = args[2].parse().unwrap();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut client = async_imap::Client::new(tcp);
    client.read_response().await.unwrap();
    client.login(&args[3], &args[4]).await.map_err(|(e, _)| e).unwrap()
}

/// A mail of roughly `size` bytes: text, HTML, and a base64 attachment making up the rest.
fn realistic_mail(n: u64, size: usize) -> String {
    let text = format!(
        "sent_ns={}\r\n\r\nHello, I have a question about order {n}.\r\nRegards,\r\nCustomer {n}\r\n",
        now_ns()
    );
    let html = format!("<html><body><p>Hello, I have a question about order <b>{n}</b>.</p><p>Regards,<br>Customer {n}</p></body></html>");
    let filler = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0NTY3\r\n";
    // Distinct per mail (its first line is the number), as real attachments are: identical ones
    // would be stored once and hide the cost of writing each blob durably.
    let attachment = format!("{n:076}\r\n{}", filler.repeat(size.saturating_sub(1500) / filler.len()));
    format!(
        "From: Customer {n} <customer{n}@example.org>\r\nTo: support@example.com\r\nSubject: Order {n}\r\nMessage-ID: <bench-{n}-{}@example.org>\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"m\"\r\n\r\n--m\r\nContent-Type: multipart/alternative; boundary=\"a\"\r\n\r\n--a\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}--a\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{html}\r\n--a--\r\n--m\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"order-{n}.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{attachment}--m--\r\n",
        now_ns()
    )
}

async fn imap_append(args: &[String]) {
    let count: u64 = arg(args, "--count").map_or(100, |v| v.parse().unwrap());
    let interval = arg(args, "--interval-ms").map(|v| Duration::from_millis(v.parse().unwrap()));
    let size: usize = arg(args, "--size").map_or(8192, |v| v.parse().unwrap());
    let mut session = imap_session(args).await;
    let started = Instant::now();
    let mut bytes = 0;
    for n in 0..count {
        let mail = realistic_mail(n, size);
        bytes += mail.len();
        session.append("INBOX", None, None, mail).await.unwrap();
        if let Some(i) = interval {
            tokio::time::sleep(i).await;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({"appended": count, "avg_bytes": bytes as u64 / count.max(1), "seconds": secs, "per_s": (count as f64 / secs).round()})
    );
    let _ = session.logout().await;
}

async fn imap_fetch(args: &[String]) {
    use futures_util::TryStreamExt;
    let mut session = imap_session(args).await;
    let started = Instant::now();
    session.select("INBOX").await.unwrap();
    let mut uids: Vec<u32> = session.uid_search("ALL").await.unwrap().into_iter().collect();
    uids.sort_unstable();
    let (mut mails, mut bytes) = (0usize, 0usize);
    for batch in uids.chunks(50) {
        let set = batch.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
        let fetched: Vec<_> = session.uid_fetch(&set, "(UID BODY.PEEK[])").await.unwrap().try_collect().await.unwrap();
        for f in &fetched {
            bytes += f.body().map_or(0, <[u8]>::len);
        }
        mails += fetched.len();
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({"fetched": mails, "bytes": bytes, "seconds": secs, "per_s": (mails as f64 / secs).round()})
    );
    let _ = session.logout().await;
}
