//! One delivery attempt: POST the envelope with Standard Webhooks headers and read the answer.

use std::sync::Arc;
use std::time::Duration;

use super::ConsumerConfig;
use crate::http_out;
use crate::model::time;
use crate::webhooks::signing;

/// What the consumer's answer means for the event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// 2xx.
    Delivered,
    /// 410: the endpoint is gone; the consumer is disabled until re-enabled.
    Gone,
    /// Anything else: retry on the schedule (or after `retry_after`).
    Failed { error: String, retry_after: Option<Duration> },
}

pub async fn deliver(
    client: &reqwest::Client,
    config: &ConsumerConfig,
    event_id: &str,
    body: Arc<String>,
) -> AttemptOutcome {
    let timestamp = time::now_ms() / 1000;
    let mut request = client.post(&config.url).header("content-type", "application/json");
    for (name, value) in signing::headers(&config.keys, event_id, timestamp, body.as_bytes()) {
        request = request.header(name, value);
    }
    let response = match request.body(body.as_bytes().to_vec()).send().await {
        Ok(r) => r,
        Err(e) => return AttemptOutcome::Failed { error: http_out::describe(&e), retry_after: None },
    };
    let status = response.status().as_u16();
    match status {
        200..=299 => AttemptOutcome::Delivered,
        410 => AttemptOutcome::Gone,
        413 => AttemptOutcome::Failed {
            error: format!(
                "HTTP 413: the consumer refused a body of {} bytes as too large; set this webhook's \
                 max_body_bytes (now {}) below its limit, and larger events are cut to fit",
                body.len(),
                config.max_body_bytes
            ),
            retry_after: None,
        },
        300..=399 => AttemptOutcome::Failed { error: http_out::redirect_error(&response), retry_after: None },
        _ => {
            let retry_after = http_out::retry_after(&response);
            AttemptOutcome::Failed { error: format!("HTTP {status}"), retry_after }
        }
    }
}
