//! The `api` channel: custom sources (web chat back-ends, forms, scripts) post messages to
//! `POST /v1/channels/{id}/inbound`; replies are POSTed, signed, to the channel's `outbound_url`.

pub mod config;
pub mod inbound;
pub mod outbound;
#[cfg(test)]
mod tests;
