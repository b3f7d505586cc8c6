//! Webhook consumer administration (scope `admin`): status, replay, enable, dead letters.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::auth::authorize;
use super::error::{body_rejection, ApiError};
use super::{AppState, SeqPage};
use crate::config::Scope;
use crate::json_input;
use crate::model::time;
use crate::store;
use crate::webhooks::WebhookError;

fn webhook_error(e: WebhookError) -> ApiError {
    match e {
        WebhookError::NotFound => ApiError::not_found("webhook consumer"),
        WebhookError::Store(e) => e.into(),
    }
}

pub async fn list(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    authorize(&state.tokens.load(), &headers, Scope::Admin)?;
    let mut out = Vec::new();
    for id in state.webhooks.ids() {
        out.push(state.webhooks.status(&id).await.map_err(webhook_error)?);
    }
    Ok(Json(json!({ "webhooks": out })).into_response())
}

pub async fn status(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state.tokens.load(), &headers, Scope::Admin)?;
    Ok(Json(state.webhooks.status(&id).await.map_err(webhook_error)?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayBody {
    after_seq: u64,
}

/// `{"after_seq": N}`: deliver again every matching event after N.
pub async fn replay(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    authorize(&state.tokens.load(), &headers, Scope::Admin)?;
    if !state.webhooks.contains(&id) {
        return Err(ApiError::not_found("webhook consumer"));
    }
    let body: ReplayBody = json_input::parse(&body.map_err(body_rejection)?).map_err(ApiError::invalid)?;
    let queued = state.webhooks.replay(&id, body.after_seq).await.map_err(webhook_error)?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "queued": queued }))).into_response())
}

pub async fn enable(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state.tokens.load(), &headers, Scope::Admin)?;
    state.webhooks.enable(&id).await.map_err(webhook_error)?;
    Ok(Json(state.webhooks.status(&id).await.map_err(webhook_error)?).into_response())
}

pub async fn dead_letters(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(page): Query<SeqPage>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state.tokens.load(), &headers, Scope::Admin)?;
    if !state.webhooks.contains(&id) {
        return Err(ApiError::not_found("webhook consumer"));
    }
    let (after, limit) = (page.after(), page.limit());
    let rows = state.store.read(move |c| store::webhooks::dead_letters(c, &id, after, limit)).await?;
    let next_after = page.next_after(rows.len(), rows.last().map(|d| d.seq));
    let items: Vec<_> = rows
        .into_iter()
        .map(|d| {
            json!({
                "event_id": d.event_id,
                "seq": d.seq,
                "ordering_key": d.ordering_key,
                "attempts": d.attempts,
                "last_error": d.last_error,
                "last_attempt_at": time::rfc3339(d.next_attempt_at),
            })
        })
        .collect();
    Ok(Json(json!({ "dead_letters": items, "next_after": next_after })).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RetryBody {
    /// Retry only these; absent means every dead letter.
    event_ids: Option<Vec<String>>,
}

pub async fn retry_dead_letters(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    authorize(&state.tokens.load(), &headers, Scope::Admin)?;
    let body = body.map_err(body_rejection)?;
    let body: RetryBody =
        if body.is_empty() { RetryBody::default() } else { json_input::parse(&body).map_err(ApiError::invalid)? };
    let queued = state.webhooks.retry_dead(&id, body.event_ids).await.map_err(webhook_error)?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "queued": queued }))).into_response())
}
