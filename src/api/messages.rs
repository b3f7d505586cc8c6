//! `POST /v1/messages`: queue a reply or a new message, with `Idempotency-Key`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::auth::authorize;
use super::error::{body_rejection, ApiError};
use super::AppState;
use crate::config::Scope;
use crate::json_input::FieldError;
use crate::outbound::submit::{self, Submission, SubmitError};
use crate::store::hex;

pub async fn send(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let caller = authorize(&state.tokens.load(), &headers, Scope::Send)?;
    let body = body.map_err(body_rejection)?;
    let idempotency_key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => match v.to_str() {
            Ok(k) if !k.is_empty() && k.len() <= 255 => Some(k.to_owned()),
            _ => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_header",
                    "Idempotency-Key must be 1-255 visible ASCII characters",
                )
                .field("Idempotency-Key"))
            }
        },
    };
    // Same body = same JSON value: hash a canonical form, so key order and spacing do not matter.
    let canonical = serde_json::from_slice::<serde_json::Value>(&body)
        .map_err(|e| ApiError::invalid(FieldError::new("", format!("malformed JSON: {e}"))))?;
    let request_sha256 = hex(&Sha256::digest(canonical.to_string().as_bytes()));
    let submission = Submission { token_name: caller.name, idempotency_key, request_sha256 };
    let accepted = submit::submit(
        &state.store,
        &state.registry.load(),
        &state.pipeline,
        &body,
        state.max_attachment_bytes,
        submission,
    )
    .await
    .map_err(submit_error)?;
    if accepted.queued {
        state.outbound.wake();
    }
    let status = StatusCode::from_u16(accepted.status).unwrap_or(StatusCode::ACCEPTED);
    Ok((status, [(header::CONTENT_TYPE, "application/json")], accepted.body).into_response())
}

fn submit_error(e: SubmitError) -> ApiError {
    match e {
        SubmitError::Input(e) => e.into(),
        SubmitError::ConversationNotFound => ApiError::not_found("conversation").field("conversation_id"),
        SubmitError::UnknownChannel(id) => {
            ApiError::new(StatusCode::NOT_FOUND, "unknown_channel", format!("no channel `{id}` is configured"))
                .field("channel")
        }
        e @ SubmitError::ChannelCannotSend(_) => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "channel_cannot_send", e.to_string()).field("channel")
        }
        SubmitError::OwnAddress { field, .. } | SubmitError::BadAddress { field, .. } => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", e.to_string()).field(field)
        }
        SubmitError::MailOnly { field, .. } => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", e.to_string()).field(field)
        }
        e @ (SubmitError::InReplyToNotFound | SubmitError::AutomaticAnswerToAutomatic) => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", e.to_string()).field("in_reply_to")
        }
        e @ SubmitError::AutoReplyLimit { .. } => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "auto_reply_limit", e.to_string()).field("auto_reply")
        }
        e @ SubmitError::IdempotencyConflict => {
            ApiError::new(StatusCode::CONFLICT, "idempotency_conflict", e.to_string()).field("Idempotency-Key")
        }
        SubmitError::Store(e) => e.into(),
    }
}
