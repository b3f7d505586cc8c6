//! `POST /v1/channels/{id}/inbound` (api channels), `/hooks/{channel_id}` (provider pushes),
//! `GET /v1/channels/{id}/rejected`: what a channel received and refused, and why, and
//! `POST /v1/channels/{id}/rejected/{rejected_id}/accept`: taking a refused item in after all.

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
    let urls = state.store.attachment_urls();
    let items: Vec<_> = rows
        .into_iter()
        .map(|r| {
            let summary: serde_json::Value = serde_json::from_str(&urls.rebase_json(&r.summary)).unwrap_or_default();
            let (accepted_message_id, accepted_at) = r.accepted.map(|(m, at)| (m, time::rfc3339(at))).unzip();
            json!({
                "id": r.id,
                "reason": r.reason,
                "from": summary["from"],
                "subject": summary["subject"],
                "provider_message_id": summary["provider_message_id"],
                "source": summary["source"],
                "received_at": time::rfc3339(summary["received_at"].as_i64().unwrap_or(r.created_at)),
                "accepted_message_id": accepted_message_id,
                "accepted_at": accepted_at,
            })
        })
        .collect();
    Ok(Json(json!({ "rejected": items, "next_after": next_after })).into_response())
}

/// `POST /v1/channels/{id}/rejected/{rejected_id}/accept`: takes in an item the channel refused
/// (a customer's mail that looked automatic, a bounce an operator wants to see), from its kept
/// source, through the one inbound path with no refusal rule: it becomes a message, with its
/// events, as if it had been accepted when it came. Taking it in again returns the same message
/// (`duplicate: true`); the same mail fetched again later is that message too. Scope admin.
pub async fn accept(
    State(state): State<AppState>,
    Path((channel_id, rejected_id)): Path<(String, u64)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state.tokens.load(), &headers, Scope::Admin)?;
    let registry = state.registry.load();
    let channel = registry.get(&channel_id).ok_or_else(|| unknown_channel(&channel_id))?;
    let id = channel_id.clone();
    let item = state.store.read(move |c| store::mail::rejected_item(c, &id, rejected_id)).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_rejected",
            format!("channel `{channel_id}` refused no item {rejected_id}"),
        )
    })?;
    let summary: serde_json::Value = serde_json::from_str(&item.summary).unwrap_or_default();
    let source = &summary["source"];
    let (ChannelConfig::Email(config), Some(sha256)) = (&channel.config, source["sha256"].as_str()) else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_source",
            format!(
                "item {rejected_id} was refused without its content kept (only mail channels with keep_source keep it); it cannot be taken in"
            ),
        ));
    };
    let size = source["size"].as_u64().unwrap_or(0);
    let blob = state.store.blob_file(sha256, size).await?;
    let bytes = blob.read().await.map_err(|e| {
        tracing::error!(path = %blob.path.display(), error = %e, "a refused item's kept source is missing");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "blob_missing", "the item's kept source cannot be read")
    })?;
    let config = config.clone();
    // Parsing a large mail takes a while: off the async workers, as the IMAP loop does.
    let parsed = tokio::task::spawn_blocking(move || channels::email::mime::to_raw_inbound(&config, bytes)).await;
    // Parsing catches its own panics: only a runtime shutting down fails the task (503, retry).
    let mut raw = parsed.map_err(|_| crate::store::StoreError::Closed)?;
    raw.accepted_refusal = Some(rejected_id);
    // When the mailbox got it, not when it was taken in.
    raw.received_at = summary["received_at"].as_i64();
    let (message_id, conversation_id, duplicate) = match state.pipeline.ingest(raw).await? {
        Outcome::Stored { message_id, conversation_id } => (message_id, conversation_id, false),
        Outcome::Duplicate { message_id, conversation_id } => (message_id, conversation_id, true),
        Outcome::Rejected { reason } => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "cannot_accept",
                format!("item {rejected_id} cannot be taken in: {reason}"),
            ))
        }
    };
    tracing::info!(channel = %channel_id, rejected_id, message = %message_id, duplicate, "refused inbound item taken in");
    let body = json!({"message_id": message_id, "conversation_id": conversation_id, "duplicate": duplicate});
    Ok(Json(body).into_response())
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
