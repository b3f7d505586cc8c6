//! Outbound: accepting sends (`submit`), the delivery engine (`engine`), rate limits (`limits`)
//! and status transitions (`status`).
//!
//! Invariant: jobs live in the store (ids and retry state only); the engine never sleeps while
//! holding one. Every outbound message ends `sent` (later `delivered`/`read`) or `failed` with an
//! `error {code, message, permanent}`.

mod engine;
mod limits;
pub mod request;
pub mod status;
pub mod submit;

pub use engine::OutboundEngine;
