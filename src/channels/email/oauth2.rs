//! OAuth2 for mail (XOAUTH2, as Gmail and Microsoft 365 require): access tokens from a refresh
//! token, refreshed a minute before they expire. A rotated refresh token is persisted at once,
//! before it is used (losing it is why Zammad users must re-authorise every 90 days), with a
//! fingerprint of the configured token it descends from: when the grant dies anyway (revoked,
//! a password change, a provider's expiry) and the operator puts a new refresh token in the
//! config, that one is used, not the stored descendant of the old.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::Mutex;

use crate::config::{self, Secret, SecretSource};
use crate::pipeline::ChannelState;

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2Config {
    pub client_id: String,
    pub client_secret: Option<Secret>,
    pub client_secret_file: Option<PathBuf>,
    pub client_secret_env: Option<String>,
    /// The provider's token endpoint (Google: https://oauth2.googleapis.com/token; Microsoft:
    /// https://login.microsoftonline.com/<tenant>/oauth2/v2.0/token).
    pub token_url: String,
    /// The initial refresh token; once rotated, the stored one is used instead, until this one
    /// changes (a new grant).
    pub refresh_token: Option<Secret>,
    pub refresh_token_file: Option<PathBuf>,
    pub refresh_token_env: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    /// For `switchboard oauth2` only: the provider's authorization endpoint (known for Google's
    /// and Microsoft's token endpoints) and its device authorization endpoint (RFC 8628).
    pub authorize_url: Option<String>,
    pub device_url: Option<String>,
    /// A PEM file of extra trusted CA certificates, for a token endpoint behind a private CA (a
    /// self-hosted identity provider).
    pub ca_file: Option<PathBuf>,
    /// Filled by validation: the certificates of `ca_file`.
    #[serde(skip)]
    pub ca_pem: Option<Vec<u8>>,
}

impl OAuth2Config {
    /// Problems relative to the table; resolves secret files and variables.
    pub fn validate(&mut self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        let urls = [("token_url", Some(&self.token_url)), ("authorize_url", self.authorize_url.as_ref())];
        for (key, url) in urls.into_iter().chain([("device_url", self.device_url.as_ref())]) {
            if let Some(Err(reason)) = url.map(|u| config::check_http_url(u)) {
                problems.push((key.to_owned(), reason));
            }
        }
        let source =
            SecretSource { inline: &self.client_secret, file: &self.client_secret_file, env: &self.client_secret_env };
        match config::resolve_secret("client_secret", source) {
            Ok(secret) => self.client_secret = secret,
            Err(p) => problems.push(p),
        }
        let source =
            SecretSource { inline: &self.refresh_token, file: &self.refresh_token_file, env: &self.refresh_token_env };
        match config::resolve_secret("refresh_token", source) {
            Ok(Some(token)) => self.refresh_token = Some(token),
            Ok(None) => {
                problems.push(("refresh_token".to_owned(), "is required (refresh_token, _file or _env)".to_owned()))
            }
            Err(p) => problems.push(p),
        }
        if let Err(reason) = config::load_ca_file(self.ca_file.as_deref(), &mut self.ca_pem) {
            problems.push(("ca_file".to_owned(), reason));
        }
        problems
    }

    /// The client for the provider's endpoints, trusting `ca_file` too.
    pub(super) fn http_client(&self) -> reqwest::Client {
        crate::http_out::client(Duration::from_secs(30), self.ca_pem.as_deref())
    }

    /// Where the user authorises the app: `authorize_url`, or Google's or Microsoft's, known
    /// from their token endpoints.
    pub fn authorize_endpoint(&self) -> Option<String> {
        self.authorize_url.clone().or_else(|| match self.known_provider()? {
            Known::Google => Some("https://accounts.google.com/o/oauth2/v2/auth".to_owned()),
            Known::Microsoft(base) => Some(format!("{base}/authorize")),
        })
    }

    /// Where a device code is asked for (RFC 8628): `device_url`, or Google's or Microsoft's.
    pub fn device_endpoint(&self) -> Option<String> {
        self.device_url.clone().or_else(|| match self.known_provider()? {
            Known::Google => Some("https://oauth2.googleapis.com/device/code".to_owned()),
            Known::Microsoft(base) => Some(format!("{base}/devicecode")),
        })
    }

    fn known_provider(&self) -> Option<Known> {
        let url = self.token_url.trim_end_matches('/');
        if ["https://oauth2.googleapis.com/token", "https://accounts.google.com/o/oauth2/token"].contains(&url) {
            return Some(Known::Google);
        }
        let base = url.strip_suffix("/token")?;
        (url.starts_with("https://login.microsoftonline.com/") && base.ends_with("/oauth2/v2.0"))
            .then(|| Known::Microsoft(base.to_owned()))
    }

    /// A refresh of `refresh_token` as the token endpoint takes it.
    fn refresh_form(&self, refresh_token: &str) -> Vec<(&'static str, String)> {
        let mut form = vec![("grant_type", "refresh_token".to_owned()), ("refresh_token", refresh_token.to_owned())];
        form.extend(self.client_fields());
        if !self.scopes.is_empty() {
            form.push(("scope", self.scopes.join(" ")));
        }
        form
    }

    /// The client's credentials as a token endpoint takes them in its form (RFC 6749 §2.3.1:
    /// Microsoft and Google take the secret in the body).
    pub(super) fn client_fields(&self) -> Vec<(&'static str, String)> {
        let mut fields = vec![("client_id", self.client_id.clone())];
        if let Some(secret) = &self.client_secret {
            fields.push(("client_secret", secret.expose().to_owned()));
        }
        fields
    }
}

enum Known {
    Google,
    /// Microsoft's endpoints under `https://login.microsoftonline.com/<tenant>/oauth2/v2.0`.
    Microsoft(String),
}

/// `fields` as `application/x-www-form-urlencoded`: a token endpoint's body, and an
/// authorization request's query.
pub(super) fn form(fields: &[(&str, String)]) -> String {
    url::form_urlencoded::Serializer::new(String::new()).extend_pairs(fields.iter().map(|(k, v)| (k, v))).finish()
}

/// POSTs `fields` as a form; the answer's status and text.
pub(super) async fn post_form(
    client: &reqwest::Client,
    url: &str,
    fields: &[(&str, String)],
) -> Result<(reqwest::StatusCode, String), String> {
    let response = client
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(fields))
        .send()
        .await
        .map_err(|e| format!("{url}: {}", crate::http_out::describe(&e)))?;
    let status = response.status();
    Ok((status, response.text().await.unwrap_or_default()))
}

#[derive(Deserialize)]
pub(super) struct TokenResponse {
    pub access_token: String,
    pub expires_in: Option<u64>,
    pub refresh_token: Option<String>,
}

/// A token endpoint's answer: the tokens, or why there are none.
pub(super) fn token_response((status, text): (reqwest::StatusCode, String)) -> Result<TokenResponse, String> {
    if !status.is_success() {
        return Err(refusal(status, &text));
    }
    serde_json::from_str(&text).map_err(|e| format!("token endpoint sent no token: {e}"))
}

/// Hands out valid access tokens for one account.
pub struct TokenSource {
    config: OAuth2Config,
    /// Where the current refresh token is kept (`key` in the channel's state).
    state: ChannelState,
    key: String,
    client: reqwest::Client,
    cached: Mutex<Option<(String, Instant)>>,
}

impl TokenSource {
    /// The stored refresh token is keyed by the grant (client and token endpoint), so IMAP and
    /// SMTP sharing one grant see each other's rotations.
    pub fn new(config: OAuth2Config, state: ChannelState) -> TokenSource {
        TokenSource {
            key: format!("oauth2:{}@{}:refresh_token", config.client_id, config.token_url),
            client: config.http_client(),
            config,
            state,
            cached: Mutex::new(None),
        }
    }

    /// A token valid for at least another minute.
    pub async fn access_token(&self) -> Result<String, String> {
        Ok(self.access_token_telling_if_new().await?.0)
    }

    /// `access_token`, and whether the provider issued it just now (rather than it being held
    /// from before): a server's refusal of a token just issued is no reason to ask again.
    pub async fn access_token_telling_if_new(&self) -> Result<(String, bool), String> {
        let mut cached = self.cached.lock().await;
        if let Some((token, until)) = cached.as_ref() {
            if *until > Instant::now() + Duration::from_secs(60) {
                return Ok((token.clone(), false));
            }
        }
        // One refresh of the grant at a time across its users (IMAP, SMTP, the Sent copy): a
        // provider that revokes a refresh token when it rotates it would refuse the second of
        // two concurrent refreshes with the same token. The next one reads the rotated token.
        let _grant = self.state.lock(&self.key).await;
        let refresh = self.current_refresh_token().await?;
        let form = self.config.refresh_form(&refresh);
        let token = token_response(post_form(&self.client, &self.config.token_url, &form).await?)?;
        if let Some(rotated) = token.refresh_token.filter(|r| *r != refresh) {
            // Persist before anything else: the old refresh token may already be dead.
            self.store_current(&rotated).await.map_err(|e| format!("cannot store the rotated refresh token: {e}"))?;
            tracing::info!(channel = %self.state.channel_id(), "OAuth2 refresh token rotated and stored");
        }
        let until = Instant::now() + Duration::from_secs(token.expires_in.unwrap_or(3600));
        *cached = Some((token.access_token.clone(), until));
        Ok((token.access_token, true))
    }

    /// The mail server refused `token`: it is not handed out again. A grant revoked at the
    /// provider (the user removed the app's access, a password change) takes its access tokens
    /// with it long before they would expire; the next login asks the provider, whose answer
    /// says whether the grant still stands and, if not, what to do.
    pub async fn refused(&self, token: &str) {
        let mut cached = self.cached.lock().await;
        if cached.as_ref().is_some_and(|(held, _)| held == token) {
            *cached = None;
        }
    }

    /// The refresh token to present: the stored rotation of the configured token, or the
    /// configured token when none is stored or the configured one changed since (a new grant).
    async fn current_refresh_token(&self) -> Result<String, String> {
        let configured = self.configured();
        let stored = self.state.get(&self.key).await.map_err(|e| e.to_string())?;
        let origin = self.state.get(&self.origin_key()).await.map_err(|e| e.to_string())?;
        match (stored, origin) {
            (None, _) => Ok(configured.to_owned()),
            (Some(rotated), Some(origin)) if origin == fingerprint(configured) => Ok(rotated),
            // Stored before origins were: taken to descend from the configured token, which is
            // recorded now so that a later change of it is seen.
            (Some(rotated), None) => {
                self.store_current(&rotated).await.map_err(|e| e.to_string())?;
                Ok(rotated)
            }
            (Some(_), Some(_)) => {
                // The new grant replaces the old one's stored rotation, once.
                self.store_current(configured).await.map_err(|e| e.to_string())?;
                tracing::info!(channel = %self.state.channel_id(), "the configured OAuth2 refresh token changed: it replaces the stored rotation of the previous one");
                Ok(configured.to_owned())
            }
        }
    }

    /// Stores `token` as the grant's current refresh token, descended from the configured one.
    async fn store_current(&self, token: &str) -> Result<(), crate::store::StoreError> {
        self.state.set(&self.key, token).await?;
        self.state.set(&self.origin_key(), &fingerprint(self.configured())).await
    }

    fn configured(&self) -> &str {
        self.config.refresh_token.as_ref().map_or("", |s| s.expose())
    }

    /// Where the fingerprint of the configured token the stored one descends from is kept.
    fn origin_key(&self) -> String {
        format!("{}:origin", self.key)
    }
}

/// What a token endpoint's refusal means for the operator: RFC 6749 §5.2's `error` (and its
/// description, which Microsoft fills with an AADSTS code), with what to do about the usual ones.
pub(super) fn refusal(status: reqwest::StatusCode, body: &str) -> String {
    #[derive(Deserialize)]
    struct Refusal {
        error: String,
        error_description: Option<String>,
    }
    let Ok(refusal) = serde_json::from_str::<Refusal>(body) else {
        return format!("token endpoint answered {status}: {}", body.chars().take(300).collect::<String>());
    };
    let what_to_do = match refusal.error.as_str() {
        "invalid_grant" => {
            "; the refresh token was revoked, expired or already used: authorise the app for this mailbox again and put the new refresh_token in the config, then reload"
        }
        "invalid_client" | "unauthorized_client" => {
            "; check client_id and client_secret, and that the app may use refresh tokens"
        }
        "invalid_scope" => "; scopes must be among those the mailbox's owner granted",
        _ => "",
    };
    let description = refusal.error_description.map(|d| format!(" ({})", d.chars().take(300).collect::<String>()));
    format!(
        "the token endpoint refused the refresh ({status}): {}{}{what_to_do}",
        refusal.error,
        description.unwrap_or_default()
    )
}

/// Whether the token endpoint takes the client, without touching the grant (`switchboard check
/// --connect`, beside a running service that owns the grant's rotation): a refresh of a
/// made-up token must be refused as `invalid_grant`. That answer shows the endpoint reachable
/// and the client not refused; `invalid_client` (a wrong or expired client secret — Azure's
/// expire within two years) or `unauthorized_client` would stop the service at its next
/// refresh. Some providers look at the token before the client, so `Ok` does not prove the
/// secret.
pub(super) async fn check_client(config: &OAuth2Config) -> Result<(), String> {
    let client = config.http_client();
    let form = config.refresh_form("switchboard-check-not-a-token");
    let (status, text) = post_form(&client, &config.token_url, &form).await?;
    match error_code(&text).as_deref() {
        Some("invalid_grant") if status.is_client_error() => Ok(()),
        _ if status.is_success() => Err(format!(
            "answered {status} to a made-up refresh token without refusing it: is token_url the provider's token endpoint?"
        )),
        _ => Err(refusal(status, &text)),
    }
}

/// The RFC 6749 §5.2 `error` of a token endpoint's answer, if it names one.
pub(super) fn error_code(body: &str) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(body).ok().and_then(|v| v["error"].as_str().map(str::to_owned))
}

/// A refresh token's fingerprint: what the store keeps of the configured token (never the
/// token itself).
fn fingerprint(token: &str) -> String {
    crate::store::Blobs::hash(token.as_bytes())[..16].to_owned()
}

/// The SASL XOAUTH2 initial response: `user=U\x01auth=Bearer T\x01\x01`.
pub fn xoauth2(user: &str, token: &str) -> String {
    format!("user={user}\x01auth=Bearer {token}\x01\x01")
}

/// async-imap's authenticator for XOAUTH2 (the response is base64-encoded by the library).
pub struct XOAuth2(pub String);

impl async_imap::Authenticator for XOAuth2 {
    type Response = String;
    fn process(&mut self, _challenge: &[u8]) -> String {
        // The first call sends the credentials; after a failure the server sends a JSON error
        // challenge that must be answered with an empty response.
        std::mem::take(&mut self.0)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::{OAuth2Config, TokenSource};
    use crate::config::Secret;
    use crate::pipeline::ChannelState;

    /// A token endpoint that rotates the refresh token on every use and revokes the one used,
    /// answering after 50 ms (so two refreshes overlap unless something orders them).
    async fn rotating_token_endpoint() -> String {
        rotating_token_endpoint_with_grant().await.0
    }

    /// `rotating_token_endpoint`, and its live refresh token, which a test may replace (a new
    /// grant: the user authorised again).
    async fn rotating_token_endpoint_with_grant() -> (String, Arc<Mutex<String>>) {
        let current = Arc::new(Mutex::new("rt-0".to_owned()));
        let grant = current.clone();
        let app = axum::Router::new().route(
            "/token",
            axum::routing::post(move |body: String| {
                let current = current.clone();
                async move {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    let presented = body.split('&').find_map(|kv| kv.strip_prefix("refresh_token=")).unwrap_or("");
                    let mut current = current.lock().unwrap();
                    if presented != *current {
                        let error = r#"{"error":"invalid_grant"}"#.to_owned();
                        return (axum::http::StatusCode::BAD_REQUEST, error);
                    }
                    let n: u32 = current.trim_start_matches("rt-").parse().unwrap();
                    *current = format!("rt-{}", n + 1);
                    let answer =
                        format!(r#"{{"access_token":"at-{n}","expires_in":3600,"refresh_token":"{current}"}}"#);
                    (axum::http::StatusCode::OK, answer)
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/token", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, grant)
    }

    /// A fresh store (in the returned directory) and the support channel's state in it.
    fn channel_state() -> (tempfile::TempDir, crate::store::Store, ChannelState) {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(dir.path()).unwrap();
        let state = ChannelState::new(store.clone(), "support");
        (dir, store, state)
    }

    fn grant(token_url: String, refresh_token: &str) -> OAuth2Config {
        OAuth2Config {
            client_id: "switchboard".into(),
            client_secret: None,
            client_secret_file: None,
            client_secret_env: None,
            token_url,
            refresh_token: Some(Secret::new(refresh_token)),
            refresh_token_file: None,
            refresh_token_env: None,
            scopes: Vec::new(),
            authorize_url: None,
            device_url: None,
            ca_file: None,
            ca_pem: None,
        }
    }

    /// The grant died (revoked, a password change) after its token was rotated and stored; the
    /// operator authorised again and put the new refresh token in the config. That one is used,
    /// not the stored rotation of the dead grant; and once rotated in turn, its rotation is.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_new_refresh_token_in_the_config_replaces_the_stored_rotation_of_a_dead_grant() {
        let (_dir, store, state) = channel_state();
        let (url, live) = rotating_token_endpoint_with_grant().await;
        let first = TokenSource::new(grant(url.clone(), "rt-0"), state.clone());
        assert_eq!(first.access_token().await.unwrap(), "at-0");
        assert_eq!(state.get(&first.key).await.unwrap().as_deref(), Some("rt-1"));
        // A restart on the same config uses the stored rotation (rt-0 is dead).
        let again = TokenSource::new(grant(url.clone(), "rt-0"), state.clone());
        assert_eq!(again.access_token().await.unwrap(), "at-1");

        *live.lock().unwrap() = "rt-50".into();
        let stale = TokenSource::new(grant(url.clone(), "rt-0"), state.clone());
        assert!(stale.access_token().await.unwrap_err().contains("invalid_grant"), "the old grant is dead");
        let renewed = TokenSource::new(grant(url.clone(), "rt-50"), state.clone());
        assert_eq!(renewed.access_token().await.unwrap(), "at-50");
        assert_eq!(state.get(&renewed.key).await.unwrap().as_deref(), Some("rt-51"));
        let restarted = TokenSource::new(grant(url, "rt-50"), state.clone());
        assert_eq!(restarted.access_token().await.unwrap(), "at-51", "rt-50 is dead now: its rotation is used");
        store.close();
    }

    /// A rotation stored before its origin was kept is taken to descend from the configured
    /// token, which is recorded then.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_rotation_stored_without_its_origin_is_still_used() {
        let (_dir, store, state) = channel_state();
        let (url, live) = rotating_token_endpoint_with_grant().await;
        *live.lock().unwrap() = "rt-7".into();
        let source = TokenSource::new(grant(url, "rt-0"), state.clone());
        state.set(&source.key, "rt-7").await.unwrap();
        assert_eq!(source.access_token().await.unwrap(), "at-7");
        assert_eq!(state.get(&source.origin_key()).await.unwrap(), Some(super::fingerprint("rt-0")));
        store.close();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn imap_and_smtp_refreshing_one_grant_at_once_both_get_a_token() {
        let (_dir, store, state) = channel_state();
        let config = grant(rotating_token_endpoint().await, "rt-0");
        let imap = TokenSource::new(config.clone(), state.clone());
        let smtp = TokenSource::new(config, state.clone());
        let (a, b) = tokio::join!(imap.access_token(), smtp.access_token());
        let mut tokens = vec![a.unwrap(), b.unwrap()];
        tokens.sort();
        assert_eq!(tokens, ["at-0", "at-1"], "the second refresh used the token the first one rotated");
        assert_eq!(state.get(&imap.key).await.unwrap().as_deref(), Some("rt-2"));
        store.close();
    }

    #[test]
    fn a_refusal_says_what_the_provider_said_and_what_to_do() {
        use reqwest::StatusCode;
        let microsoft = r#"{"error":"invalid_grant","error_description":"AADSTS700082: The refresh token has expired due to inactivity. The token was issued on 2026-08-01T10:00:00Z and was inactive for 90.00:00:00.","error_codes":[700082]}"#;
        let said = super::refusal(StatusCode::BAD_REQUEST, microsoft);
        assert!(said.starts_with("the token endpoint refused the refresh (400 Bad Request): invalid_grant (AADSTS700082: The refresh token has expired due to inactivity."), "{said}");
        assert!(said.ends_with("put the new refresh_token in the config, then reload"), "{said}");
        let google = r#"{"error": "invalid_client", "error_description": "Unauthorized"}"#;
        let said = super::refusal(StatusCode::UNAUTHORIZED, google);
        assert!(said.contains("invalid_client (Unauthorized); check client_id and client_secret"), "{said}");
        let proxy = "<html><body>502 Bad Gateway</body></html>";
        assert_eq!(
            super::refusal(StatusCode::BAD_GATEWAY, proxy),
            format!("token endpoint answered 502 Bad Gateway: {proxy}")
        );
    }

    #[test]
    fn a_form_escapes_what_would_end_its_field() {
        let fields = [("scope", "a b/c+d".to_owned()), ("refresh_token", "rt=1&x".to_owned())];
        assert_eq!(super::form(&fields), "scope=a+b%2Fc%2Bd&refresh_token=rt%3D1%26x");
    }

    #[test]
    fn xoauth2_matches_the_google_test_vector() {
        use base64::Engine;
        let raw = super::xoauth2("someuser@example.com", "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg");
        assert_eq!(
            base64::engine::general_purpose::STANDARD.encode(raw),
            "dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ=="
        );
    }
}
