//! `switchboard check --connect`: logs in to each mail channel's IMAP and SMTP servers as the
//! service would, before it runs — so a sysadmin learns of a wrong password, a misspelt folder or
//! a certificate the server does not match from the command line, not from `/readyz` after a
//! restart. Nothing is changed on the servers: folders are opened read-only (EXAMINE), no mail
//! is sent, and each session ends with LOGOUT or QUIT.
//!
//! OAuth2 logins are not tried: getting an access token may rotate the refresh token, and the
//! running service, which stores the rotation, would then hold a revoked one.

use lettre::transport::smtp::authentication::{Credentials, Mechanism};

use super::config::{AfterImport, EmailChannelConfig};
use super::inbound::login;
use super::mutf7;
use super::outbound::server;
use super::smtp::Session;

/// What one check found.
#[derive(Debug, PartialEq, Eq)]
pub enum Finding {
    Ok(String),
    Failed(String),
    NotTried(String),
}

/// The channel's checks, each as (what was checked, what was found), in order.
pub async fn probe(channel: &EmailChannelConfig) -> Vec<(String, Finding)> {
    let mut findings = Vec::new();
    if let Some(imap) = &channel.imap {
        let at = format!("imap {}:{}", imap.host, imap.port);
        if imap.oauth2.is_some() {
            findings
                .push((at, Finding::NotTried("OAuth2: the running service refreshes and stores its tokens".into())));
        } else {
            match login(imap, None).await {
                Err(e) => findings.push((at, Finding::Failed(e.to_string()))),
                Ok(mut session) => {
                    findings.push((at, Finding::Ok(format!("logged in as {}", imap.username))));
                    let watched = imap.folders.iter().map(|f| (f.as_str(), "folder"));
                    let sent = imap.sent_folder.iter().map(|f| (f.as_str(), "sent_folder"));
                    let target = match imap.after_import() {
                        Some(AfterImport::Move(target)) => Some(target),
                        _ => None,
                    };
                    let moved = target.as_deref().map(|t| (t, "after_import"));
                    for (folder, role) in watched.chain(sent).chain(moved) {
                        let examined = tokio::time::timeout(imap.timeout.0, session.examine(mutf7::encode(folder)));
                        let finding = match examined.await {
                            Ok(Ok(mailbox)) => Finding::Ok(format!("{} mail(s)", mailbox.exists)),
                            Ok(Err(e)) => Finding::Failed(format!("cannot be opened: {e}")),
                            Err(_) => Finding::Failed(format!("no answer within {}s", imap.timeout.0.as_secs_f64())),
                        };
                        findings.push((format!("imap {role} \"{folder}\""), finding));
                    }
                    let _ = session.logout().await;
                }
            }
        }
    }
    if let Some(smtp) = &channel.smtp {
        let at = format!("smtp {}:{}", smtp.host, smtp.port);
        let finding = if smtp.oauth2.is_some() {
            Finding::NotTried("OAuth2: the running service refreshes and stores its tokens".into())
        } else {
            let password = smtp.password.as_ref().map(|p| p.expose().to_owned());
            let login = match (&smtp.username, password) {
                (Some(user), Some(password)) => {
                    Some((Credentials::new(user.clone(), password), [Mechanism::Plain, Mechanism::Login].as_slice()))
                }
                _ => None,
            };
            match server(smtp) {
                Err(e) => Finding::Failed(format!("TLS setup: {e}")),
                Ok(server) => match Session::open(&server, login).await {
                    Err(e) => Finding::Failed(e.to_string()),
                    Ok(session) => {
                        let dsn = if session.offers_dsn() { "offers DSN" } else { "no DSN" };
                        session.quit().await;
                        let who =
                            smtp.username.as_deref().map_or("no login".to_owned(), |u| format!("logged in as {u}"));
                        Finding::Ok(format!("{who}; {dsn}"))
                    }
                },
            }
        };
        findings.push((at, finding));
    }
    findings
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
                Finding::Failed(detail) => {
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
