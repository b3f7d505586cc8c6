//! The configured channels at run time: config plus the built outbound adapter of each.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::{build_outbound, ChannelConfig, Outbound};

pub struct RegisteredChannel {
    pub config: ChannelConfig,
    /// `None` for a channel that cannot send (an api channel without `outbound_url`).
    pub outbound: Option<Arc<dyn Outbound>>,
}

#[derive(Default)]
pub struct Registry {
    channels: HashMap<String, RegisteredChannel>,
}

impl Registry {
    pub fn build(configs: &[ChannelConfig], send_timeout: Duration, store: &crate::store::Store) -> Registry {
        let channels = configs
            .iter()
            .map(|c| {
                let state = crate::pipeline::ChannelState::new(store.clone(), c.id());
                let outbound = build_outbound(c, send_timeout, state);
                (c.id().to_owned(), RegisteredChannel { config: c.clone(), outbound })
            })
            .collect();
        Registry { channels }
    }

    pub fn get(&self, id: &str) -> Option<&RegisteredChannel> {
        self.channels.get(id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &RegisteredChannel> {
        self.channels.values()
    }
}
