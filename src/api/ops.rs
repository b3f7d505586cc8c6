//! Operations endpoints: liveness, readiness, Prometheus metrics, the OpenAPI document.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::error::ApiError;
use super::AppState;

pub async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

/// Ready when the store takes a durable write, the process is not shutting down, and no pull
/// channel is failing.
pub async fn readyz(State(state): State<AppState>) -> Response {
    let store = match tokio::time::timeout(Duration::from_secs(2), state.store.probe_write()).await {
        Ok(Ok(())) => "ok".to_owned(),
        Ok(Err(e)) if e.is_storage_full() => format!("error: storage full (free space under storage.path): {e}"),
        Ok(Err(e)) => format!("error: {e}"),
        Err(_) => "error: write did not complete within 2 s".to_owned(),
    };
    let running = if state.shutdown.is_cancelled() { "shutting down" } else { "ok" };
    let mut checks = json!({"store": store, "workers": running});
    let mut ready = store == "ok" && running == "ok";
    // Pull channels (IMAP, ...) report their state; one failing makes the gateway not ready.
    for (channel, error) in state.health.snapshot() {
        ready &= error.is_none();
        checks[format!("channel:{channel}")] = json!(error.map_or("ok".to_owned(), |e| format!("error: {e}")));
    }
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = json!({"status": if ready { "ready" } else { "not_ready" }, "checks": checks});
    (status, Json(body)).into_response()
}

/// Removes now what `storage.retention` says is old (the hourly prune, at once: after lowering
/// the retention to free space). Scope admin. 409 when no retention is set.
pub async fn prune(State(state): State<AppState>, headers: axum::http::HeaderMap) -> Result<Response, ApiError> {
    super::auth::authorize(&state.tokens.load(), &headers, crate::config::Scope::Admin)?;
    match state.retention.prune_now().await? {
        Some(pruned) => Ok(Json(pruned).into_response()),
        None => Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_retention",
            "storage.retention is not set: everything is kept, nothing is pruned",
        )),
    }
}

/// The process-wide recorder's metrics, then the gauges of what is configured now: the
/// channels' (`Outbound::gauges`) and the webhook consumers' backlogs. Worked out here rather
/// than kept in the recorder, which can forget nothing, so that a reload which removes a
/// channel or consumer removes its gauges.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let registry = state.registry.load();
    let channel_gauges = registry.iter().flat_map(|channel| {
        let gauges = channel.outbound.as_ref().map(|outbound| outbound.gauges()).unwrap_or_default();
        gauges.into_iter().map(|(name, value)| (name, channel.config.id(), value))
    });
    let mut text = state.metrics.render();
    crate::telemetry::render_gauges(&mut text, "channel", channel_gauges.collect());
    let backlogs = state.webhooks.backlogs();
    let backlogs = backlogs.iter().map(|(id, backlog)| ("switchboard_webhook_backlog", id.as_str(), *backlog as f64));
    crate::telemetry::render_gauges(&mut text, "consumer", backlogs.collect());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

pub async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], crate::docs::openapi_json()).into_response()
}

pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}
