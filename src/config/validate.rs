//! Semantic checks after deserialisation: addresses, URLs, secrets, ids, limits. Every problem is
//! collected; secret files are read here so `check` catches an unreadable credential.

use std::collections::HashSet;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::secret::SecretSource;
use super::{
    secret, DeliveryConfig, LogConfig, OutboundConfig, Problem, ServerConfig, StorageConfig, TokenConfig, WebhookConfig,
};
use crate::channels::ChannelConfig;
use crate::model::event::{glob_matches, EventType};

fn adder(problems: &mut Vec<Problem>) -> impl FnMut(String, String) + '_ {
    |key, reason| problems.push(Problem { key, reason })
}

pub(super) fn server(server: &ServerConfig, problems: &mut Vec<Problem>) {
    let mut add = adder(problems);
    if let Err(reason) = http_url(&server.public_url) {
        add("server.public_url".into(), reason);
    }
    if server.max_body_bytes < 1024 {
        add("server.max_body_bytes".into(), "must be at least 1024".into());
    }
    if server.max_attachment_bytes == 0 {
        add("server.max_attachment_bytes".into(), "must be greater than 0".into());
    }
}

pub(super) fn storage(storage: &StorageConfig, problems: &mut Vec<Problem>) {
    if storage.path.as_os_str().is_empty() {
        problems.push(Problem::new("storage.path", "must not be empty"));
    }
    // Shorter, and a helpdesk working through a day's backlog could find attachments gone.
    if storage.retention.is_some_and(|r| r.0 < std::time::Duration::from_secs(86_400)) {
        problems.push(Problem::new("storage.retention", "must be at least 1d"));
    }
}

pub(super) fn log(log: &LogConfig, problems: &mut Vec<Problem>) {
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&log.level) {
        problems.push(Problem::new("log.level", format!("not a valid filter: {e}")));
    }
}

pub(super) fn workers(delivery: &DeliveryConfig, outbound: &OutboundConfig, problems: &mut Vec<Problem>) {
    let mut add = adder(problems);
    for (key, schedule) in
        [("delivery.retry_schedule", &delivery.retry_schedule), ("outbound.retry_schedule", &outbound.retry_schedule)]
    {
        if schedule.is_empty() {
            add(key.into(), "must list at least one wait".into());
        }
    }
    for (key, n) in
        [("delivery.max_in_flight", delivery.max_in_flight), ("outbound.max_in_flight", outbound.max_in_flight)]
    {
        if n == 0 {
            add(key.into(), "must be at least 1".into());
        }
    }
    if let Err(reason) = webhook_body_limit(delivery.max_body_bytes) {
        add("delivery.max_body_bytes".into(), reason);
    }
}

/// A consumer's `max_body_bytes`: room for an event's ids, addresses and timestamps, which are
/// never cut.
fn webhook_body_limit(bytes: usize) -> Result<(), String> {
    if bytes < MIN_WEBHOOK_BODY_BYTES {
        return Err(format!("must be at least {MIN_WEBHOOK_BODY_BYTES}"));
    }
    Ok(())
}

const MIN_WEBHOOK_BODY_BYTES: usize = 4096;

pub(super) fn tokens(tokens: &mut [(usize, TokenConfig)], problems: &mut Vec<Problem>) {
    let mut add = adder(problems);
    let mut names = HashSet::new();
    for (i, token) in tokens.iter_mut() {
        let key = format!("tokens[{i}]");
        if token.name.trim().is_empty() {
            add(format!("{key}.name"), "must not be empty".into());
        } else if !names.insert(token.name.clone()) {
            add(format!("{key}.name"), format!("duplicate token name `{}`", token.name));
        }
        if token.scopes.is_empty() {
            add(format!("{key}.scopes"), "must grant at least one of send, read, admin".into());
        }
        let given = [
            token.token.is_some(),
            token.token_file.is_some(),
            token.token_env.is_some(),
            token.token_sha256.is_some(),
        ];
        if given.iter().filter(|g| **g).count() != 1 {
            add(format!("{key}.token"), "set exactly one of token, token_file, token_env, token_sha256".into());
            continue;
        }
        if let Some(hex) = &token.token_sha256 {
            match decode_hex32(hex) {
                Some(digest) => token.digest = digest,
                None => add(format!("{key}.token_sha256"), "must be 64 hexadecimal characters".into()),
            }
            continue;
        }
        let source = SecretSource { inline: &token.token, file: &token.token_file, env: &token.token_env };
        match secret::resolve(&format!("{key}.token"), source) {
            Ok(Some(value)) if value.expose().len() < 16 => {
                add(format!("{key}.token"), "must be at least 16 characters".into())
            }
            Ok(Some(value)) => token.digest = Sha256::digest(value.expose().as_bytes()).into(),
            Ok(None) => {}
            Err((k, reason)) => add(k, reason),
        }
    }
}

pub(super) fn channels(channels: &mut [(usize, ChannelConfig)], problems: &mut Vec<Problem>) {
    let mut add = adder(problems);
    let mut channel_ids = HashSet::new();
    for (i, channel) in channels.iter_mut() {
        let key = format!("channels[{i}]");
        if let Err(reason) = identifier(channel.id()) {
            add(format!("{key}.id"), reason);
        } else if !channel_ids.insert(channel.id().to_owned()) {
            add(format!("{key}.id"), format!("duplicate channel id `{}`", channel.id()));
        }
        for (k, reason) in channel.validate() {
            add(format!("{key}.{k}"), reason);
        }
    }
}

pub(super) fn webhooks(webhooks: &mut [(usize, WebhookConfig)], channel_ids: &[&str], problems: &mut Vec<Problem>) {
    let mut add = adder(problems);
    let mut webhook_ids = HashSet::new();
    for (i, hook) in webhooks.iter_mut() {
        let key = format!("webhooks[{i}]");
        if let Err(reason) = identifier(&hook.id) {
            add(format!("{key}.id"), reason);
        } else if !webhook_ids.insert(hook.id.clone()) {
            add(format!("{key}.id"), format!("duplicate webhook id `{}`", hook.id));
        }
        if let Err(reason) = http_url(&hook.url) {
            add(format!("{key}.url"), reason);
        }
        let source = SecretSource { inline: &hook.secret, file: &hook.secret_file, env: &hook.secret_env };
        match secret::resolve(&format!("{key}.secret"), source) {
            Ok(Some(s)) => {
                if let Err(reason) = signing_secret(s.expose()) {
                    add(format!("{key}.secret"), reason);
                }
                hook.secret = Some(s);
            }
            Ok(None) => add(format!("{key}.secret"), "is required (a whsec_… signing secret)".into()),
            Err((k, reason)) => add(k, reason),
        }
        for (j, s) in hook.previous_secrets.iter().enumerate() {
            if let Err(reason) = signing_secret(s.expose()) {
                add(format!("{key}.previous_secrets[{j}]"), reason);
            }
        }
        for (j, pattern) in hook.events.iter().enumerate() {
            if !EventType::ALL.iter().any(|t| glob_matches(pattern, t.as_str())) {
                add(format!("{key}.events[{j}]"), format!("`{pattern}` matches no event type"));
            }
        }
        for (j, channel) in hook.channels.iter().enumerate() {
            if !channel_ids.contains(&channel.as_str()) {
                add(format!("{key}.channels[{j}]"), format!("no channel `{channel}` is configured"));
            }
        }
        if hook.max_in_flight == Some(0) {
            add(format!("{key}.max_in_flight"), "must be at least 1".into());
        }
        if hook.retry_schedule.as_ref().is_some_and(|s| s.is_empty()) {
            add(format!("{key}.retry_schedule"), "must list at least one wait".into());
        }
        if let Some(Err(reason)) = hook.max_body_bytes.map(webhook_body_limit) {
            add(format!("{key}.max_body_bytes"), reason);
        }
        if let Err(reason) = load_ca_file(hook.ca_file.as_deref(), &mut hook.ca_pem) {
            add(format!("{key}.ca_file"), reason);
        }
    }
}

/// Reads a `ca_file` (if one is set) into `ca_pem`, its table's field for the certificates.
pub fn load_ca_file(ca_file: Option<&Path>, ca_pem: &mut Option<Vec<u8>>) -> Result<(), String> {
    *ca_pem = ca_file.map(read_ca_file).transpose()?;
    Ok(())
}

/// Reads a `ca_file`: PEM certificates trusted besides the webpki roots, for a peer whose
/// certificate a private CA signed. Read when the config is loaded, so `switchboard check` names
/// a file that cannot be read or holds no certificate, and a reload takes in a renewed CA.
fn read_ca_file(path: &Path) -> Result<Vec<u8>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    match reqwest::Certificate::from_pem_bundle(&pem) {
        Ok(certs) if !certs.is_empty() => Ok(pem),
        Ok(_) => Err(format!("{} holds no PEM certificate", path.display())),
        Err(e) => Err(format!("{} holds a certificate that cannot be read: {e}", path.display())),
    }
}

/// An id usable in URLs and logs: `[a-z0-9_-]`, 1–64 characters.
pub fn identifier(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!("`{id}` must be 1-64 characters of a-z, 0-9, - and _"))
    }
}

/// An absolute http(s) URL.
pub fn http_url(url: &str) -> Result<(), String> {
    match reqwest::Url::parse(url) {
        Ok(u) if (u.scheme() == "http" || u.scheme() == "https") && u.host().is_some() => Ok(()),
        Ok(_) => Err(format!("`{url}` must be an http:// or https:// URL")),
        Err(e) => Err(format!("`{url}` is not a URL: {e}")),
    }
}

/// A Standard Webhooks secret: `whsec_` and base64 of 24–64 bytes.
pub fn signing_secret(s: &str) -> Result<(), String> {
    match crate::webhooks::signing::SigningKey::parse(s) {
        Some(_) => Ok(()),
        None => Err("must be `whsec_` followed by base64 of 24 to 64 random bytes".into()),
    }
}

fn decode_hex32(hex: &str) -> Option<[u8; 32]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let text = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
}
