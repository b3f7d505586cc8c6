//! API errors as JSON: `{"error": {"code": "...", "message": "...", "field": "..."}}` with the
//! right status. Nothing is stored for a request answered with one of these.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::json_input::{FieldError, InputError};
use crate::store::StoreError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    /// Seconds for `Retry-After` on a 503 or 429 (default 1).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), field: None, retry_after: None }
    }

    pub fn retry_after(mut self, seconds: u64) -> ApiError {
        self.retry_after = Some(seconds);
        self
    }

    pub fn field(mut self, field: impl Into<String>) -> ApiError {
        let field = field.into();
        self.field = (!field.is_empty()).then_some(field);
        self
    }

    pub fn not_found(what: &str) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("{what} not found"))
    }

    pub fn invalid(e: FieldError) -> ApiError {
        if e.field.is_empty() {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", e.message)
        } else {
            let message = format!("{}: {}", e.field, e.message);
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", message).field(e.field)
        }
    }

    pub fn too_large(e: FieldError) -> ApiError {
        let message = format!("{}: {}", e.field, e.message);
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message).field(e.field)
    }
}

impl From<InputError> for ApiError {
    fn from(e: InputError) -> Self {
        match e {
            InputError::Invalid(e) => ApiError::invalid(e),
            InputError::TooLarge(e) => ApiError::too_large(e),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        if e.is_storage_full() {
            tracing::error!(error = %e, "storage full: a request was refused (503); free space under storage.path");
            return ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_full",
                "the server's storage is full; nothing was kept, retry later",
            )
            .retry_after(60);
        }
        tracing::error!(error = %e, "store error while serving a request");
        let status = match e {
            StoreError::Closed => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, "store_unavailable", "the request could not be stored; nothing was kept, retry later")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(field) = self.field {
            error["field"] = json!(field);
        }
        let mut response = (self.status, axum::Json(json!({ "error": error }))).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE || self.status == StatusCode::TOO_MANY_REQUESTS {
            let seconds = HeaderValue::from(self.retry_after.unwrap_or(1));
            response.headers_mut().insert(header::RETRY_AFTER, seconds);
        }
        response
    }
}

/// Maps a body that could not be read (too large, broken connection) to an API error.
pub fn body_rejection(rejection: axum::extract::rejection::BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the request body is larger than server.max_body_bytes",
        )
    } else {
        ApiError::new(rejection.status(), "unreadable_body", rejection.body_text())
    }
}
