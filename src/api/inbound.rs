//! `POST /v1/channels/{id}/inbound` (api channels), `/hooks/{channel_id}` (provider pushes), and
//! `GET /v1/channels/{id}/rejected`: what a channel received and refused, and why.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::auth::authorize;
use super::error::{body_rejection, ApiError};
use super::{AppState, SeqPage};
use crate::channels::{self, ChannelConfig};
use crate::config::Scope;
use crate::model::time;
use crate::pipeline::Outcome;
use crate::store;

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

/// Inbound items the channel refused (an automatic reply outside any conversation, a bounce
/// about a mail we never sent, a copy of our own mail), oldest first: where an operator finds
/// the mail someone says they sent. Scope admin.
pub async fn rejected(
    State(state): State<AppState>,
    Path(channel_id): Path<String>,
    Query(page): Query<SeqPage>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state.tokens.load(), &headers, Scope::Admin)?;
    state.registry.load().get(&channel_id).ok_or_else(|| unknown_channel(&channel_id))?;
    let (after, limit) = (page.after(), page.limit());
    let rows = state.store.read(move |c| store::mail::rejected_list(c, &channel_id, after, limit)).await?;
    let next_after = page.next_after(rows.len(), rows.last().map(|r| r.id));
    let items: Vec<_> = rows
        .into_iter()
        .map(|r| {
            let summary: serde_json::Value = serde_json::from_str(&r.summary).unwrap_or_default();
            json!({
                "id": r.id,
                "reason": r.reason,
                "from": summary["from"],
                "subject": summary["subject"],
                "provider_message_id": summary["provider_message_id"],
                "source": summary["source"],
                "received_at": time::rfc3339(r.created_at),
            })
        })
        .collect();
    Ok(Json(json!({ "rejected": items, "next_after": next_after })).into_response())
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
