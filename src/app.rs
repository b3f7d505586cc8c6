//! Wiring only: open the store, build channels, start the outbound engine, webhook workers and
//! the HTTP server; on SIGTERM/SIGINT stop intake, let in-flight work finish or go back to the
//! store, flush, and exit within `SHUTDOWN_BUDGET`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api::{self, AppState};
use crate::channels::{self, Registry};
use crate::config::Config;
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
    workers: Vec<JoinHandle<()>>,
    store: Store,
}

/// Starts everything on an already bound listener (tests bind `127.0.0.1:0`).
pub async fn start(config: Config, listener: TcpListener) -> anyhow::Result<Server> {
    let addr = listener.local_addr()?;
    let store = Store::open(&config.storage.path)
        .with_context(|| format!("cannot open the store at {}", config.storage.path.display()))?;
    let shutdown = CancellationToken::new();
    let registry = Arc::new(Registry::build(&config.channels, config.outbound.timeout.0, &store));
    let pipeline = Pipeline::new(store.clone(), &config.server.public_url);

    let outbound = OutboundEngine::new(store.clone(), registry.clone(), config.outbound.clone());
    let mut workers = vec![tokio::spawn(outbound.clone().run(shutdown.clone(), DRAIN))];
    let (webhooks, hook_tasks) = Webhooks::start(&store, &config.webhooks, &config.delivery, &shutdown, DRAIN).await?;
    workers.extend(hook_tasks);
    let health = Health::default();
    for channel in &config.channels {
        if let Some(inbound) = channels::build_inbound(channel) {
            let cx =
                InboundContext::new(channel.id(), channel.kind(), pipeline.clone(), health.clone(), shutdown.clone());
            workers.push(tokio::spawn(inbound.run(cx)));
        }
    }

    let state = AppState {
        store: store.clone(),
        pipeline,
        registry,
        outbound,
        webhooks,
        tokens: Arc::new(config.tokens.clone()),
        max_attachment_bytes: config.server.max_attachment_bytes,
        metrics: telemetry::metrics(),
        health,
        shutdown: shutdown.clone(),
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
    Ok(Server { addr, shutdown, http, workers, store })
}

impl Server {
    /// Stops intake, drains, flushes the store. Nothing acknowledged is lost: every accepted
    /// message is already committed, and unfinished sends and deliveries stay in the store.
    pub async fn stop(self) {
        tracing::info!("shutting down: intake stopped, draining work in flight");
        self.shutdown.cancel();
        let http = tokio::time::timeout(DRAIN, self.http);
        let workers =
            tokio::time::timeout(DRAIN + Duration::from_secs(1), futures_util::future::join_all(self.workers));
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

/// `switchboard run`: bind, start, wait for SIGTERM or SIGINT, stop.
pub async fn run(config: Config) -> anyhow::Result<()> {
    telemetry::init_logging(&config.log);
    let listener = TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.listen))?;
    let server = start(config, listener).await?;
    crate::systemd::ready(&server.addr.to_string());
    crate::systemd::spawn_watchdog(server.store.clone(), server.shutdown.clone());
    wait_for_signal().await;
    crate::systemd::stopping();
    server.stop().await;
    Ok(())
}

/// Waits for SIGTERM or SIGINT. SIGHUP (`systemctl reload`) is caught so it cannot kill the
/// process: live reload is not implemented yet, so it is logged and the running config kept.
async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler installs");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler installs");
    let mut hup = signal(SignalKind::hangup()).expect("SIGHUP handler installs");
    loop {
        tokio::select! {
            _ = term.recv() => return tracing::info!("SIGTERM received"),
            _ = int.recv() => return tracing::info!("SIGINT received"),
            _ = hup.recv() => tracing::warn!(
                "SIGHUP received: live reload is not implemented yet; the running configuration is kept (restart to apply changes)"
            ),
        }
    }
}
