//! `POST /v1/channels/{id}/inbound` (api channels) and `/hooks/{channel_id}` (provider pushes).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::auth::authorize;
use super::error::{body_rejection, ApiError};
use super::AppState;
use crate::channels::{self, ChannelConfig};
use crate::config::Scope;
use crate::pipeline::Outcome;

pub async fn post(
    State(state): State<AppState>,
    Path(channel_id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    authorize(&state.tokens.load(), &headers, Scope::Send)?;
    let registry = state.registry.load();
    let channel = registry.get(&channel_id).ok_or_else(|| unknown_channel(&channel_id))?;
    if !matches!(channel.config, ChannelConfig::Api(_)) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_channel",
            format!("channel `{channel_id}` is of type {}; only api channels take /inbound", channel.config.kind()),
        ));
    }
    let body = body.map_err(body_rejection)?;
    let raw = channels::api::inbound::parse(&channel_id, &body, state.max_attachment_bytes)?;
    let outcome = state.pipeline.ingest(raw).await?;
    let (message_id, conversation_id, duplicate) = match outcome {
        Outcome::Stored { message_id, conversation_id } => (message_id, conversation_id, false),
        Outcome::Duplicate { message_id, conversation_id } => (message_id, conversation_id, true),
        Outcome::Rejected { reason } => {
            return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "rejected", reason))
        }
    };
    let body = json!({"message_id": message_id, "conversation_id": conversation_id, "duplicate": duplicate});
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

/// Provider webhooks. No configured channel type takes pushes yet; the route exists so that
/// channel work only adds a verifier.
pub async fn provider_hook(State(state): State<AppState>, Path(channel_id): Path<String>) -> ApiError {
    match state.registry.load().get(&channel_id) {
        None => unknown_channel(&channel_id),
        Some(c) => ApiError::new(
            StatusCode::NOT_FOUND,
            "no_provider_hook",
            format!("channel `{channel_id}` (type {}) takes no provider webhooks", c.config.kind()),
        ),
    }
}

fn unknown_channel(id: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "unknown_channel", format!("no channel `{id}` is configured"))
}
