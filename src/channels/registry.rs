//! The configured channels at run time: config plus the built outbound adapter of each.
//!
//! A `Registry` is an immutable snapshot; a reload builds the next one with `rebuild`, which keeps
//! the adapter (its connection pool, its OAuth2 access token) of every channel whose config did
//! not change.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::{build_outbound, ChannelConfig, Outbound};
use crate::store::Store;

pub struct RegisteredChannel {
    pub config: ChannelConfig,
    /// `None` for a channel that cannot send (an api channel without `outbound_url`).
    pub outbound: Option<Arc<dyn Outbound>>,
}

#[derive(Default)]
pub struct Registry {
    channels: HashMap<String, Arc<RegisteredChannel>>,
    send_timeout: Duration,
}

impl Registry {
    pub fn build(configs: &[ChannelConfig], send_timeout: Duration, store: &Store) -> Registry {
        Registry::rebuild(&Registry::default(), configs, send_timeout, store)
    }

    /// The registry for `configs`, reusing the entries of `previous` that are unchanged.
    pub fn rebuild(previous: &Registry, configs: &[ChannelConfig], send_timeout: Duration, store: &Store) -> Registry {
        let channels = configs
            .iter()
            .map(|c| {
                let kept = previous
                    .channels
                    .get(c.id())
                    .filter(|old| old.config == *c && previous.send_timeout == send_timeout)
                    .cloned();
                let entry = kept.unwrap_or_else(|| {
                    let state = crate::pipeline::ChannelState::new(store.clone(), c.id());
                    Arc::new(RegisteredChannel { config: c.clone(), outbound: build_outbound(c, send_timeout, state) })
                });
                (c.id().to_owned(), entry)
            })
            .collect();
        Registry { channels, send_timeout }
    }

    /// The adapters of this registry that `next` no longer uses (channels removed or
    /// reconfigured): to be closed once `next` is live.
    pub fn retired(&self, next: &Registry) -> Vec<Arc<dyn Outbound>> {
        self.channels
            .iter()
            .filter(|(id, old)| next.channels.get(*id).is_none_or(|new| !Arc::ptr_eq(old, new)))
            .filter_map(|(_, old)| old.outbound.clone())
            .collect()
    }

    pub fn get(&self, id: &str) -> Option<&RegisteredChannel> {
        self.channels.get(id).map(|c| c.as_ref())
    }

    pub fn iter(&self) -> impl Iterator<Item = &RegisteredChannel> {
        self.channels.values().map(|c| c.as_ref())
    }
}
