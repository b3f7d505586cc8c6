//! `[[channels]] type = "api"`.

use std::path::PathBuf;

use serde::Deserialize;

use crate::channels::ChannelLimits;
use crate::config::{self, Secret};

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiChannelConfig {
    pub id: String,
    /// Where replies to this channel are POSTed (optional: without it the channel only receives).
    pub outbound_url: Option<String>,
    /// `whsec_…` secret signing those POSTs (Standard Webhooks headers) ...
    pub secret: Option<Secret>,
    /// ... or a file holding it ...
    pub secret_file: Option<PathBuf>,
    /// ... or the name of an environment variable holding it.
    pub secret_env: Option<String>,
    /// A PEM file of extra trusted CA certificates, for an `outbound_url` behind a private CA.
    pub ca_file: Option<PathBuf>,
    /// Filled by validation: the certificates of `ca_file`.
    #[serde(skip)]
    pub ca_pem: Option<Vec<u8>>,
    #[serde(default)]
    pub limits: ChannelLimits,
}

impl ApiChannelConfig {
    pub(crate) fn validate(&mut self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if let Some(url) = &self.outbound_url {
            if let Err(reason) = config::check_http_url(url) {
                problems.push(("outbound_url".to_owned(), reason));
            }
        }
        let source = config::SecretSource { inline: &self.secret, file: &self.secret_file, env: &self.secret_env };
        match config::resolve_secret("secret", source) {
            Ok(Some(secret)) => {
                if let Err(reason) = config::check_signing_secret(secret.expose()) {
                    problems.push(("secret".to_owned(), reason));
                }
                self.secret = Some(secret);
            }
            Ok(None) if self.outbound_url.is_some() => problems
                .push(("secret".to_owned(), "is required with outbound_url (a whsec_… signing secret)".to_owned())),
            Ok(None) => {}
            Err((key, reason)) => problems.push((key, reason)),
        }
        if let Err(reason) = config::load_ca_file(self.ca_file.as_deref(), &mut self.ca_pem) {
            problems.push(("ca_file".to_owned(), reason));
        }
        problems
    }
}
