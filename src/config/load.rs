//! Layering (figment) and deserialisation that reports every problem with its key path.
//!
//! serde stops at the first error, so each section, and each element of `tokens`, `channels` and
//! `webhooks`, is deserialised on its own: one broken webhook does not hide a broken channel.

use std::path::Path;

use figment::providers::{Env, Format, Toml};
use figment::value::{Dict, Value};
use figment::Figment;
use serde::de::DeserializeOwned;

use super::{validate, Config, Problem};
use crate::channels::ChannelConfig;

const DEFAULTS: &str = include_str!("defaults.toml");
const SECTIONS: [&str; 8] = ["server", "storage", "log", "delivery", "outbound", "tokens", "channels", "webhooks"];

/// Reads the file at `path` (it must exist), layers it over the defaults and under the
/// environment, and validates the result.
pub fn load(path: &Path) -> Result<Config, Vec<Problem>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![Problem::new("config", format!("cannot read {}: {e}", path.display()))])?;
    load_layers(&text, true)
}

/// Like `load`, from a string, without the environment layer (tests and embedded use).
pub fn load_str(text: &str) -> Result<Config, Vec<Problem>> {
    load_layers(text, false)
}

fn load_layers(text: &str, with_env: bool) -> Result<Config, Vec<Problem>> {
    if let Err(e) = text.parse::<toml::Table>() {
        return Err(vec![Problem::new("config", format!("not valid TOML: {e}"))]);
    }
    let mut figment = Figment::new().merge(Toml::string(DEFAULTS)).merge(Toml::string(text));
    if with_env {
        // SWITCHBOARD_CONFIG names the file (the systemd unit sets it); it is not a key. Keys
        // keep the variable's case here: compared as `str`, "CONFIG" would pass as a key.
        let env = Env::prefixed("SWITCHBOARD_").split("__").filter(|key| !key.as_str().eq_ignore_ascii_case("config"));
        figment = figment.merge(env);
    }
    let root: Dict = figment.extract().map_err(|e| vec![Problem::new("config", e.to_string())])?;

    let mut problems = Vec::new();
    for key in root.keys() {
        if !SECTIONS.contains(&key.as_str()) {
            let from_env = std::env::vars().map(|(k, _)| k).find(|k| {
                k.strip_prefix("SWITCHBOARD_")
                    .is_some_and(|rest| rest.to_lowercase().split("__").next() == Some(key.as_str()))
            });
            let origin = match (with_env, from_env) {
                (true, Some(var)) => format!(" (set by the environment variable {var})"),
                _ => String::new(),
            };
            problems.push(Problem::new(key.clone(), format!("unknown key{origin} (known: {})", SECTIONS.join(", "))));
        }
    }
    let empty = Value::from(Dict::new());
    let server = section(&root, "server", &empty, &mut problems);
    let storage = section(&root, "storage", &empty, &mut problems);
    let log = section(&root, "log", &empty, &mut problems);
    let delivery = section(&root, "delivery", &empty, &mut problems);
    let outbound = section(&root, "outbound", &empty, &mut problems);
    let mut tokens = list(&root, "tokens", &mut problems, deserialize);
    let mut channels = list(&root, "channels", &mut problems, channel);
    let mut webhooks = list(&root, "webhooks", &mut problems, deserialize);

    // Validate whatever parsed, so one broken section does not hide problems elsewhere.
    if let Some(server) = &server {
        validate::server(server, &mut problems);
    }
    if let Some(storage) = &storage {
        validate::storage(storage, &mut problems);
    }
    if let Some(log) = &log {
        validate::log(log, &mut problems);
    }
    if let (Some(delivery), Some(outbound)) = (&delivery, &outbound) {
        validate::workers(delivery, outbound, &mut problems);
    }
    validate::tokens(&mut tokens, &mut problems);
    validate::channels(&mut channels, &mut problems);
    let channel_ids: Vec<&str> = channels.iter().map(|(_, c)| c.id()).collect();
    validate::webhooks(&mut webhooks, &channel_ids, &mut problems);

    match (server, storage, log, delivery, outbound) {
        (Some(server), Some(storage), Some(log), Some(delivery), Some(outbound)) if problems.is_empty() => Ok(Config {
            server,
            storage,
            log,
            delivery,
            outbound,
            tokens: tokens.into_iter().map(|(_, t)| t).collect(),
            channels: channels.into_iter().map(|(_, c)| c).collect(),
            webhooks: webhooks.into_iter().map(|(_, w)| w).collect(),
        }),
        _ => Err(problems),
    }
}

fn section<T: DeserializeOwned>(root: &Dict, key: &str, empty: &Value, problems: &mut Vec<Problem>) -> Option<T> {
    deserialize(key, root.get(key).unwrap_or(empty), problems)
}

/// The elements that parsed, each with its index in the file (problems keep naming the right one).
fn list<T>(
    root: &Dict,
    key: &str,
    problems: &mut Vec<Problem>,
    parse: impl Fn(&str, &Value, &mut Vec<Problem>) -> Option<T>,
) -> Vec<(usize, T)> {
    match root.get(key) {
        None => Vec::new(),
        Some(Value::Array(_, items)) => items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| parse(&format!("{key}[{i}]"), item, problems).map(|t| (i, t)))
            .collect(),
        Some(_) => {
            problems.push(Problem::new(key, format!("must be an array of tables ([[{key}]])")));
            Vec::new()
        }
    }
}

fn channel(key: &str, value: &Value, problems: &mut Vec<Problem>) -> Option<ChannelConfig> {
    let Value::Dict(tag, dict) = value else {
        problems.push(Problem::new(key, "must be a table"));
        return None;
    };
    let Some(kind) = dict.get("type").and_then(Value::as_str).map(str::to_owned) else {
        problems.push(Problem::new(
            format!("{key}.type"),
            format!("is required (one of: {})", ChannelConfig::TYPES.join(", ")),
        ));
        return None;
    };
    let mut rest = dict.clone();
    rest.remove("type");
    let rest = Value::Dict(*tag, rest);
    match ChannelConfig::parse(&kind, &rest) {
        Some(Ok(channel)) => Some(channel),
        Some(Err(e)) => {
            problems.push(problem_from(key, &e));
            None
        }
        None => {
            problems.push(Problem::new(
                format!("{key}.type"),
                format!("unknown channel type `{kind}` (known: {})", ChannelConfig::TYPES.join(", ")),
            ));
            None
        }
    }
}

/// Deserialises one value, turning a failure into a problem at its full key path.
pub(crate) fn deserialize<T: DeserializeOwned>(key: &str, value: &Value, problems: &mut Vec<Problem>) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(v) => Some(v),
        Err(e) => {
            problems.push(problem_from(key, &e));
            None
        }
    }
}

pub(crate) fn problem_from(key: &str, e: &serde_path_to_error::Error<figment::Error>) -> Problem {
    use figment::error::Kind;
    let inner = e.path().to_string();
    let mut path = key.to_owned();
    if inner != "." && !inner.is_empty() {
        path = format!("{path}.{inner}");
    }
    match &e.inner().kind {
        Kind::UnknownField(field, expected) => {
            // serde_path_to_error already ends the path with the unknown key.
            let key = if inner.ends_with(field.as_str()) { path } else { format!("{path}.{field}") };
            Problem::new(key, format!("unknown key (known: {})", expected.join(", ")))
        }
        Kind::MissingField(field) => Problem::new(format!("{path}.{field}"), "is required"),
        other => Problem::new(path, other.to_string()),
    }
}
