//! Test helpers that read like the domain: a real gateway on 127.0.0.1:0 (`TestServer`), a real
//! HTTP receiver standing in for a helpdesk or an api-channel back-end (`Receiver`), and the
//! Python verifiers (`python`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tokio::sync::Notify;

use switchboard::app::{self, Server};
use switchboard::config;

pub const TOKEN: &str = "test-token-all-scopes-0001";
pub const READ_TOKEN: &str = "test-token-read-only-0002";
pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
pub const OLD_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

/// One request the receiver got, and what it answered.
#[derive(Clone, Debug)]
pub struct Captured {
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    pub at: Instant,
    pub answered: u16,
}

impl Captured {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("receiver got JSON")
    }
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }
    /// The event type of a delivered event; empty for a request without one (a HEAD).
    pub fn event_type(&self) -> String {
        let event: Option<Value> = serde_json::from_slice(&self.body).ok();
        event.and_then(|e| e["type"].as_str().map(str::to_owned)).unwrap_or_default()
    }
}

/// What the receiver answers.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply { status, headers: Vec::new(), body: String::new() }
    }
    pub fn ok() -> Reply {
        Reply::status(200)
    }
}

type Responder = Arc<dyn Fn(&Captured) -> Reply + Send + Sync>;

struct ReceiverState {
    captured: Mutex<Vec<Captured>>,
    responder: Mutex<Responder>,
    notify: Notify,
}

/// A real HTTP server on loopback recording every request.
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    state: Arc<ReceiverState>,
}

async fn receive(State(state): State<Arc<ReceiverState>>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let mut captured = Captured {
        path: uri.path().to_owned(),
        headers: headers.iter().map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned())).collect(),
        body: body.to_vec(),
        at: Instant::now(),
        answered: 0,
    };
    let responder = state.responder.lock().unwrap().clone();
    let reply = responder(&captured);
    captured.answered = reply.status;
    state.captured.lock().unwrap().push(captured);
    state.notify.notify_waiters();
    let mut response = (StatusCode::from_u16(reply.status).unwrap(), reply.body).into_response();
    for (name, value) in reply.headers {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}

impl Receiver {
    pub async fn start() -> Receiver {
        let state = Arc::new(ReceiverState {
            captured: Mutex::new(Vec::new()),
            responder: Mutex::new(Arc::new(|_: &Captured| Reply::ok())),
            notify: Notify::new(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new().fallback(receive).with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { url, state }
    }

    pub fn respond_with(&self, f: impl Fn(&Captured) -> Reply + Send + Sync + 'static) {
        *self.state.responder.lock().unwrap() = Arc::new(f);
    }

    pub fn requests(&self) -> Vec<Captured> {
        self.state.captured.lock().unwrap().clone()
    }

    /// Requests answered with 2xx.
    pub fn accepted(&self) -> Vec<Captured> {
        self.requests().into_iter().filter(|c| (200..300).contains(&c.answered)).collect()
    }

    /// Accepted event envelopes of the given type.
    pub fn events_of(&self, kind: &str) -> Vec<Value> {
        self.accepted().iter().filter(|c| c.event_type() == kind).map(Captured::json).collect()
    }

    /// Waits until `done` holds for the requests so far; panics after `timeout` with what came.
    pub async fn wait_until(&self, timeout: Duration, what: &str, done: impl Fn(&[Captured]) -> bool) -> Vec<Captured> {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.state.notify.notified();
            let requests = self.requests();
            if done(&requests) {
                return requests;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!("timed out waiting for {what}; receiver got {} request(s)", requests.len());
            }
            let _ = tokio::time::timeout(left.min(Duration::from_millis(200)), notified).await;
        }
    }

    /// Waits for the first accepted event of `kind` and returns its envelope.
    pub async fn expect_event(&self, kind: &str) -> Value {
        self.wait_until(Duration::from_secs(10), kind, |r| {
            r.iter().any(|c| c.answered < 300 && c.event_type() == kind)
        })
        .await;
        self.events_of(kind).remove(0)
    }
}

/// `switchboard check --connect` (the real binary) on the test config with `extra`: its exit status
/// and what it printed.
pub fn check_connect(extra: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchboard.toml");
    std::fs::write(&path, config_text(dir.path(), "127.0.0.1:1", extra)).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["check", "--connect", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap(), text)
}

/// A test CA (`ca.pem`) and a certificate for `localhost`/127.0.0.1 signed by it (`server.pem`,
/// `server.key`) in `dir`, made with the openssl CLI.
pub fn make_certificates(dir: &std::path::Path) {
    let run = |args: &[&str]| {
        openssl(dir, args);
    };
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=switchboard test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    ]
    .concat());
    run(&[&["req"][..], &ec, &["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"]].concat());
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
}

/// Runs Debian's `openssl` in `dir` (tests/run.sh installs it): its standard output.
pub fn openssl(dir: &std::path::Path, args: &[&str]) -> Vec<u8> {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("openssl: {e} (apt-get install openssl)"));
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// A small S/MIME PKI made with Debian's `openssl` in a directory: a self-signed root CA
/// (`ca.pem`, `ca.key`), and the certificates it, or a CA it issued, issues (`NAME.pem`,
/// `NAME.key`).
pub struct SmimePki<'a> {
    pub dir: &'a std::path::Path,
}

/// `openssl req` key options: RSA 2048, and ECDSA on P-256.
pub const RSA_KEY: &[&str] = &["-newkey", "rsa:2048"];
pub const EC_KEY: &[&str] = &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];

impl SmimePki<'_> {
    /// The extensions of an intermediate CA's certificate.
    pub const CA: &'static str = "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n";

    /// The root CA, with `subject`, in `dir`.
    pub fn new<'a>(dir: &'a std::path::Path, subject: &str) -> SmimePki<'a> {
        let ca = ["req", "-x509", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "30", "-subj", subject];
        let extensions =
            ["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"];
        openssl(dir, &[&ca[..], RSA_KEY, &extensions].concat());
        SmimePki { dir }
    }

    /// The extensions of a person's mail certificate for `address`, with the extended key
    /// usage `usage` (`emailProtection`; `serverAuth` for one that is not for mail).
    pub fn person(address: &str, usage: &str) -> String {
        format!(
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n\
             extendedKeyUsage={usage}\nsubjectAltName=email:{address}\nsubjectKeyIdentifier=hash\n"
        )
    }

    /// `name.pem` (returned) and `name.key` (`key`: `RSA_KEY` or `EC_KEY`), issued by `issuer`
    /// (`ca`, or a name issued before) with the extensions `extensions`.
    pub fn issue(&self, name: &str, key: &[&str], issuer: &str, extensions: &str) -> String {
        let (keyfile, csr, pem, ext) =
            (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"), format!("{name}.ext"));
        std::fs::write(self.dir.join(&ext), extensions).unwrap();
        let request = ["req", "-new", "-nodes", "-keyout", &keyfile, "-out", &csr, "-subj", &format!("/CN={name}")];
        openssl(self.dir, &[&request[..], key].concat());
        let (ca, ca_key) = (format!("{issuer}.pem"), format!("{issuer}.key"));
        openssl(
            self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "30",
                "-extfile",
                &ext,
            ],
        );
        std::fs::read_to_string(self.dir.join(pem)).unwrap()
    }
}

/// GnuPG (Debian's `gpg`) with a keyring of its own in a temporary home: it makes keys and
/// signs as a customer's mail client does, and its `--verify` is the reference verdict.
pub struct Gnupg {
    pub home: tempfile::TempDir,
}

impl Gnupg {
    pub fn new() -> Gnupg {
        let home = tempfile::Builder::new().prefix("gpg").tempdir().unwrap();
        Gnupg { home }
    }

    /// `gpg --batch` with `args`, and what it wrote to stdout; panics when it fails.
    pub fn run(&self, args: &[&str]) -> Vec<u8> {
        let out = self.output(args);
        assert!(out.status.success(), "gpg {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    }

    /// `gpg --batch` with `args`, whatever its outcome.
    pub fn output(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new("gpg")
            .env("GNUPGHOME", self.home.path())
            .args(["--batch", "--no-tty", "--pinentry-mode", "loopback", "--passphrase", ""])
            .args(args)
            .current_dir(self.home.path())
            .output()
            .unwrap_or_else(|e| panic!("gpg: {e} (apt-get install gnupg)"))
    }

    /// A new key for `user_id` (`algorithm`: `ed25519`, `rsa3072`…) that signs and never
    /// expires; its fingerprint.
    pub fn key(&self, user_id: &str, algorithm: &str) -> String {
        self.run(&["--quick-generate-key", user_id, algorithm, "sign", "never"]);
        self.fingerprint(user_id)
    }

    /// The fingerprint of the key for `user_id`.
    pub fn fingerprint(&self, user_id: &str) -> String {
        let listing = String::from_utf8(self.run(&["--with-colons", "--list-keys", user_id])).unwrap();
        let fpr = listing.lines().find(|l| l.starts_with("fpr:")).expect("a fingerprint");
        fpr.split(':').nth(9).unwrap().to_owned()
    }

    /// `path` (in the home) written with `bytes`; its path as a string.
    pub fn file(&self, name: &str, bytes: &[u8]) -> String {
        let path = self.home.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path.to_str().unwrap().to_owned()
    }
}

impl Drop for Gnupg {
    fn drop(&mut self) {
        let _ =
            std::process::Command::new("gpgconf").env("GNUPGHOME", self.home.path()).args(["--kill", "all"]).output();
    }
}

/// Whether Debian's `openssl` with `args`, run in `dir`, succeeds (a reference verdict).
pub fn openssl_succeeds(dir: &std::path::Path, args: &[&str]) -> bool {
    std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("openssl: {e} (apt-get install openssl)"))
        .status
        .success()
}

/// nginx (Debian's, unpacked by tests/run.sh into `target/test-data/nginx`) as the reverse proxy
/// a helpdesk sits behind, on a port of its own, passing everything to `upstream`. Its request
/// body limit is nginx's default (`client_max_body_size 1m`) except in the `locations` given
/// (extra `location` blocks, each with its own `proxy_pass {upstream}`). `start_tls` serves
/// HTTPS with a certificate of `make_certificates`, in front of any HTTP server's `upstream` URL.
pub struct Nginx {
    pub url: String,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Nginx {
    pub async fn start(upstream: &Receiver, locations: &str) -> Nginx {
        Self::start_with(&upstream.url, locations, None).await
    }

    pub async fn start_tls(upstream: &str, certificates: &std::path::Path) -> Nginx {
        Self::start_with(upstream, "", Some(certificates)).await
    }

    async fn start_with(upstream: &str, locations: &str, certificates: Option<&std::path::Path>) -> Nginx {
        let bin = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-data/nginx/usr/sbin/nginx");
        assert!(bin.exists(), "{} is missing: tests/run.sh unpacks Debian's nginx there", bin.display());
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let port = free_port();
        let (listen, scheme) = match certificates {
            Some(c) => {
                let c = c.display();
                (format!("{port} ssl; ssl_certificate {c}/server.pem; ssl_certificate_key {c}/server.key"), "https")
            }
            None => (port.to_string(), "http"),
        };
        let conf = format!(
            r#"daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 64; }}
http {{
  access_log {d}/access.log;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  server {{
    listen 127.0.0.1:{listen};
    location / {{ proxy_pass {upstream}; }}
    {locations}
  }}
}}
"#
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
        let child = std::process::Command::new(&bin)
            .args(["-p", &d.to_string(), "-e", &format!("{d}/error.log"), "-c", &format!("{d}/nginx.conf")])
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut nginx = Nginx { url: format!("{scheme}://127.0.0.1:{port}"), child, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            if let Ok(Some(status)) = nginx.child.try_wait() {
                let log = std::fs::read_to_string(nginx._dir.path().join("error.log")).unwrap_or_default();
                panic!("nginx exited with {status}: {log}");
            }
            assert!(Instant::now() < deadline, "nginx did not listen on port {port} within 10 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        nginx
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A gateway started in-process on 127.0.0.1:0 with a temp storage dir.
pub struct TestServer {
    pub base: String,
    pub dir: tempfile::TempDir,
    server: Option<Server>,
    pub http: reqwest::Client,
}

/// The base config every test server gets; `extra` adds channels, webhooks or overrides.
pub fn config_text(dir: &std::path::Path, listen: &str, extra: &str) -> String {
    format!(
        r#"
[server]
listen = "{listen}"
public_url = "http://{listen}"
max_body_bytes = 65536
max_attachment_bytes = 16384
[storage]
path = "{dir}"
[log]
level = "warn"
[[tokens]]
name = "all"
token = "{TOKEN}"
scopes = ["send", "read", "admin"]
[[tokens]]
name = "reader"
token = "{READ_TOKEN}"
scopes = ["read"]
{extra}
"#,
        dir = dir.display()
    )
}

impl TestServer {
    pub async fn start(extra: &str) -> TestServer {
        Self::start_in(tempfile::tempdir().unwrap(), extra).await
    }

    /// Starts on an existing storage dir (a restart).
    pub async fn start_in(dir: tempfile::TempDir, extra: &str) -> TestServer {
        Self::start_adjusted(dir, extra, |_| {}).await
    }

    /// Starts with the loaded config changed by `adjust` first: for `[server]` keys, which
    /// `extra` cannot repeat.
    pub async fn start_adjusted(
        dir: tempfile::TempDir,
        extra: &str,
        adjust: impl FnOnce(&mut config::Config),
    ) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let listen = listener.local_addr().unwrap().to_string();
        let mut config = config::load_str(&config_text(dir.path(), &listen, extra))
            .unwrap_or_else(|p| panic!("test config refused: {p:?}"));
        adjust(&mut config);
        let server = app::start(config, listener).await.expect("server starts");
        TestServer { base: format!("http://{listen}"), dir, server: Some(server), http: reqwest::Client::new() }
    }

    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        let response = req.send().await.expect("request reaches the server");
        let status = response.status().as_u16();
        let bytes = response.bytes().await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.request(reqwest::Method::POST, path, Some(TOKEN), Some(body.to_string().into_bytes())).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.request(reqwest::Method::GET, path, Some(TOKEN), None).await
    }

    /// Posts a customer message to an api channel.
    pub async fn inbound(&self, channel: &str, body: Value) -> (u16, Value) {
        self.post(&format!("/v1/channels/{channel}/inbound"), body).await
    }

    /// What `/metrics` shows.
    pub async fn metrics(&self) -> String {
        self.http.get(format!("{}/metrics", self.base)).send().await.unwrap().text().await.unwrap()
    }

    /// Every event in the log, in seq order.
    pub async fn all_events(&self) -> Vec<Value> {
        all_events_at(&self.http, &self.base).await
    }

    /// Polls a message until it reaches `status` (10 s at most).
    pub async fn wait_status(&self, id: &str, status: &str) -> Value {
        for _ in 0..200 {
            let (_, m) = self.get(&format!("/v1/messages/{id}")).await;
            if m["status"] == status {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("message {id} never became {status}: {}", self.get(&format!("/v1/messages/{id}")).await.1);
    }

    /// Validates `items` (see tests/python/validate_contract.py) against this server's
    /// `/v1/openapi.json`.
    pub async fn validate_contract(&self, items: Vec<Value>) {
        let openapi: Value =
            self.http.get(format!("{}/v1/openapi.json", self.base)).send().await.unwrap().json().await.unwrap();
        let out = python("validate_contract.py", &[], &serde_json::json!({"openapi": openapi, "items": items}));
        assert!(out.contains("validated"), "{out}");
    }

    /// Applies a new `extra` (same storage and listen address), as SIGHUP would.
    pub async fn reload(&mut self, extra: &str) -> app::Reloaded {
        self.reload_adjusted(extra, |_| {}).await
    }

    /// Applies a new `extra` with the loaded config changed by `adjust` first (as
    /// `start_adjusted`).
    pub async fn reload_adjusted(&mut self, extra: &str, adjust: impl FnOnce(&mut config::Config)) -> app::Reloaded {
        let listen = self.base.trim_start_matches("http://").to_owned();
        let mut config = config::load_str(&config_text(self.dir.path(), &listen, extra))
            .unwrap_or_else(|p| panic!("test config refused: {p:?}"));
        adjust(&mut config);
        self.server.as_mut().unwrap().reload(config).await
    }

    pub async fn stop(mut self) -> tempfile::TempDir {
        self.server.take().unwrap().stop().await;
        self.dir
    }
}

/// Every event in the log of the gateway at `base`, in seq order.
pub async fn all_events_at(http: &reqwest::Client, base: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let response =
            http.get(format!("{base}/v1/events?after={after}&limit=1000")).bearer_auth(TOKEN).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let page: Value = response.json().await.unwrap();
        let events = page["events"].as_array().unwrap().clone();
        if events.is_empty() {
            return out;
        }
        after = page["next_after"].as_u64().unwrap();
        out.extend(events);
    }
}

/// A port for a server a test starts as a separate process. Chosen below Linux's ephemeral range
/// (32768-60999): a port from `bind(0)`, released and bound again later, can meanwhile become
/// the local port of some outgoing connection of a test running in parallel.
pub fn free_port() -> u16 {
    // Each port once per test run: two tests starting servers at the same moment could
    // otherwise both find the same port free before either binds it.
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut handed_out = HANDED_OUT.lock().unwrap();
    loop {
        let port = fastrand::u16(20_000..32_000);
        if !handed_out.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed_out.push(port);
            return port;
        }
    }
}

/// A `[[webhooks]]` block for a receiver with a short retry schedule, taking every event.
pub fn webhook(id: &str, receiver: &Receiver, schedule: &str) -> String {
    webhook_for(id, receiver, schedule, "[]")
}

/// A `[[webhooks]]` block taking the event types in `events` (a TOML array of globs).
pub fn webhook_for(id: &str, receiver: &Receiver, schedule: &str, events: &str) -> String {
    webhook_at(id, &format!("{}/events", receiver.url), schedule, &format!("events = {events}"))
}

/// A `[[webhooks]]` block POSTing to `url` (behind a proxy, say), with `extra` lines of its own.
pub fn webhook_at(id: &str, url: &str, schedule: &str, extra: &str) -> String {
    format!(
        "\n[[webhooks]]\nid = \"{id}\"\nurl = \"{url}\"\nsecret = \"{SECRET}\"\nretry_schedule = {schedule}\n{extra}\n"
    )
}

/// An `api` channel replying to `receiver`.
pub fn api_channel(id: &str, receiver: Option<&Receiver>, limits: &str) -> String {
    let outbound =
        receiver.map(|r| format!("outbound_url = \"{}/replies\"\nsecret = \"{SECRET}\"", r.url)).unwrap_or_default();
    format!("\n[[channels]]\nid = \"{id}\"\ntype = \"api\"\n{outbound}\n[channels.limits]\n{limits}\n")
}

/// Runs one of the Python checks in tests/python with a JSON input; panics with its output
/// unless it succeeds. Fails (never skips) when Python or its packages are missing.
pub fn python(script: &str, args: &[&str], input: &Value) -> String {
    let python = std::env::var("SB_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let path = format!("{}/tests/python/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = piped(&python, &[&[path.as_str()][..], args].concat(), input.to_string().as_bytes());
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{script} failed:\n{text}");
    text
}

/// Runs `program` with `args`, `input` on its standard input; what it wrote and how it ended.
/// Panics when the program cannot be started (tests/run.sh installs what the tests need).
pub fn piped(program: &str, args: &[&str], input: &[u8]) -> std::process::Output {
    use std::io::Write;
    let mut child = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e} (tests/run.sh installs what the tests need)"));
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

/// Standard Webhooks verification written independently of the gateway's own signing code.
pub fn verify_signature(secret: &str, captured: &Captured) -> bool {
    use base64::Engine;
    use hmac::{Mac, SimpleHmac};
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = b64.decode(secret.trim_start_matches("whsec_")).unwrap();
    let signed = format!("{}.{}.", captured.header("webhook-id"), captured.header("webhook-timestamp"));
    let mut mac = SimpleHmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(signed.as_bytes());
    mac.update(&captured.body);
    let expected = b64.encode(mac.finalize().into_bytes());
    captured.header("webhook-signature").split(' ').any(|s| s.strip_prefix("v1,") == Some(expected.as_str()))
}

/// The real `switchboard` binary, started as its own process on `port`.
pub struct Binary {
    pub child: std::process::Child,
    pub base: String,
}

/// Starts the binary with `run --config`, stderr appended to `log_path`, and waits for `/healthz`.
pub async fn spawn(config_path: &std::path::Path, port: u16, log_path: &std::path::Path) -> Binary {
    spawn_with_env(config_path, port, log_path, &[]).await
}

/// `spawn`, with environment variables set for the binary (as systemd sets them).
pub async fn spawn_with_env(
    config_path: &std::path::Path,
    port: u16,
    log_path: &std::path::Path,
    envs: &[(&str, &std::path::Path)],
) -> Binary {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log_path).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["run", "--config"])
        .arg(config_path)
        .envs(envs.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    for _ in 0..100 {
        if client.get(format!("{base}/healthz")).send().await.is_ok() {
            return Binary { child, base };
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Not left running behind the failed test.
    let _ = child.kill();
    let _ = child.wait();
    panic!("the binary did not come up on {base}:\n{}", std::fs::read_to_string(log_path).unwrap_or_default());
}

impl Binary {
    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill").args([signal, &self.child.id().to_string()]).status().unwrap();
        assert!(status.success(), "kill {signal} failed");
    }
}
