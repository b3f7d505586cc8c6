//! `switchboard check --connect`: reaches every peer the configuration names, before the service
//! runs, so a sysadmin learns of a wrong password, a misspelt folder, a certificate no root
//! vouches for or a URL nothing listens at from the command line, not from `/readyz` or a
//! consumer's `last_error` after a restart. Nothing is delivered or changed anywhere:
//! - mail channels: `channels::email::probe` (logins, folders opened read-only, nothing sent);
//! - webhook consumers and api channels' `outbound_url`: one HEAD request, over TLS with the
//!   peer's `ca_file`. Any HTTP answer means the URL is reached (a webhook endpoint may well
//!   answer 405 to HEAD); no event is sent, since a made-up one would land in the helpdesk.

use std::time::Duration;

use crate::channels::email::probe;
use crate::channels::ChannelConfig;
use crate::config::Config;
use crate::webhooks::ConsumerConfig;

/// What one check found.
#[derive(Debug, PartialEq, Eq)]
pub enum Finding {
    Ok(String),
    Failed(String),
    /// The server refused the login itself: the credentials, not the way to the server.
    Refused(String),
    NotTried(String),
}

/// Every check as a line to print (`who: what: ok|FAILED|not tried, detail`), and whether none
/// failed.
pub async fn connect_report(config: &Config) -> (Vec<String>, bool) {
    let mut findings: Vec<(String, String, Finding)> = Vec::new();
    for channel in &config.channels {
        match channel {
            ChannelConfig::Email(mail) => {
                let checks = probe::probe(mail).await;
                findings.extend(checks.into_iter().map(|(what, finding)| (mail.id.clone(), what, finding)));
            }
            ChannelConfig::Api(api) => {
                if let Some(url) = &api.outbound_url {
                    let finding = reach(url, config.outbound.timeout.0, api.ca_pem.as_deref()).await;
                    findings.push((api.id.clone(), format!("outbound_url {url}"), finding));
                }
            }
        }
    }
    for hook in &config.webhooks {
        // As the consumer's worker will reach it: its timeout, or the [delivery] one.
        let consumer = ConsumerConfig::new(hook, &config.delivery);
        let finding = reach(&consumer.url, consumer.timeout, consumer.ca_pem.as_deref()).await;
        findings.push((format!("webhooks.{}", hook.id), hook.url.clone(), finding));
    }
    let all_ok = !findings.iter().any(|(_, _, f)| matches!(f, Finding::Failed(_) | Finding::Refused(_)));
    let lines = findings
        .into_iter()
        .map(|(who, what, finding)| {
            let (word, detail) = match finding {
                Finding::Ok(detail) => ("ok", detail),
                Finding::Failed(detail) | Finding::Refused(detail) => ("FAILED", detail),
                Finding::NotTried(detail) => ("not tried", detail),
            };
            format!("{who}: {what}: {word}, {detail}")
        })
        .collect();
    (lines, all_ok)
}

/// One HEAD request to `url`: reached with any HTTP answer but a redirect, which deliveries
/// would not follow.
async fn reach(url: &str, timeout: Duration, ca_pem: Option<&[u8]>) -> Finding {
    let client = crate::http_out::client(timeout, ca_pem);
    match client.head(url).send().await {
        Ok(response) if response.status().is_redirection() => {
            Finding::Failed(crate::http_out::redirect_error(&response))
        }
        Ok(response) => Finding::Ok(format!("reached (HTTP {} to HEAD; nothing sent)", response.status().as_u16())),
        Err(e) => Finding::Failed(crate::http_out::describe(&e)),
    }
}
