//! `switchboard oauth2 CHANNEL`: authorising the app for a mailbox, once, from the server's
//! shell — the step that gives the `refresh_token` an `[oauth2]` table needs, which Zammad and
//! Chatwoot do in their web UI and an appliance without one must not leave to third-party
//! scripts.
//!
//! Two ways, both as Google and Microsoft offer them to installed apps:
//! - **browser** (default): the authorization-code flow with PKCE (RFC 7636) and a loopback
//!   redirect (RFC 8252 §7.3). The user opens the printed address in any browser and signs in
//!   as the mailbox; the provider sends the browser back to `http://127.0.0.1:<port>/`, where
//!   this command listens. When that browser is on another machine the last page does not
//!   load: its address, pasted here, does the same (or `--port` and an SSH tunnel).
//! - **device** (`--device`, RFC 8628): the user enters a short code at the provider's page
//!   on any device; this command polls the token endpoint until they have. Microsoft offers it
//!   for mail; Google does not allow its mail scope in this flow.
//!
//! Before the refresh token is kept, the access token it came with logs in to the channel's
//! servers that use the grant (`probe.rs`'s checks): the provider grants access to whichever
//! account the browser was signed in as, and only the mail server knows that is not the
//! mailbox. A refused login keeps nothing, so a working token is never replaced by a wrong one.
//!
//! The refresh token goes into the table's `refresh_token_file` (or `--write FILE`), written
//! whole or not at all, with the config file's owner and permissions (never readable by
//! others); or, with neither, to stdout. A reload then puts it to use: a configured token that
//! changed replaces the stored rotation of the old grant (`oauth2.rs`).
//!
//! The table is read from the file as written (the `SWITCHBOARD_` environment layer is not
//! applied), and its refresh token may be missing or unreadable: obtaining it is the point.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;
use serde::Deserialize;
use sha2::Digest;

use super::config::{ImapConfig, SmtpConfig};
use super::oauth2::{error_code, form, post_form, refusal, token_response, OAuth2Config, TokenResponse};
use super::probe::{check_imap, check_smtp, Credential};
use crate::check::Finding;

/// What `switchboard oauth2` was asked to do.
pub struct Request {
    pub config: PathBuf,
    pub channel: String,
    /// The SMTP table's grant instead of IMAP's (when they differ).
    pub smtp: bool,
    pub device: bool,
    /// The loopback port for the browser's redirect; 0: any free one.
    pub port: u16,
    pub write: Option<PathBuf>,
}

/// Where the refresh token went.
pub enum Kept {
    File { path: PathBuf, configured: bool },
    Stdout,
}

/// How long the user has to sign in.
const PATIENCE: Duration = Duration::from_secs(15 * 60);

/// Runs the authorisation; progress and instructions go to stderr.
pub async fn run(request: &Request) -> Result<Kept, String> {
    let text = std::fs::read_to_string(&request.config)
        .map_err(|e| format!("cannot read {}: {e}", request.config.display()))?;
    let Grant { table, oauth2: grant, username, channel } = grant_in(&text, &request.channel, request.smtp)?;
    let client = grant.http_client();
    let tokens = if request.device {
        by_device(&client, &grant, &username).await?
    } else {
        by_browser(&client, &grant, &username, request.port).await?
    };
    let refresh_token = tokens.refresh_token.ok_or_else(|| {
        "the provider granted access but gave no refresh token: Microsoft needs the scope \
         offline_access; Google gives one only at the first consent (remove the app's access \
         in the Google account and run this again)"
            .to_owned()
    })?;
    check_token(&channel, &grant, &username, &tokens.access_token).await?;
    // A systemd credential is a copy the unit gets at start, not a file to write here.
    let (credential, configured): (Vec<_>, Vec<_>) = grant
        .refresh_token_file
        .clone()
        .into_iter()
        .partition(|p| p.to_string_lossy().contains("CREDENTIALS_DIRECTORY"));
    let configured = configured.into_iter().next();
    match request.write.clone().or(configured.clone()) {
        Some(path) => {
            keep(&refresh_token, &path, &request.config)
                .map_err(|e| format!("cannot write the refresh token to {}: {e}", path.display()))?;
            let configured = configured.as_ref() == Some(&path);
            eprintln!("The refresh token is in {}.", path.display());
            if !configured {
                eprintln!("Name it in [{table}]: refresh_token_file = \"{}\"", path.display());
            }
            Ok(Kept::File { path, configured })
        }
        None => {
            match credential.first() {
                Some(path) => eprintln!(
                    "[{table}] refresh_token_file = \"{}\" is a systemd credential: put the refresh \
                     token that follows into the file its LoadCredential= line names (systemctl cat \
                     switchboard), then systemctl restart switchboard (a reload does not renew \
                     credentials). Or run this again with --write FILE.",
                    path.display()
                ),
                None => eprintln!(
                    "The refresh token follows; put it in [{table}] as refresh_token (or in a file named by refresh_token_file)."
                ),
            }
            println!("{refresh_token}");
            Ok(Kept::Stdout)
        }
    }
}

/// The grant to authorise, as the config file has it.
#[derive(Debug)]
struct Grant {
    /// The table's key path, `channels.imap.oauth2` or `channels.smtp.oauth2`.
    table: String,
    /// The table, its client secret resolved (its refresh token may be missing).
    oauth2: OAuth2Config,
    /// The mailbox's user name (as the server logs it in).
    username: String,
    /// The channel's whole table.
    channel: toml::Value,
}

/// The channel's `[channels.imap.oauth2]` (or smtp's) table as written in `config`.
fn grant_in(config: &str, channel: &str, smtp: bool) -> Result<Grant, String> {
    let root: toml::Table = config.parse().map_err(|e| format!("not valid TOML: {e}"))?;
    let channels = root.get("channels").and_then(toml::Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let found = channels.iter().find(|c| c.get("id").and_then(toml::Value::as_str) == Some(channel));
    let Some(found) = found else {
        let ids: Vec<&str> = channels.iter().filter_map(|c| c.get("id")?.as_str()).collect();
        return Err(format!("no channel `{channel}` in the config (channels: {})", ids.join(", ")));
    };
    let sides: &[&'static str] = if smtp { &["smtp"] } else { &["imap", "smtp"] };
    let Some((side, table)) = sides.iter().find_map(|&side| Some((side, found.get(side)?.get("oauth2")?))) else {
        let which = if smtp { "[channels.smtp.oauth2]" } else { "[channels.imap.oauth2] or [channels.smtp.oauth2]" };
        return Err(format!("channel `{channel}` has no {which} table: add one (client_id, token_url, scopes) first"));
    };
    let name = format!("channels.{side}.oauth2");
    let mut grant = OAuth2Config::deserialize(table.clone()).map_err(|e| format!("{name}: {e}"))?;
    let problems: Vec<String> = grant
        .validate()
        .into_iter()
        .filter(|(key, _)| !key.starts_with("refresh_token"))
        .map(|(key, reason)| format!("{name}.{key}: {reason}"))
        .collect();
    if !problems.is_empty() {
        return Err(problems.join("\n"));
    }
    let username = found.get(side).and_then(|t| t.get("username")).and_then(toml::Value::as_str).unwrap_or_default();
    Ok(Grant { table: name, oauth2: grant, username: username.to_owned(), channel: found.clone() })
}

/// Logs in to the channel's servers that use this grant with the access token it came with.
/// The provider cannot know which mailbox the token is meant for: a browser signed in as
/// another account than the mailbox's (the commonest mistake) gives a valid grant the mail
/// server refuses. Then nothing is kept, so a working token is never replaced by a wrong one. A
/// server that cannot be reached from here does not stop the token being kept.
async fn check_token(channel: &toml::Value, grant: &OAuth2Config, username: &str, token: &str) -> Result<(), String> {
    // The same grant as the service sees it: the same client at the same token endpoint.
    let uses_grant = |side: &str| {
        let oauth2 = channel.get(side)?.get("oauth2")?;
        let theirs = OAuth2Config::deserialize(oauth2.clone()).ok()?;
        (theirs.client_id == grant.client_id && theirs.token_url == grant.token_url).then_some(())
    };
    let mut findings = Vec::new();
    if let (Some(()), Some(table)) = (uses_grant("imap"), channel.get("imap")) {
        let imap = ImapConfig::deserialize(table.clone()).map_err(|e| e.to_string());
        match imap.and_then(|mut imap| imap.load_ca_file().map(|()| imap)) {
            Ok(imap) => findings.extend(check_imap(&imap, Credential::AccessToken(token)).await),
            Err(e) => findings.push(("imap".to_owned(), Finding::NotTried(format!("[channels.imap]: {e}")))),
        }
    }
    if let (Some(()), Some(table)) = (uses_grant("smtp"), channel.get("smtp")) {
        let smtp = SmtpConfig::deserialize(table.clone()).map_err(|e| e.to_string());
        match smtp.and_then(|mut smtp| smtp.load_ca_file().map(|()| smtp)) {
            Ok(smtp) => findings.push(check_smtp(&smtp, Credential::AccessToken(token)).await),
            Err(e) => findings.push(("smtp".to_owned(), Finding::NotTried(format!("[channels.smtp]: {e}")))),
        }
    }
    let mut refused = None;
    for (what, finding) in findings {
        match finding {
            Finding::Ok(detail) => eprintln!("With the new token, {what}: ok, {detail}"),
            Finding::Failed(detail) => {
                eprintln!("With the new token, {what}: FAILED, {detail} (not the token's doing: it is kept)")
            }
            Finding::NotTried(detail) => eprintln!("With the new token, {what}: not checked, {detail}"),
            Finding::Refused(detail) => refused = refused.or(Some(format!("{what} refused the new token: {detail}"))),
        }
    }
    match refused {
        None => Ok(()),
        Some(refusal) => Err(format!(
            "{refusal}. The provider granted access to the account signed in at its page; the mail \
             server takes it only for {username}: sign in as {username} (or fix the username in \
             the config, or the scopes; or the mailbox has IMAP or authenticated SMTP turned off, \
             as Microsoft 365 and Gmail allow). Nothing was written: run this again."
        )),
    }
}

/// The authorization-code flow with PKCE and a loopback redirect.
async fn by_browser(
    client: &reqwest::Client,
    grant: &OAuth2Config,
    username: &str,
    port: u16,
) -> Result<TokenResponse, String> {
    let authorize = grant.authorize_endpoint().ok_or(
        "the provider's authorization endpoint is not known from token_url: set authorize_url in the oauth2 table",
    )?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1:{port} for the browser's redirect: {e}"))?;
    let redirect = format!("http://127.0.0.1:{}/", listener.local_addr().map_err(|e| e.to_string())?.port());
    let verifier = random_token(32);
    let state = random_token(16);
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
    let mut query = vec![
        ("response_type", "code".to_owned()),
        ("client_id", grant.client_id.clone()),
        ("redirect_uri", redirect.clone()),
        ("scope", grant.scopes.join(" ")),
        ("state", state.clone()),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256".to_owned()),
        // Google gives a refresh token only for offline access, and again only with consent.
        ("access_type", "offline".to_owned()),
        ("prompt", "consent".to_owned()),
    ];
    if !username.is_empty() {
        query.push(("login_hint", username.to_owned()));
    }
    let address = format!("{authorize}?{}", form(&query));
    let who = if username.is_empty() { String::new() } else { format!(" as {username}") };
    eprintln!("Open this address in a browser and sign in{who}:\n\n{address}\n");
    eprintln!(
        "If that browser is on another machine, its last page (http://127.0.0.1:…) will not load: \
         copy that page's address from the address bar and paste it here."
    );

    let (answers, mut answered) = tokio::sync::mpsc::channel::<HashMap<String, String>>(8);
    let from_browser = answers.clone();
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move |axum::extract::Query(query): axum::extract::Query<HashMap<String, String>>| {
            let from_browser = from_browser.clone();
            async move {
                let _ = from_browser.send(query).await;
                axum::response::Html("<p>switchboard has the provider's answer; you can close this page.</p>")
            }
        }),
    );
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    // A pasted address: stdin is read on a thread of its own (a blocking read).
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            let query = line.trim().split_once('?').map(|(_, q)| q).unwrap_or("");
            let fields: HashMap<String, String> =
                url::form_urlencoded::parse(query.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
            if fields.is_empty() || answers.blocking_send(fields).is_err() {
                eprintln!("That is not the address of the last page (it has no `?code=` or `?error=`).");
            }
        }
    });
    let answer = tokio::time::timeout(PATIENCE, async {
        while let Some(answer) = answered.recv().await {
            if answer.get("state") == Some(&state) {
                return Some(answer);
            }
            eprintln!("An answer to another authorisation request (its state differs) is ignored.");
        }
        None
    })
    .await;
    let answer = answer
        .map_err(|_| format!("no answer from the browser within {} minutes", PATIENCE.as_secs() / 60))?
        .ok_or("no answer from the browser")?;
    if let Some(error) = answer.get("error") {
        let description = answer.get("error_description").map(|d| format!(" ({d})")).unwrap_or_default();
        return Err(format!("the provider refused the authorisation: {error}{description}"));
    }
    let code = answer.get("code").ok_or("the provider's answer has neither a code nor an error")?;
    let mut fields = vec![
        ("grant_type", "authorization_code".to_owned()),
        ("code", code.clone()),
        ("redirect_uri", redirect),
        ("code_verifier", verifier),
    ];
    fields.extend(grant.client_fields());
    let exchanged = post_form(client, &grant.token_url, &fields).await;
    // Only now: the browser's page has been answered meanwhile.
    server.abort();
    token_response(exchanged?)
}

#[derive(Deserialize)]
struct DeviceCode {
    device_code: String,
    user_code: String,
    /// RFC 8628's name; Google's is `verification_url`.
    verification_uri: Option<String>,
    verification_url: Option<String>,
    expires_in: u64,
    interval: Option<u64>,
}

/// The device authorization grant (RFC 8628).
async fn by_device(client: &reqwest::Client, grant: &OAuth2Config, username: &str) -> Result<TokenResponse, String> {
    let endpoint = grant
        .device_endpoint()
        .ok_or("the provider's device endpoint is not known from token_url: set device_url in the oauth2 table")?;
    let mut fields = grant.client_fields();
    fields.push(("scope", grant.scopes.join(" ")));
    let (status, text) = post_form(client, &endpoint, &fields).await?;
    if !status.is_success() {
        return Err(refusal(status, &text));
    }
    let device: DeviceCode =
        serde_json::from_str(&text).map_err(|e| format!("{endpoint} answered no device code: {e}: {text}"))?;
    let page = device.verification_uri.or(device.verification_url).ok_or("the device answer names no page to open")?;
    let who = if username.is_empty() { String::new() } else { format!(", sign in as {username}") };
    eprintln!("Open {page} on any device{who} and enter the code {}", device.user_code);
    let deadline = Instant::now() + Duration::from_secs(device.expires_in);
    let mut interval = Duration::from_secs(device.interval.unwrap_or(5).max(1));
    let mut fields = vec![
        ("grant_type", "urn:ietf:params:oauth:grant-type:device_code".to_owned()),
        ("device_code", device.device_code),
    ];
    fields.extend(grant.client_fields());
    loop {
        tokio::time::sleep(interval).await;
        if Instant::now() > deadline {
            return Err("the code expired before it was entered: run this again".to_owned());
        }
        let (status, text) = post_form(client, &grant.token_url, &fields).await?;
        if status.is_success() {
            return token_response((status, text));
        }
        match error_code(&text).as_deref() {
            Some("authorization_pending") => {}
            // RFC 8628 §3.5: five seconds more for this and every later request.
            Some("slow_down") => interval += Duration::from_secs(5),
            _ => return Err(refusal(status, &text)),
        }
    }
}

/// Writes `token` to `path` whole or not at all (a temporary file, fsynced, renamed, the
/// directory fsynced), owned and permitted like the file it replaces, else like the config
/// file — never readable by others.
fn keep(token: &str, path: &Path, config: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
    let like = std::fs::metadata(path).or_else(|_| std::fs::metadata(config))?;
    let name = path.file_name().ok_or_else(|| std::io::Error::other("the path names no file"))?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let temporary = dir.join(format!(".{}.new", name.to_string_lossy()));
    let written = (|| {
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&temporary)?;
        file.write_all(format!("{token}\n").as_bytes())?;
        // Fails when not root: the file stays ours, as the config presumably is.
        let _ = std::os::unix::fs::chown(&temporary, Some(like.uid()), Some(like.gid()));
        file.set_permissions(std::fs::Permissions::from_mode(like.mode() & 0o640))?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}

/// `bytes` random bytes, URL-safe base64 (a PKCE verifier of 32 bytes is 43 characters).
fn random_token(bytes: usize) -> String {
    let mut raw = vec![0u8; bytes];
    getrandom::fill(&mut raw).expect("the system's random source");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

#[cfg(test)]
mod tests {
    use super::grant_in;

    #[test]
    fn the_grant_is_read_from_the_file_without_its_refresh_token() {
        let config = r#"
[[channels]]
id = "support"
type = "email"
[channels.imap]
username = "support@example.com"
[channels.imap.oauth2]
client_id = "app"
token_url = "https://login.microsoftonline.com/contoso.example/oauth2/v2.0/token"
refresh_token_file = "/nonexistent/support.token"
scopes = ["offline_access"]
"#;
        let super::Grant { table, oauth2: grant, username, .. } = grant_in(config, "support", false).unwrap();
        assert_eq!((table.as_str(), username.as_str()), ("channels.imap.oauth2", "support@example.com"));
        let base = "https://login.microsoftonline.com/contoso.example/oauth2/v2.0";
        assert_eq!(grant.authorize_endpoint(), Some(format!("{base}/authorize")));
        assert_eq!(grant.device_endpoint(), Some(format!("{base}/devicecode")));
        assert!(grant_in(config, "support", true).unwrap_err().contains("no [channels.smtp.oauth2] table"));
        assert!(grant_in(config, "sales", false)
            .unwrap_err()
            .contains("no channel `sales` in the config (channels: support)"));
        let broken = config.replace("https://login", "ftp://login");
        assert!(grant_in(&broken, "support", false).unwrap_err().starts_with("channels.imap.oauth2.token_url: "));
        let google = config.replace(
            "https://login.microsoftonline.com/contoso.example/oauth2/v2.0/token",
            "https://oauth2.googleapis.com/token",
        );
        let grant = grant_in(&google, "support", false).unwrap().oauth2;
        assert_eq!(grant.authorize_endpoint().as_deref(), Some("https://accounts.google.com/o/oauth2/v2/auth"));
        let elsewhere = config.replace("login.microsoftonline.com/contoso.example/oauth2/v2.0", "id.example/oauth");
        assert_eq!(grant_in(&elsewhere, "support", false).unwrap().oauth2.authorize_endpoint(), None);
    }
}
