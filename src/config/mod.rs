//! Configuration: embedded defaults → TOML file → `SWITCHBOARD_*` environment (`__` nests).
//!
//! One struct per component, every field documented, unknown keys refused. `load` returns either a
//! validated `Config` (secret files read, values checked) or every problem found, each as
//! `key.path: reason`: `switchboard check` prints them, `switchboard run` refuses to start on them.
//! This module reads files named in the config but opens no sockets and no database.

mod duration;
mod load;
mod secret;
mod validate;

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

pub use duration::ConfigDuration;
pub use load::{load, load_str};
pub use secret::Secret;

use crate::channels::ChannelConfig;

/// Where the config file is looked for when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/switchboard/switchboard.toml";

/// One problem with a configuration, named by its key path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub reason: String,
}

impl Problem {
    pub fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Problem { key: key.into(), reason: reason.into() }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.reason)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub log: LogConfig,
    pub delivery: DeliveryConfig,
    pub outbound: OutboundConfig,
    pub tokens: Vec<TokenConfig>,
    pub channels: Vec<ChannelConfig>,
    pub webhooks: Vec<WebhookConfig>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address the HTTP server binds.
    pub listen: SocketAddr,
    /// How providers and consumers reach us (attachment URLs are built from it; the store
    /// remembers former ones and gives their URLs out under this one).
    pub public_url: String,
    /// Largest request body accepted, in bytes (413 above it).
    pub max_body_bytes: usize,
    /// Largest single attachment accepted, in bytes.
    pub max_attachment_bytes: usize,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Directory holding the SQLite database and attachment blobs.
    pub path: PathBuf,
    /// How long messages' content, refused items and events are kept (`store::retention`);
    /// unset: for ever.
    #[serde(default)]
    pub retention: Option<ConfigDuration>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `text` (terminal, journald) or `json`.
    pub format: LogFormat,
    /// A tracing filter: `info`, `switchboard=debug,info`. `RUST_LOG` wins when set.
    pub level: String,
}

/// Defaults for webhook delivery; each `[[webhooks]]` entry may override them.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Per-attempt timeout.
    pub timeout: ConfigDuration,
    /// Attempts in flight per consumer (each conversation has at most one).
    pub max_in_flight: usize,
    /// Waits between attempts; after the last, the event becomes a dead letter.
    pub retry_schedule: Vec<ConfigDuration>,
    /// Upper bound on a consumer's `Retry-After`.
    pub max_retry_after: ConfigDuration,
    /// Largest webhook body sent; a larger event is cut to fit (`webhooks::body`).
    pub max_body_bytes: usize,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundConfig {
    /// Per-send timeout.
    pub timeout: ConfigDuration,
    /// Sends in flight across all channels.
    pub max_in_flight: usize,
    /// Waits between attempts after temporary failures; then the message fails.
    pub retry_schedule: Vec<ConfigDuration>,
    /// Upper bound on a provider's `retry_after`.
    pub max_retry_after: ConfigDuration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Post inbound to api channels and send messages.
    Send,
    /// Read messages, conversations, contacts, attachments and events.
    Read,
    /// Manage webhook consumers (status, replay, dead letters).
    Admin,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Shown in logs; also scopes idempotency keys.
    pub name: String,
    /// The bearer token itself ...
    pub token: Option<Secret>,
    /// ... or a file holding it ...
    pub token_file: Option<PathBuf>,
    /// ... or the name of an environment variable holding it ...
    pub token_env: Option<String>,
    /// ... or its SHA-256 in hex, so the config holds no usable secret.
    pub token_sha256: Option<String>,
    pub scopes: Vec<Scope>,
    /// Filled by validation: SHA-256 of the token, whichever way it was given.
    #[serde(skip)]
    pub digest: [u8; 32],
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub id: String,
    /// Where events are POSTed.
    pub url: String,
    /// `whsec_…` signing secret ...
    pub secret: Option<Secret>,
    /// ... or a file holding it ...
    pub secret_file: Option<PathBuf>,
    /// ... or the name of an environment variable holding it.
    pub secret_env: Option<String>,
    /// Older secrets still signed with during a rotation.
    #[serde(default)]
    pub previous_secrets: Vec<Secret>,
    /// Event type globs (`message.*`); empty or absent means all events.
    #[serde(default)]
    pub events: Vec<String>,
    /// Channel ids whose events the consumer takes; empty or absent means every channel's. A
    /// consumer with a list gets no `contact.*` events (a contact belongs to no one channel).
    #[serde(default)]
    pub channels: Vec<String>,
    pub timeout: Option<ConfigDuration>,
    pub max_in_flight: Option<usize>,
    pub retry_schedule: Option<Vec<ConfigDuration>>,
    pub max_body_bytes: Option<usize>,
    /// A PEM file of extra trusted CA certificates, for a consumer behind a private CA.
    pub ca_file: Option<PathBuf>,
    /// Filled by validation: the certificates of `ca_file`.
    #[serde(skip)]
    pub ca_pem: Option<Vec<u8>>,
}

impl Config {
    pub fn channel(&self, id: &str) -> Option<&ChannelConfig> {
        self.channels.iter().find(|c| c.id() == id)
    }
}

pub use secret::{resolve as resolve_secret, SecretSource};
pub use validate::{http_url as check_http_url, load_ca_file, signing_secret as check_signing_secret};
