//! A real OAuth 2.0 authorization server for the XOAUTH2 tests: panva's oidc-provider (npm,
//! installed by tests/run.sh), run by `tests/node/oauth_provider.mjs`, which says what it is
//! set up to do. It plays Google's or Microsoft's token endpoint as strictly as they are:
//! refresh tokens rotate on every use and a used one presented again revokes the whole grant;
//! the test mail servers check access tokens at its introspection endpoint. Missing software
//! fails the test with what to do; it never skips.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

pub struct OAuthProvider {
    pub issuer: String,
    /// The refresh token of the grant authorised at start (the one an operator puts in the
    /// config).
    pub refresh_token: String,
    http: reqwest::Client,
    process: Child,
    _dir: tempfile::TempDir,
}

impl Drop for OAuthProvider {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

impl OAuthProvider {
    /// The provider, with the client `switchboard` authorised once for `account`.
    pub async fn start(account: &str) -> OAuthProvider {
        let prefix = std::env::var("SB_OIDC_PROVIDER")
            .expect("SB_OIDC_PROVIDER: the npm prefix holding oidc-provider (tests/run.sh installs it and sets it)");
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("provider.log");
        let script = format!("{}/tests/node/oauth_provider.mjs", env!("CARGO_MANIFEST_DIR"));
        let mut process = Command::new("node")
            .arg(&script)
            .arg(account)
            .env("SB_OIDC_PROVIDER", prefix)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run node {script}: {e} (tests/run.sh installs Node.js)"));
        let mut line = String::new();
        let stdout = process.stdout.take().unwrap();
        // The script prints its line once it has authorised the client, or exits with the reason.
        let _ = BufReader::new(stdout).read_line(&mut line);
        let Ok(started) = serde_json::from_str::<Value>(&line) else {
            panic!("the OAuth provider did not start: {line}\n{}", std::fs::read_to_string(&log).unwrap_or_default());
        };
        OAuthProvider {
            issuer: started["issuer"].as_str().unwrap().to_owned(),
            refresh_token: started["refresh_token"].as_str().unwrap().to_owned(),
            http: reqwest::Client::new(),
            process,
            _dir: dir,
        }
    }

    /// The RFC 7662 endpoint, with the mail servers' client credentials in the URL (Basic).
    pub fn introspection_url(&self) -> String {
        let host = self.issuer.trim_start_matches("http://");
        format!("http://mailserver:mailserver-secret@{host}/token/introspection")
    }

    /// The lines of a `[channels.*.oauth2]` table for the grant whose refresh token is given.
    pub fn grant(&self, refresh_token: &str) -> String {
        self.grant_with(&format!("refresh_token = \"{refresh_token}\""))
    }

    /// The lines of a `[channels.*.oauth2]` table with `refresh_token` (a line naming it, or
    /// none) and the provider's authorization and device endpoints.
    pub fn grant_with(&self, refresh_token: &str) -> String {
        let issuer = &self.issuer;
        format!(
            "client_id = \"switchboard\"\nclient_secret = \"switchboard-secret\"\ntoken_url = \"{issuer}/token\"\n{refresh_token}\nscopes = [\"openid\", \"offline_access\", \"mail\"]\nauthorize_url = \"{issuer}/auth\"\ndevice_url = \"{issuer}/device/auth\"\n"
        )
    }

    /// The user's browser opening `url` (see the script): signs in, enters `user_code` if a
    /// device code is asked for, consents (or cancels, with `deny`). `{"location": …}` at the
    /// redirect back to the app, or `{"page": …}` where the provider's pages end.
    pub async fn browse(&self, url: &str, user_code: Option<&str>, deny: bool) -> Value {
        let mut query = vec![("url", url)];
        query.extend(user_code.map(|c| ("user_code", c)));
        if deny {
            query.push(("deny", "1"));
        }
        self.browser(&query).await
    }

    /// The user's browser opening the authorization request `url`, signed in to the provider
    /// as `account` (not necessarily the mailbox's), and consenting.
    pub async fn browse_as(&self, url: &str, account: &str) -> Value {
        self.browser(&[("url", url), ("as", account)]).await
    }

    async fn browser(&self, query: &[(&str, &str)]) -> Value {
        let encoded: Vec<String> = query
            .iter()
            .map(|(k, v)| format!("{k}={}", url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>()))
            .collect();
        let answer = self.http.get(format!("{}/_test/browse?{}", self.issuer, encoded.join("&"))).send().await.unwrap();
        assert_eq!(answer.status(), 200);
        answer.json().await.unwrap()
    }

    /// What the token endpoint did, in order: `{"grant_type", "ok", "error", "detail"}`, and
    /// `{"revoked": true}` where a grant was revoked.
    pub async fn grants(&self) -> Vec<Value> {
        let answer = self.http.get(format!("{}/_test/grants", self.issuer)).send().await.unwrap();
        answer.json().await.unwrap()
    }

    /// How many refreshes the token endpoint granted and refused.
    pub async fn refreshes(&self) -> (usize, usize) {
        let grants = self.grants().await;
        let refreshes = grants.iter().filter(|g| g["grant_type"] == "refresh_token");
        let granted = refreshes.clone().filter(|g| g["ok"] == true).count();
        (granted, refreshes.count() - granted)
    }

    /// Revokes the grant `refresh_token` belongs to (RFC 7009), as the user or an admin does at
    /// the provider (a password change, "remove access").
    pub async fn revoke(&self, refresh_token: &str) {
        // Token values are URL-safe base64: nothing in the form needs escaping.
        let form = format!(
            "token={refresh_token}&token_type_hint=refresh_token&client_id=switchboard&client_secret=switchboard-secret"
        );
        let answer = self
            .http
            .post(format!("{}/token/revocation", self.issuer))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "{}", answer.text().await.unwrap());
    }

    /// The operator authorising the app again: a new grant's refresh token.
    pub async fn authorise_again(&self) -> String {
        let answer = self.http.get(format!("{}/_test/authorise", self.issuer)).send().await.unwrap();
        let answer: Value = answer.json().await.unwrap();
        answer["refresh_token"].as_str().unwrap().to_owned()
    }
}
