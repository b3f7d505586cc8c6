//! Wiring only: open the store, build channels, start the outbound engine, webhook workers and
//! the HTTP server; on SIGHUP re-read the config and apply it (`reload.rs`); on SIGTERM/SIGINT
//! stop intake, let in-flight work finish or go back to the store, flush, and exit within
//! `SHUTDOWN_BUDGET`.

mod reload;
pub mod retention;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use reload::Reloaded;

use crate::api::{self, AppState};
use crate::channels::{self, ChannelConfig, Registry};
use crate::config::{Config, TokenConfig};
use crate::live::Live;
use crate::outbound::OutboundEngine;
use crate::pipeline::{Health, InboundContext, Pipeline};
use crate::store::Store;
use crate::telemetry;
use crate::webhooks::Webhooks;

/// Time allowed to requests, sends and deliveries in flight at shutdown (the whole stop stays
/// under 10 s: HTTP and workers drain in parallel, then the store flushes).
const DRAIN: Duration = Duration::from_secs(6);

/// A running gateway.
pub struct Server {
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    http: JoinHandle<std::io::Result<()>>,
    /// Every worker task (outbound engine, webhook consumers, pull loops), including those a
    /// reload starts.
    tasks: TaskTracker,
    store: Store,
    running: Running,
}

/// What a reload can change, and the config it came from.
struct Running {
    config: Config,
    pipeline: Pipeline,
    health: Health,
    registry: Live<Registry>,
    tokens: Live<Vec<TokenConfig>>,
    /// `storage.retention`, which the retention task reads before each prune.
    keep: Live<Option<Duration>>,
    outbound: OutboundEngine,
    webhooks: Webhooks,
    /// The pull loop (IMAP, ...) of each channel that has one.
    pull_loops: HashMap<String, PullLoop>,
}

struct PullLoop {
    /// A child of the process shutdown: cancelled alone when a reload changes or removes the
    /// channel.
    stop: CancellationToken,
    handle: JoinHandle<()>,
}

/// Starts everything on an already bound listener (tests bind `127.0.0.1:0`).
pub async fn start(config: Config, listener: TcpListener) -> anyhow::Result<Server> {
    let addr = listener.local_addr()?;
    // The recorder first: what the store and the channels report while they start (a signing
    // certificate's expiry) would otherwise be lost.
    let metrics = telemetry::metrics();
    let store = Store::open(&config.storage.path)
        .with_context(|| format!("cannot open the store at {}", config.storage.path.display()))?;
    let shutdown = CancellationToken::new();
    let tasks = TaskTracker::new();
    let registry = Live::new(Registry::build(&config.channels, config.outbound.timeout.0, &store));
    store.use_public_url(&config.server.public_url).await;
    let pipeline = Pipeline::new(store.clone(), registry.clone());

    let health = Health::default();
    let outbound = OutboundEngine::new(store.clone(), registry.clone(), config.outbound.clone(), health.clone());
    tasks.spawn(outbound.clone().run(shutdown.clone(), DRAIN));
    let webhooks = Webhooks::start(&store, &config.webhooks, &config.delivery, &shutdown, DRAIN, &tasks).await?;
    let tokens = Live::new(config.tokens.clone());
    let keep = Live::new(config.storage.retention.map(|r| r.0));
    let retention = retention::Retention::new(store.clone(), keep.clone(), webhooks.clone());

    let state = AppState {
        store: store.clone(),
        pipeline: pipeline.clone(),
        registry: registry.clone(),
        outbound: outbound.clone(),
        webhooks: webhooks.clone(),
        tokens: tokens.clone(),
        max_attachment_bytes: config.server.max_attachment_bytes,
        metrics,
        health: health.clone(),
        shutdown: shutdown.clone(),
        retention: retention.clone(),
    };
    let router = api::router(state, config.server.max_body_bytes);
    let stop = shutdown.clone();
    let http = tokio::spawn(async move {
        axum::serve(listener, router).with_graceful_shutdown(async move { stop.cancelled().await }).await
    });
    tracing::info!(
        listen = %addr,
        channels = config.channels.len(),
        webhooks = config.webhooks.len(),
        storage = %config.storage.path.display(),
        version = env!("CARGO_PKG_VERSION"),
        "switchboard started"
    );
    let running =
        Running { config, pipeline, health, registry, tokens, keep, outbound, webhooks, pull_loops: HashMap::new() };
    tasks.spawn(retention.run(shutdown.clone()));
    tasks.spawn(crate::pipeline::rekey::run(store.clone(), shutdown.clone()));
    tasks.spawn(crate::store::space::watch(running.config.storage.path.clone(), shutdown.clone()));
    let mut server = Server { addr, shutdown, http, tasks, store, running };
    let channels = server.running.config.channels.clone();
    for channel in &channels {
        server.start_pull_loop(channel);
    }
    Ok(server)
}

impl Server {
    /// Starts the channel's pull loop, if its type has one.
    fn start_pull_loop(&mut self, channel: &ChannelConfig) {
        let Some(inbound) = channels::build_inbound(channel) else { return };
        let stop = self.shutdown.child_token();
        let running = &self.running;
        let cx = InboundContext::new(
            channel.id(),
            channel.kind(),
            running.pipeline.clone(),
            running.health.clone(),
            stop.clone(),
        );
        let handle = self.tasks.spawn(inbound.run(cx));
        self.running.pull_loops.insert(channel.id().to_owned(), PullLoop { stop, handle });
    }

    /// Stops intake, drains, flushes the store. Nothing acknowledged is lost: every accepted
    /// message is already committed, and unfinished sends and deliveries stay in the store.
    pub async fn stop(self) {
        tracing::info!("shutting down: intake stopped, draining work in flight");
        self.shutdown.cancel();
        self.tasks.close();
        let http = tokio::time::timeout(DRAIN, self.http);
        let workers = tokio::time::timeout(DRAIN + Duration::from_secs(1), self.tasks.wait());
        let (http, workers) = tokio::join!(http, workers);
        if http.is_err() {
            tracing::warn!("HTTP requests still open after the drain period were cut");
        }
        if workers.is_err() {
            tracing::warn!("workers did not stop within the drain period");
        }
        let store = self.store.clone();
        let _ = tokio::task::spawn_blocking(move || store.close()).await;
        tracing::info!("shutdown complete");
    }
}

/// `switchboard run`: bind, start, then serve until SIGTERM or SIGINT; SIGHUP re-reads the
/// config file at `path` and applies it.
pub async fn run(config: Config, path: &Path) -> anyhow::Result<()> {
    telemetry::init_logging(&config.log);
    // Handlers first: a stop that arrives while the store opens (the listener already accepts
    // connections) is then a graceful stop right after start, not death by the default action.
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler installs");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler installs");
    let mut hup = signal(SignalKind::hangup()).expect("SIGHUP handler installs");
    let listener = TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.listen))?;
    let mut server = start(config, listener).await?;
    crate::systemd::ready(&server.addr.to_string());
    crate::systemd::spawn_watchdog(server.store.clone(), server.shutdown.clone());

    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM received"); break }
            _ = int.recv() => { tracing::info!("SIGINT received"); break }
            _ = hup.recv() => {
                tracing::info!(config = %path.display(), "SIGHUP received: reloading the configuration");
                crate::systemd::reloading();
                let outcome = server.reload_from(path).await;
                crate::systemd::reloaded(&outcome);
                crate::systemd::ready(&server.addr.to_string());
            }
        }
    }
    crate::systemd::stopping();
    server.stop().await;
    Ok(())
}
