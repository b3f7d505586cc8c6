//! `GET /v1/events` (pull by cursor) and `GET /v1/events/stream` (SSE, resumable).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use serde::Deserialize;

use super::auth::authorize;
use super::error::ApiError;
use super::AppState;
use crate::config::Scope;
use crate::model::event::EventFilter;
use crate::store::events::StoredEvent;
use crate::store::{self, Store};

#[derive(Deserialize)]
pub struct EventQuery {
    after: Option<u64>,
    limit: Option<usize>,
    /// Comma-separated type globs.
    types: Option<String>,
    /// Comma-separated channel ids.
    channels: Option<String>,
}

impl EventQuery {
    fn filter(&self) -> EventFilter {
        let list = |items: &Option<String>| -> Vec<String> {
            let items = items.as_deref().unwrap_or("").split(',').map(str::trim);
            items.filter(|t| !t.is_empty()).map(str::to_owned).collect()
        };
        EventFilter { types: list(&self.types), channels: list(&self.channels) }
    }
}

/// Scans at most this many log rows per request when filtering.
const SCAN_LIMIT: usize = 10_000;

pub async fn list(
    State(state): State<AppState>,
    Query(q): Query<EventQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state.tokens.load(), &headers, Scope::Read)?;
    let after = q.after.unwrap_or(0);
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > 1000 {
        return Err(
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", "limit must be 1-1000").field("limit")
        );
    }
    let filter = q.filter();
    let (events, scanned_to) =
        state.store.read(move |c| store::events::after_matching(c, after, limit, &filter, SCAN_LIMIT)).await?;
    // Asked after the read: a prune that ran meanwhile may have taken what this cursor missed.
    still_kept(&state.store, after)?;
    // The envelopes are already JSON: join them rather than re-serialise.
    let mut body = String::with_capacity(events.iter().map(|e| e.data.len() + 160).sum::<usize>() + 40);
    body.push_str(r#"{"events":["#);
    let urls = state.store.attachment_urls();
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&e.envelope_json(&urls));
    }
    body.push_str(&format!(r#"],"next_after":{}}}"#, scanned_to.max(after)));
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// SSE: `id:` is the seq, `data:` the envelope. Resumes after `Last-Event-ID` (or `?after=`).
pub async fn stream(
    State(state): State<AppState>,
    Query(q): Query<EventQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state.tokens.load(), &headers, Scope::Read)?;
    let resume = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
    let after = resume.or(q.after).unwrap_or(0);
    still_kept(&state.store, after)?;
    let stream = event_stream(state.store.clone(), after, q.filter(), state.shutdown.clone());
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response())
}

/// 410 for a cursor before the events `storage.retention` removed: the reader would miss them.
fn still_kept(store: &Store, after: u64) -> Result<(), ApiError> {
    let through = store.events_pruned_through();
    if after < through {
        return Err(ApiError::new(
            StatusCode::GONE,
            "events_pruned",
            format!(
                "events up to seq {through} were removed by storage.retention; go on with after={through} \
                 (what is gone can be read from /v1/conversations and /v1/messages, without the pruned content)"
            ),
        ));
    }
    Ok(())
}

struct Cursor {
    store: Store,
    after: u64,
    filter: EventFilter,
    buffer: VecDeque<StoredEvent>,
    last_seq: tokio::sync::watch::Receiver<u64>,
    shutdown: tokio_util::sync::CancellationToken,
}

fn event_stream(
    store: Store,
    after: u64,
    filter: EventFilter,
    shutdown: tokio_util::sync::CancellationToken,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let last_seq = store.last_seq();
    let cursor = Cursor { store, after, filter, buffer: VecDeque::new(), last_seq, shutdown };
    stream::unfold(cursor, |mut cur| async move {
        loop {
            if let Some(e) = cur.buffer.pop_front() {
                let event = Event::default().id(e.seq.to_string()).data(e.envelope_json(&cur.store.attachment_urls()));
                return Some((Ok(event), cur));
            }
            if cur.shutdown.is_cancelled() {
                return None;
            }
            if *cur.last_seq.borrow_and_update() > cur.after {
                let (after, filter) = (cur.after, cur.filter.clone());
                match cur.store.read(move |c| store::events::after_matching(c, after, 500, &filter, SCAN_LIMIT)).await {
                    // A prune passed the cursor: end the stream, and the client's reconnection
                    // with Last-Event-ID is told what it missed (410).
                    Ok(_) if after < cur.store.events_pruned_through() => return None,
                    Ok((events, scanned_to)) => {
                        cur.after = scanned_to.max(cur.after);
                        cur.buffer.extend(events);
                        continue;
                    }
                    Err(_) => return None,
                }
            }
            tokio::select! {
                changed = cur.last_seq.changed() => if changed.is_err() { return None },
                _ = cur.shutdown.cancelled() => return None,
            }
        }
    })
}
