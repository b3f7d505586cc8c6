//! Replies on an `api` channel: the message object POSTed to `outbound_url`, signed with the
//! Standard Webhooks headers (`webhook-id` is the message id, stable across retries, so the
//! receiver can deduplicate). 2xx = sent (a JSON `{"id": …}` answer becomes the provider id);
//! 408, 429, 5xx and transport errors are temporary; any other status is permanent.

use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;

use super::config::ApiChannelConfig;
use crate::channels::{Outbound, OutboundMessage, SendError, Sent};
use crate::http_out;
use crate::webhooks::signing::{self, SigningKey};

pub struct ApiOutbound {
    client: reqwest::Client,
    url: String,
    keys: Vec<SigningKey>,
}

impl ApiOutbound {
    /// `None` when the channel has no `outbound_url` (it cannot send).
    pub fn new(config: &ApiChannelConfig, timeout: Duration) -> Option<ApiOutbound> {
        let url = config.outbound_url.clone()?;
        let keys = config.secret.iter().filter_map(|s| SigningKey::parse(s.expose())).collect();
        Some(ApiOutbound { client: http_out::client(timeout, config.ca_pem.as_deref()), url, keys })
    }

    async fn post(&self, message: &OutboundMessage) -> Result<Sent, SendError> {
        let body = serde_json::to_vec(&message.message)
            .map_err(|e| SendError::Permanent { code: "serialize".into(), reason: e.to_string() })?;
        let timestamp = crate::model::time::now_ms() / 1000;
        let mut request = self.client.post(&self.url).header("content-type", "application/json");
        for (name, value) in signing::headers(&self.keys, message.message.id.as_str(), timestamp, &body) {
            request = request.header(name, value);
        }
        let response = request.body(body).send().await.map_err(|e| SendError::Temporary {
            code: "transport".into(),
            reason: http_out::describe(&e),
            retry_after: None,
        })?;
        let status = response.status().as_u16();
        let retry_after = http_out::retry_after(&response);
        if (200..300).contains(&status) {
            let body = response.bytes().await.unwrap_or_default();
            let provider_message_id = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("id").and_then(|id| id.as_str().map(str::to_owned)));
            return Ok(Sent { provider_message_id, ..Sent::default() });
        }
        let reason = match status {
            300..=399 => format!("{}: {}", self.url, http_out::redirect_error(&response)),
            _ => format!("{} answered HTTP {status}", self.url),
        };
        let code = format!("http_{status}");
        if status == 408 || status == 429 || status >= 500 {
            Err(SendError::Temporary { code, reason, retry_after })
        } else {
            Err(SendError::Permanent { code, reason })
        }
    }
}

impl Outbound for ApiOutbound {
    fn send<'a>(&'a self, message: &'a OutboundMessage) -> BoxFuture<'a, Result<Sent, SendError>> {
        self.post(message).boxed()
    }
}
