//! `switchboard check --connect`: logs in to each mail channel's IMAP and SMTP servers as the
//! service would, before it runs — so a sysadmin learns of a wrong password, a misspelt folder or
//! a certificate the server does not match from the command line, not from `/readyz` after a
//! restart. Nothing is changed on the servers: folders are opened read-only (EXAMINE), no mail
//! is sent, and each session ends with LOGOUT or QUIT.
//!
//! OAuth2 logins are not tried: getting an access token may rotate the refresh token, and the
//! running service, which stores the rotation, would then hold a revoked one. (`switchboard
//! oauth2` runs the same checks with the access token a new grant comes with.)

use super::config::{AfterImport, EmailChannelConfig, ImapConfig, SmtpConfig};
use super::inbound::{login, login_with_token, within, ImapError};
use super::mutf7;
use super::outbound::server;
use super::smtp::{login as smtp_login, login_refused, Session};

/// Why OAuth2 logins are left out (see the module doc).
const OAUTH2_NOT_TRIED: &str = "OAuth2: the running service refreshes and stores its tokens";

/// What one check found.
#[derive(Debug, PartialEq, Eq)]
pub enum Finding {
    Ok(String),
    Failed(String),
    /// The server refused the login itself: the credentials, not the way to the server.
    Refused(String),
    NotTried(String),
}

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
            findings.push((imap_at(imap), Finding::NotTried(OAUTH2_NOT_TRIED.into())));
        } else {
            findings.extend(check_imap(imap, Credential::Password).await);
        }
    }
    if let Some(smtp) = &channel.smtp {
        if smtp.oauth2.is_some() {
            findings.push((smtp_at(smtp), Finding::NotTried(OAUTH2_NOT_TRIED.into())));
        } else {
            findings.push(check_smtp(smtp, Credential::Password).await);
        }
    }
    findings
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

/// Every mail channel's checks as lines to print (`channel: what: ok|FAILED|not tried, detail`),
/// and whether none failed.
pub async fn report(channels: &[crate::channels::ChannelConfig]) -> (Vec<String>, bool) {
    let mut lines = Vec::new();
    let mut all_ok = true;
    for channel in channels {
        let crate::channels::ChannelConfig::Email(mail) = channel else { continue };
        for (what, finding) in probe(mail).await {
            let (word, detail) = match finding {
                Finding::Ok(detail) => ("ok", detail),
                Finding::Failed(detail) | Finding::Refused(detail) => {
                    all_ok = false;
                    ("FAILED", detail)
                }
                Finding::NotTried(detail) => ("not tried", detail),
            };
            lines.push(format!("{}: {what}: {word}, {detail}", mail.id));
        }
    }
    (lines, all_ok)
}
