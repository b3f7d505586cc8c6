//! HTTP: the `/v1` API (bearer tokens with scopes), provider hooks under `/hooks/{channel_id}`,
//! and `/healthz`, `/readyz`, `/metrics`.
//!
//! Handlers translate HTTP to calls on the pipeline, the outbound module, the store's read side
//! and the webhook workers; they hold no logic of their own beyond validation and mapping errors.
//! The public contract is docs/openapi.json (served at `/v1/openapi.json`).

mod auth;
mod error;
mod events;
mod inbound;
mod messages;
mod ops;
mod read;
mod webhooks;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;

pub use error::ApiError;

use crate::channels::Registry;
use crate::config::TokenConfig;
use crate::live::Live;
use crate::outbound::OutboundEngine;
use crate::pipeline::Pipeline;
use crate::store::Store;
use crate::webhooks::Webhooks;

/// `?after=<position>&limit=N` of a list read in order by a numeric position (dead letters,
/// refused items): 100 by default, at most 1000 a page.
#[derive(serde::Deserialize)]
pub struct SeqPage {
    after: Option<u64>,
    limit: Option<usize>,
}

impl SeqPage {
    pub fn after(&self) -> u64 {
        self.after.unwrap_or(0)
    }

    pub fn limit(&self) -> usize {
        self.limit.unwrap_or(100).clamp(1, 1000)
    }

    /// The `next_after` of a page of `count` items ending at position `last`: none when the
    /// page was not full (nothing more to read).
    pub fn next_after(&self, count: usize, last: Option<u64>) -> Option<u64> {
        (count == self.limit()).then_some(last).flatten()
    }
}

/// Everything a handler may use.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub pipeline: Pipeline,
    /// Swapped by a reload, like `tokens`.
    pub registry: Live<Registry>,
    pub outbound: OutboundEngine,
    pub webhooks: Webhooks,
    pub tokens: Live<Vec<TokenConfig>>,
    pub max_attachment_bytes: usize,
    pub metrics: PrometheusHandle,
    /// Pull channels' state for `/readyz`.
    pub health: crate::pipeline::Health,
    /// Cancelled at shutdown: SSE streams end, `/readyz` turns 503.
    pub shutdown: CancellationToken,
    /// `POST /v1/storage/prune` runs a prune at once.
    pub retention: crate::app::retention::Retention,
}

pub fn router(state: AppState, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/v1/channels/{id}/inbound", post(inbound::post))
        .route("/v1/channels/{id}/rejected", get(inbound::rejected))
        .route("/v1/channels/{id}/rejected/{rejected_id}/accept", post(inbound::accept))
        .route("/hooks/{channel_id}", get(inbound::provider_hook).post(inbound::provider_hook))
        .route("/v1/messages", post(messages::send))
        .route("/v1/messages/{id}", get(read::message))
        .route("/v1/conversations/{id}", get(read::conversation).patch(read::update_conversation))
        .route("/v1/conversations/{id}/messages", get(read::conversation_messages))
        .route("/v1/contacts/{id}", get(read::contact))
        .route("/v1/attachments/{id}", get(read::attachment))
        .route("/v1/events", get(events::list))
        .route("/v1/events/stream", get(events::stream))
        .route("/v1/webhooks", get(webhooks::list))
        .route("/v1/webhooks/{id}", get(webhooks::status))
        .route("/v1/webhooks/{id}/replay", post(webhooks::replay))
        .route("/v1/webhooks/{id}/enable", post(webhooks::enable))
        .route("/v1/webhooks/{id}/dead_letters", get(webhooks::dead_letters))
        .route("/v1/webhooks/{id}/dead_letters/retry", post(webhooks::retry_dead_letters))
        .route("/v1/storage/prune", post(ops::prune))
        .route("/v1/openapi.json", get(ops::openapi))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .fallback(ops::not_found)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}
