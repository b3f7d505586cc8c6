//! Read endpoints: messages, conversations, contacts, attachments (scope `read`), and closing or
//! reopening a conversation (scope `send`).

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::auth::authorize;
use super::error::{body_rejection, ApiError};
use super::AppState;
use crate::config::Scope;
use crate::json_input::{self, FieldError};
use crate::model::{time, EventType};
use crate::store;

pub async fn message(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state.tokens.load(), &headers, Scope::Read)?;
    let mut message = state.store.read(move |c| store::messages::get(c, &id)).await?;
    let message = message.as_mut().ok_or_else(|| ApiError::not_found("message"))?;
    state.store.attachment_urls().rebase(message);
    Ok(Json(message).into_response())
}

pub async fn conversation(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state.tokens.load(), &headers, Scope::Read)?;
    let conversation = state.store.read(move |c| store::conversations::get(c, &id)).await?;
    Ok(Json(conversation.ok_or_else(|| ApiError::not_found("conversation"))?).into_response())
}

#[derive(Deserialize)]
pub struct Page {
    after: Option<String>,
    limit: Option<usize>,
}

pub async fn conversation_messages(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(page): Query<Page>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state.tokens.load(), &headers, Scope::Read)?;
    let limit = page.limit.unwrap_or(100).clamp(1, 1000);
    let (found, mut messages) = state
        .store
        .read(move |c| {
            let found = store::conversations::get(c, &id)?.is_some();
            Ok((found, store::messages::for_conversation(c, &id, page.after.as_deref(), limit)?))
        })
        .await?;
    if !found {
        return Err(ApiError::not_found("conversation"));
    }
    let urls = state.store.attachment_urls();
    messages.iter_mut().for_each(|m| urls.rebase(m));
    let next_after = (messages.len() == limit).then(|| messages.last().map(|m| m.id.clone())).flatten();
    Ok(Json(json!({"messages": messages, "next_after": next_after})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConversationPatch {
    status: String,
}

/// `PATCH /v1/conversations/{id}` with `{"status": "closed"}` or `"open"`; emits
/// `conversation.updated` when the status changes.
pub async fn update_conversation(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    authorize(&state.tokens.load(), &headers, Scope::Send)?;
    let body = body.map_err(body_rejection)?;
    let patch: ConversationPatch = json_input::parse(&body).map_err(ApiError::invalid)?;
    if patch.status != "open" && patch.status != "closed" {
        return Err(ApiError::invalid(FieldError::new("status", "must be `open` or `closed`")));
    }
    let conversation = state
        .store
        .write(move |c| {
            if store::conversations::get(c, &id)?.is_none() {
                return Ok(None);
            }
            if let Some(updated) = store::conversations::set_status(c, &id, &patch.status, time::now_ms())? {
                store::events::append(c, EventType::ConversationUpdated, updated.id.as_str(), &updated)?;
                return Ok(Some(updated));
            }
            store::conversations::get(c, &id)
        })
        .await?;
    Ok(Json(conversation.ok_or_else(|| ApiError::not_found("conversation"))?).into_response())
}

pub async fn contact(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state.tokens.load(), &headers, Scope::Read)?;
    let contact = state.store.read(move |c| store::conversations::contact(c, &id)).await?;
    Ok(Json(contact.ok_or_else(|| ApiError::not_found("contact"))?).into_response())
}

/// The attachment's bytes, with its content type and file name.
pub async fn attachment(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state.tokens.load(), &headers, Scope::Read)?;
    let attachment = state.store.read(move |c| store::messages::attachment(c, &id)).await?;
    let attachment = attachment.ok_or_else(|| ApiError::not_found("attachment"))?;
    let blob = state.store.blob_file(&attachment.sha256, attachment.size).await?;
    let file = blob.open().await.map_err(|e| {
        tracing::error!(path = %blob.path.display(), error = %e, "attachment blob is missing");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "blob_missing", "the attachment's stored file cannot be read")
    })?;
    let stream = tokio_util::io::ReaderStream::new(file);
    let filename = attachment.filename.unwrap_or_else(|| attachment.id.to_string());
    Ok((
        [
            (header::CONTENT_TYPE, attachment.content_type),
            (header::CONTENT_LENGTH, attachment.size.to_string()),
            (header::CONTENT_DISPOSITION, content_disposition(&filename)),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// `Content-Disposition` for a download (RFC 6266): the exact name, UTF-8 and percent-encoded, in
/// `filename*`, which browsers and HTTP libraries prefer, and an ASCII stand-in in `filename`
/// for the rest. A raw "Faktura zamówienie.pdf" in the header would reach most clients as
/// Latin-1 mojibake; a quote or line break in it would break the header.
fn content_disposition(filename: &str) -> String {
    let ascii: String = filename
        .chars()
        .map(|c| if c == ' ' || (c.is_ascii_graphic() && !matches!(c, '"' | '\\' | '/' | '%')) { c } else { '_' })
        .collect();
    if ascii == filename {
        return format!("attachment; filename=\"{ascii}\"");
    }
    // RFC 8187 attr-char: what may stand unencoded in an ext-value.
    let encoded: String = filename
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'!'
            | b'#'
            | b'$'
            | b'&'
            | b'+'
            | b'-'
            | b'.'
            | b'^'
            | b'_'
            | b'`'
            | b'|'
            | b'~' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}
