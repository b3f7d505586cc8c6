//! switchboard: a self-hosted channel gateway. Customer messages from every channel become one
//! normalized, signed, durable event stream for a helpdesk; replies go back out through the
//! right channel, rate-limited and retried, with status events.
//!
//! # Path of a message
//!
//! ```text
//! api POST / provider push / pull loop ─► channel adapter (wire → RawInbound)
//!   ─► pipeline: dedup → normalize → stitch → commit (one transaction) ─► event log (seq)
//!   ─► webhook consumers (signed, ordered per conversation) and /v1/events, SSE
//! POST /v1/messages ─► outbound job ─► rate limiter ─► adapter send ─► status events ─► event log
//! ```
//!
//! # Layout
//!
//! - `app`        wiring: store, channels, workers, HTTP server; graceful shutdown
//! - `config`     figment layers (defaults → file → env), validation with key paths
//! - `model`      pure types: prefixed ids, messages, conversations, contacts, events, time
//! - `store`      the only module that opens the database; migrations; group-commit writer; blobs
//! - `pipeline`   the one inbound path: dedup → normalize → stitch → commit
//! - `stitch`     which conversation and contact a message joins (pure decisions)
//! - `channels`   adapter contract, tagged channel config, one folder per channel (`api/`)
//! - `outbound`   send API, jobs, rate limits, retry, status transitions
//! - `webhooks`   consumer delivery: signing, schedule, ordering, dead letters, replay
//! - `api`        HTTP handlers: /v1, /hooks, health, metrics
//! - `systemd`    sd_notify: READY, STOPPING, watchdog
//! - `telemetry`  logging and the metrics recorder
//! - `retry`      the retry schedule function shared by webhooks and outbound
//! - `http_out`   the outgoing HTTP client and response helpers
//! - `check`      `check --connect`: reach every peer the config names, change nothing
//! - `json_input` request-body parsing with errors that name the field
//! - `live`       `Live<T>`: settings a reload swaps while work in flight keeps its own
//! - `docs`       the OpenAPI document and JSON Schemas served to consumers

pub mod api;
pub mod app;
pub mod channels;
pub mod check;
pub mod config;
pub mod docs;
pub mod http_out;
pub mod json_input;
pub mod live;
pub mod model;
pub mod outbound;
pub mod pipeline;
pub mod retry;
pub mod stitch;
pub mod store;
pub mod systemd;
pub mod telemetry;
pub mod webhooks;
