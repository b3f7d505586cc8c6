//! The mail part of `switchboard check --connect` (`crate::check`): logs in to each mail
//! channel's IMAP and SMTP servers as the service would, before it runs — so a sysadmin learns of
//! a wrong password, a misspelt folder or a certificate the server does not match from the
//! command line, not from `/readyz` after a restart. Nothing is changed on the servers: folders are opened read-only (EXAMINE), no mail
//! is sent, and each session ends with LOGOUT or QUIT.
//!
//! OAuth2 logins are not tried: getting an access token may rotate the refresh token, and the
//! running service, which stores the rotation, would then hold a revoked one. For such a
//! channel the servers are reached without logging in (TLS, greeting; SMTP must offer XOAUTH2),
//! and the token endpoint is asked whether it takes the client (`oauth2::check_client`).
//! (`switchboard oauth2` runs the logins with the access token a new grant comes with.)

use lettre::transport::smtp::authentication::Mechanism;

use super::config::{AfterImport, EmailChannelConfig, ImapConfig, SmtpConfig};
use super::imap::{connect, login, login_with_token, within, ImapError};
use super::mutf7;
use super::oauth2::{check_client, OAuth2Config};
use super::outbound::server;
use super::smtp::{login as smtp_login, login_refused, Session};
use crate::check::Finding;

/// Why OAuth2 logins are left out (see the module doc).
const OAUTH2_NOT_TRIED: &str = "XOAUTH2 login not tried: the running service refreshes and stores its tokens";

/// What a check logs in with.
#[derive(Clone, Copy)]
pub(super) enum Credential<'a> {
    /// The password the config names.
    Password,
    /// An OAuth2 access token as it is: a new grant's, which `switchboard oauth2` checks.
    AccessToken(&'a str),
}

/// The channel's checks, each as (what was checked, what was found), in order.
pub async fn probe(channel: &EmailChannelConfig) -> Vec<(String, Finding)> {
    let mut findings = Vec::new();
    if let Some(imap) = &channel.imap {
        if imap.oauth2.is_some() {
            findings.push(reach_imap(imap).await);
        } else {
            findings.extend(check_imap(imap, Credential::Password).await);
        }
    }
    if let Some(smtp) = &channel.smtp {
        if smtp.oauth2.is_some() {
            findings.push(reach_smtp(smtp).await);
        } else {
            findings.push(check_smtp(smtp, Credential::Password).await);
        }
    }
    let grants =
        [channel.imap.as_ref().and_then(|i| i.oauth2.as_ref()), channel.smtp.as_ref().and_then(|s| s.oauth2.as_ref())];
    let mut checked: Vec<&OAuth2Config> = Vec::new();
    for grant in grants.into_iter().flatten() {
        // IMAP and SMTP usually share one grant: its client is asked about once.
        if checked.iter().any(|c| c.client_id == grant.client_id && c.token_url == grant.token_url) {
            continue;
        }
        checked.push(grant);
        let finding = match check_client(grant).await {
            Ok(()) => Finding::Ok(format!(
                "client {} not refused (it refused a made-up refresh token, as it should; the grant itself is not tried)",
                grant.client_id
            )),
            Err(e) => Finding::Failed(e),
        };
        findings.push((format!("oauth2 {}", grant.token_url), finding));
    }
    findings
}

/// A channel on OAuth2: its IMAP server reached (TLS, greeting) without logging in.
async fn reach_imap(imap: &ImapConfig) -> (String, Finding) {
    let finding = match within(imap, "connecting", connect(imap)).await {
        Ok(mut client) => {
            let _ = within(imap, "LOGOUT", async { Ok(client.run_command_and_check_ok("LOGOUT", None).await?) }).await;
            Finding::Ok(format!("reached; {OAUTH2_NOT_TRIED}"))
        }
        Err(e) => Finding::Failed(e.to_string()),
    };
    (imap_at(imap), finding)
}

/// A channel on OAuth2: its SMTP server reached (TLS, EHLO), without logging in, and offering
/// XOAUTH2.
async fn reach_smtp(smtp: &SmtpConfig) -> (String, Finding) {
    let finding = match server(smtp) {
        Err(e) => Finding::Failed(format!("TLS setup: {e}")),
        Ok(server) => match Session::open(&server, None).await {
            Err(e) => Finding::Failed(e.to_string()),
            Ok(session) => {
                let xoauth2 = session.offers_auth(Mechanism::Xoauth2);
                session.quit().await;
                if xoauth2 {
                    Finding::Ok(format!("reached, offers XOAUTH2; {OAUTH2_NOT_TRIED}"))
                } else {
                    Finding::Failed("reached, but it does not offer AUTH XOAUTH2 (on this port, after TLS)".to_owned())
                }
            }
        },
    };
    (smtp_at(smtp), finding)
}

fn imap_at(imap: &ImapConfig) -> String {
    format!("imap {}:{}", imap.host, imap.port)
}

fn smtp_at(smtp: &SmtpConfig) -> String {
    format!("smtp {}:{}", smtp.host, smtp.port)
}

/// Logs in to IMAP and opens (EXAMINE) every folder the channel names.
pub(super) async fn check_imap(imap: &ImapConfig, credential: Credential<'_>) -> Vec<(String, Finding)> {
    let at = imap_at(imap);
    let session = match credential {
        Credential::Password => login(imap, None).await,
        Credential::AccessToken(token) => login_with_token(imap, token).await,
    };
    let mut session = match session {
        Err(e @ ImapError::Auth(_)) => return vec![(at, Finding::Refused(e.to_string()))],
        Err(e) => return vec![(at, Finding::Failed(e.to_string()))],
        Ok(session) => session,
    };
    let mut findings = vec![(at, Finding::Ok(format!("logged in as {}", imap.username)))];
    let watched = imap.folders.iter().map(|f| (f.as_str(), "folder"));
    let sent = imap.sent_folder.iter().map(|f| (f.as_str(), "sent_folder"));
    let target = match imap.after_import() {
        Some(AfterImport::Move(target)) => Some(target),
        _ => None,
    };
    let moved = target.as_deref().map(|t| (t, "after_import"));
    for (folder, role) in watched.chain(sent).chain(moved) {
        let examined =
            within(imap, "EXAMINE", async { session.examine(mutf7::encode(folder)).await.map_err(ImapError::from) });
        let finding = match examined.await {
            Ok(mailbox) => Finding::Ok(format!("{} mail(s)", mailbox.exists)),
            Err(e) => Finding::Failed(format!("cannot be opened: {e}")),
        };
        findings.push((format!("imap {role} \"{folder}\""), finding));
    }
    let _ = session.logout().await;
    findings
}

/// Logs in to SMTP (no mail is sent) and learns whether the server offers DSN.
pub(super) async fn check_smtp(smtp: &SmtpConfig, credential: Credential<'_>) -> (String, Finding) {
    let (secret, oauth2) = match credential {
        Credential::Password => (smtp.password.as_ref().map(|p| p.expose().to_owned()), false),
        Credential::AccessToken(token) => (Some(token.to_owned()), true),
    };
    let login = smtp_login(smtp.username.as_deref(), secret, oauth2);
    let finding = match server(smtp) {
        Err(e) => Finding::Failed(format!("TLS setup: {e}")),
        Ok(server) => match Session::open(&server, login).await {
            Err(e) if login_refused(&e) => Finding::Refused(e.to_string()),
            Err(e) => Finding::Failed(e.to_string()),
            Ok(session) => {
                let dsn = if session.offers_dsn() { "offers DSN" } else { "no DSN" };
                session.quit().await;
                let who = smtp.username.as_deref().map_or("no login".to_owned(), |u| format!("logged in as {u}"));
                Finding::Ok(format!("{who}; {dsn}"))
            }
        },
    };
    (smtp_at(smtp), finding)
}
