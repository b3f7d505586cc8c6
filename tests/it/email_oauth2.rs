//! XOAUTH2 against a real OAuth 2.0 authorization server (`oauth_provider.rs`: oidc-provider,
//! as strict as Microsoft's), and `switchboard oauth2`, which authorises the app for a mailbox
//! through that server's own sign-in and consent pages, in the browser flow and the device flow.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use serde_json::json;

use crate::email::{count, loop_until, mail_text, send_to_ann};
use crate::harness::*;
use crate::mail_servers::*;
use crate::oauth_provider::OAuthProvider;

/// XOAUTH2 against a real authorization server (oidc-provider) as strict as Microsoft's: every
/// refresh rotates the refresh token, and presenting a used one again revokes the whole grant.
/// IMAP and SMTP share one grant; a restart must use the rotation it stored, not the config's
/// token (presenting that one again would kill the grant: Zammad's users re-authorise every 90
/// days for less).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xoauth2_on_a_real_provider_and_a_rotated_refresh_token_survives_a_restart() {
    let provider = OAuthProvider::start(SUPPORT.0).await;
    let mail = MailServers::start_oauth2(&provider.introspection_url()).await;
    let config = mail.channel_on_oauth2("support", &provider.grant(&provider.refresh_token));
    assert!(!config.contains(SUPPORT.1), "no password anywhere: {config}");

    let server = TestServer::start(&config).await;
    mail.append(SUPPORT, &mail_text("ann@example.org", "Via XOAUTH2", "oauth-1@example.org", "", "hello")).await;
    loop_until(|| async { (count(&server).await == 1).then_some(()) }).await;
    let reply = json!({"channel": "support", "to": ANN.0, "subject": "OAuth", "text": "sent with XOAUTH2"});
    let (_, delivered) = send_to_ann(&server, &mail, reply).await;
    assert!(String::from_utf8_lossy(&delivered).contains("sent with XOAUTH2"));
    assert_eq!(mail.smtp_log().matches("AUTH XOAUTH2 ok support@example.com").count(), 1, "{}", mail.smtp_log());
    // One refresh for IMAP's login, one for SMTP's; each token is kept until it nears expiry.
    assert_eq!(provider.refreshes().await, (2, 0), "{:?}", provider.grants().await);
    let dir = server.stop().await;

    let server = TestServer::start_in(dir, &config).await;
    mail.append(SUPPORT, &mail_text("ann@example.org", "After restart", "oauth-2@example.org", "", "again")).await;
    loop_until(|| async { (count(&server).await == 2).then_some(()) }).await;
    let reply = json!({"channel": "support", "to": ANN.0, "subject": "OAuth again", "text": "after a restart"});
    let (_, delivered) = send_to_ann(&server, &mail, reply).await;
    assert!(String::from_utf8_lossy(&delivered).contains("after a restart"));
    assert_eq!(provider.refreshes().await, (4, 0), "no token presented twice: {:?}", provider.grants().await);
    assert!(!provider.grants().await.iter().any(|g| g["revoked"] == true));
    let (code, ready) = server.request(reqwest::Method::GET, "/readyz", None, None).await;
    assert_eq!(code, 200, "{ready}");
    server.stop().await;
}

/// The grant dies at the provider (the user removed the app's access, an admin revoked it, a
/// password change). The access token the gateway holds dies with it: the next login is
/// refused, and the gateway must not keep presenting that token until it would have expired
/// (an hour of "AUTHENTICATE failed") but ask the provider, and say plainly what to do. A new
/// refresh token in the config, reloaded, brings the channel back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_revoked_at_the_provider_is_reported_and_a_new_refresh_token_brings_the_channel_back() {
    let provider = OAuthProvider::start(SUPPORT.0).await;
    let mail = MailServers::start_oauth2(&provider.introspection_url()).await;
    let helpdesk = Receiver::start().await;
    let hook = webhook("h", &helpdesk, "[\"1s\"]");
    let config =
        |refresh_token: &str| format!("{}{hook}", mail.channel_on_oauth2("support", &provider.grant(refresh_token)));
    let mut server = TestServer::start(&config(&provider.refresh_token)).await;
    mail.append(SUPPORT, &mail_text("ann@example.org", "Before", "revoke-1@example.org", "", "x")).await;
    loop_until(|| async { (count(&server).await == 1).then_some(()) }).await;

    provider.revoke(&provider.refresh_token).await;
    mail.kick(SUPPORT.0);
    // The first report is the provider's answer, not the mail server's bare refusal.
    let event = helpdesk.expect_event("channel.error").await;
    let message = event["data"]["error"]["message"].as_str().unwrap();
    assert!(message.contains("invalid_grant") && message.contains("authorise"), "{event}");
    let (code, ready) = server.request(reqwest::Method::GET, "/readyz", None, None).await;
    assert_eq!(code, 503, "{ready}");
    let check = ready["checks"]["channel:support"].as_str().unwrap();
    assert!(check.starts_with("error: imap_auth: ") && check.contains("invalid_grant"), "{ready}");
    assert!(provider.refreshes().await.1 >= 1, "the provider was asked: {:?}", provider.grants().await);

    let renewed = provider.authorise_again().await;
    server.reload(&config(&renewed)).await;
    mail.append(SUPPORT, &mail_text("ann@example.org", "After", "revoke-2@example.org", "", "y")).await;
    loop_until(|| async { (count(&server).await == 2).then_some(()) }).await;
    let (code, ready) = server.request(reqwest::Method::GET, "/readyz", None, None).await;
    assert_eq!(code, 200, "{ready}");
    server.stop().await;
}

/// `switchboard oauth2 …` running, its stderr collected line by line.
struct Authorising {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Authorising {
    fn start(args: &[&str]) -> Authorising {
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (stderr, collected) = (child.stderr.take().unwrap(), lines.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                collected.lock().unwrap().push(line);
            }
        });
        Authorising { child, lines }
    }

    /// The first line of stderr that `wanted` picks, once printed.
    async fn line(&self, wanted: impl Fn(&str) -> bool) -> String {
        loop_until(|| async { self.lines.lock().unwrap().iter().find(|l| wanted(l)).cloned() }).await
    }

    /// The user, on another device, entering the code the device flow printed at the page it
    /// names; the provider's last page.
    async fn enter_device_code(&self, provider: &OAuthProvider) -> serde_json::Value {
        let line = self.line(|l| l.contains(" and enter the code ")).await;
        let (page, code) = line.split_once(" and enter the code ").unwrap();
        let page = page.trim_start_matches("Open ").split(' ').next().unwrap();
        provider.browse(page, Some(code.trim()), false).await
    }

    /// Its exit status, stdout and stderr, once it has ended.
    async fn end(mut self) -> (bool, String, String) {
        let ended = tokio::time::timeout(std::time::Duration::from_secs(60), async {
            loop {
                if let Some(status) = self.child.try_wait().unwrap() {
                    return status;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        });
        let status = ended.await.unwrap_or_else(|_| panic!("still running: {:?}", self.lines.lock().unwrap()));
        let mut stdout = String::new();
        std::io::Read::read_to_string(&mut self.child.stdout.take().unwrap(), &mut stdout).unwrap();
        // The reader thread ends with the pipe; give it the last lines.
        let stderr = loop_until(|| async {
            let lines = self.lines.lock().unwrap().join("\n");
            (Arc::strong_count(&self.lines) == 1).then_some(lines)
        })
        .await;
        (status.success(), stdout, stderr)
    }
}

/// The gateway started on `config`, once it has imported a mail appended to the mailbox: its
/// logins work.
async fn gateway_imports_a_mail(mail: &MailServers, config: &str, subject: &str, message_id: &str) -> TestServer {
    let server = TestServer::start(config).await;
    mail.append(SUPPORT, &mail_text("ann@example.org", subject, message_id, "", "x")).await;
    loop_until(|| async { (count(&server).await == 1).then_some(()) }).await;
    server
}

/// The config of a channel on XOAUTH2 whose grant names `refresh_token` (a line), written to
/// `dir`/switchboard.toml (mode 0640, as the package installs it); the text and the path.
fn config_file(
    dir: &std::path::Path,
    mail: &MailServers,
    provider: &OAuthProvider,
    refresh_token: &str,
) -> (String, String) {
    let text = mail.channel_on_oauth2("support", &provider.grant_with(refresh_token));
    let path = dir.join("switchboard.toml");
    std::fs::write(&path, &text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    (text, path.display().to_string())
}

/// The operator, with no refresh token yet, runs `switchboard oauth2 support`, opens the address
/// it prints, signs in and consents at the provider; the browser comes back to the command's
/// loopback listener, which exchanges the code (with its PKCE verifier) and writes the refresh
/// token into the file the config names. The gateway then logs in to IMAP with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchboard_oauth2_authorises_in_a_browser_and_the_gateway_logs_in_with_the_token() {
    let provider = OAuthProvider::start(SUPPORT.0).await;
    let mail = MailServers::start_oauth2(&provider.introspection_url()).await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("support.token");
    let (config, path) =
        config_file(dir.path(), &mail, &provider, &format!("refresh_token_file = \"{}\"", token_file.display()));
    let checked = Command::new(env!("CARGO_BIN_EXE_switchboard")).args(["check", "--config", &path]).output().unwrap();
    let said = String::from_utf8_lossy(&checked.stderr);
    assert!(!checked.status.success() && said.contains("refresh_token_file: cannot read"), "no token yet: {said}");

    let cli = Authorising::start(&["oauth2", "support", "--config", &path]);
    let address = cli.line(|l| l.starts_with("http://")).await;
    for part in
        ["response_type=code", "code_challenge_method=S256", "login_hint=support%40example.com", "prompt=consent"]
    {
        assert!(address.contains(part), "{part} in {address}");
    }
    let back = provider.browse(&address, None, false).await;
    let location = back["location"].as_str().unwrap();
    assert!(location.starts_with("http://127.0.0.1:") && location.contains("code="), "{back}");
    let page = reqwest::get(location).await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("you can close this page"));
    let (ok, stdout, stderr) = cli.end().await;
    assert!(ok, "{stderr}");
    assert!(stdout.is_empty(), "the token is in the file, not on the screen: {stdout}");
    assert!(
        stderr.contains(&format!("The refresh token is in {}.", token_file.display())) && stderr.contains("Reload"),
        "{stderr}"
    );
    // Checked before it was kept: both servers the grant serves take the token it came with.
    let imap = format!("With the new token, imap 127.0.0.1:{}: ok, logged in as {}", mail.imap_port, SUPPORT.0);
    let smtp = format!("With the new token, smtp 127.0.0.1:{}: ok, logged in as {}", mail.smtp_port, SUPPORT.0);
    assert!(stderr.contains(&imap) && stderr.contains(&smtp), "{stderr}");
    assert!(stderr.contains("With the new token, imap folder \"INBOX\": ok"), "{stderr}");
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640, "as the config file: readable by its group (the service), never by others");

    let server = gateway_imports_a_mail(&mail, &config, "After authorising", "cli-1@example.org").await;
    let exchanges: Vec<_> = provider.grants().await.into_iter().filter(|g| g["ok"] == true).collect();
    assert_eq!(exchanges.iter().filter(|g| g["grant_type"] == "authorization_code").count(), 2, "{exchanges:?}");
    assert!(exchanges.iter().any(|g| g["grant_type"] == "refresh_token"), "{exchanges:?}");
    server.stop().await;
}

/// `--device`: the user enters the printed code at the provider's page on any device; the
/// command polls the token endpoint until they have (RFC 8628) and writes the token where
/// `--write` says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchboard_oauth2_device_flow_writes_a_token_the_gateway_logs_in_with() {
    let provider = OAuthProvider::start(SUPPORT.0).await;
    let mail = MailServers::start_oauth2(&provider.introspection_url()).await;
    let dir = tempfile::tempdir().unwrap();
    let (_, path) = config_file(dir.path(), &mail, &provider, "");
    let token_file = dir.path().join("device.token");
    let written = token_file.display().to_string();
    let cli = Authorising::start(&["oauth2", "support", "--device", "--config", &path, "--write", &written]);
    let done = cli.enter_device_code(&provider).await;
    assert!(done["page"].as_str().unwrap().contains("Sign-in Success"), "{done}");
    let (ok, _, stderr) = cli.end().await;
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains(&format!("refresh_token_file = \"{written}\"")),
        "says what to put in the config: {stderr}"
    );

    let config =
        mail.channel_on_oauth2("support", &provider.grant_with(&format!("refresh_token_file = \"{written}\"")));
    let server = gateway_imports_a_mail(&mail, &config, "After the device flow", "cli-2@example.org").await;
    let grants = provider.grants().await;
    assert!(
        grants.iter().any(|g| g["grant_type"] == "urn:ietf:params:oauth:grant-type:device_code" && g["ok"] == true),
        "{grants:?}"
    );
    server.stop().await;
}

/// The user cancels at the provider, in a browser on another machine: the last page's address,
/// pasted into the command, carries the refusal. The command says so and fails; no file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchboard_oauth2_reports_a_refusal_pasted_from_another_machines_browser() {
    let provider = OAuthProvider::start(SUPPORT.0).await;
    let mail = MailServers::start_oauth2(&provider.introspection_url()).await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("support.token");
    let (_, path) =
        config_file(dir.path(), &mail, &provider, &format!("refresh_token_file = \"{}\"", token_file.display()));
    let mut cli = Authorising::start(&["oauth2", "support", "--config", &path]);
    let address = cli.line(|l| l.starts_with("http://")).await;
    let back = provider.browse(&address, None, true).await;
    let location = back["location"].as_str().unwrap();
    let mut stdin = cli.child.stdin.take().unwrap();
    writeln!(stdin, "not an address").unwrap();
    cli.line(|l| l.contains("That is not the address of the last page")).await;
    writeln!(stdin, "{location}").unwrap();
    let (ok, _, stderr) = cli.end().await;
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains("the provider refused the authorisation: access_denied (End-User aborted interaction)"),
        "{stderr}"
    );
    assert!(!token_file.exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "only the config: no temporary file left");
}

/// The commonest mistake: the browser was already signed in to the provider as someone else (an
/// admin, a personal account), and the grant is that account's. The provider is content; the
/// mail server refuses the token for the mailbox. The command logs in with the token before it
/// keeps it, says whom to sign in as, and leaves the working token in place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchboard_oauth2_keeps_no_grant_of_another_account_than_the_mailboxs() {
    let provider = OAuthProvider::start(SUPPORT.0).await;
    let mail = MailServers::start_oauth2(&provider.introspection_url()).await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("support.token");
    std::fs::write(&token_file, format!("{}\n", provider.refresh_token)).unwrap();
    let (_, path) =
        config_file(dir.path(), &mail, &provider, &format!("refresh_token_file = \"{}\"", token_file.display()));
    let cli = Authorising::start(&["oauth2", "support", "--config", &path]);
    let address = cli.line(|l| l.starts_with("http://")).await;
    let back = provider.browse_as(&address, "admin@example.com").await;
    let location = back["location"].as_str().unwrap();
    assert!(location.contains("code="), "the provider granted access: {back}");
    assert_eq!(reqwest::get(location).await.unwrap().status(), 200);
    let (ok, stdout, stderr) = cli.end().await;
    assert!(!ok, "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    let refused = format!("imap 127.0.0.1:{} refused the new token: login refused", mail.imap_port);
    assert!(stderr.contains(&refused), "{stderr}");
    assert!(
        stderr.contains(&format!("sign in as {}", SUPPORT.0)) && stderr.contains("Nothing was written"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(&token_file).unwrap().trim(),
        provider.refresh_token,
        "the old grant's token stays"
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2, "the config and the token: no temporary file");
}

/// `switchboard check --connect` on a channel on OAuth2 runs beside the service that owns the
/// grant, so it must not refresh it (a rotation it did not store would kill the grant). It
/// reaches both servers without logging in, sees that SMTP offers XOAUTH2, and asks the token
/// endpoint to refresh a made-up token: `invalid_grant` shows the client taken; a wrong client
/// secret (Azure's expire) is named. The real grant is untouched: the gateway logs in after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_connect_on_oauth2_asks_about_the_client_and_leaves_the_grant_alone() {
    let provider = OAuthProvider::start(SUPPORT.0).await;
    let mail = MailServers::start_oauth2(&provider.introspection_url()).await;
    let config = mail.channel_on_oauth2("support", &provider.grant(&provider.refresh_token));
    let (code, out) = check_connect(&config);
    assert_eq!(code, 0, "{out}");
    let token_url = format!("{}/token", provider.issuer);
    for line in [
        format!("support: imap 127.0.0.1:{}: ok, reached; XOAUTH2 login not tried: the running service refreshes and stores its tokens", mail.imap_port),
        format!("support: smtp 127.0.0.1:{}: ok, reached, offers XOAUTH2; XOAUTH2 login not tried", mail.smtp_port),
        format!("support: oauth2 {token_url}: ok, client switchboard not refused"),
    ] {
        assert!(out.contains(&line), "no {line:?} in:\n{out}");
    }
    assert_eq!(out.matches("support: oauth2 ").count(), 1, "IMAP and SMTP share the grant: one question: {out}");
    let asked: Vec<_> =
        provider.grants().await.into_iter().filter(|g| g["grant_type"] != "authorization_code").collect();
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(
        (asked[0]["grant_type"].as_str(), asked[0]["error"].as_str()),
        (Some("refresh_token"), Some("invalid_grant"))
    );

    let wrong_secret = config.replace("client_secret = \"switchboard-secret\"", "client_secret = \"expired-secret\"");
    let (code, out) = check_connect(&wrong_secret);
    assert_eq!(code, 1, "{out}");
    let line = out.lines().find(|l| l.starts_with("support: oauth2 ")).unwrap_or_default();
    assert!(
        line.contains(": FAILED, ")
            && line.contains("invalid_client")
            && line.contains("check client_id and client_secret"),
        "{out}"
    );

    let server = gateway_imports_a_mail(&mail, &config, "After the check", "check-1@example.org").await;
    assert_eq!(provider.refreshes().await.0, 1, "the grant refreshed once, by the gateway");
    assert!(!provider.grants().await.iter().any(|g| g["revoked"] == true));
    server.stop().await;

    let login_only = MailServers::start_with_smtp_auth("LOGIN").await;
    let (code, out) = check_connect(&login_only.channel_on_oauth2("support", &provider.grant(&provider.refresh_token)));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "support: smtp 127.0.0.1:{}: FAILED, reached, but it does not offer AUTH XOAUTH2",
            login_only.smtp_port
        )),
        "{out}"
    );
}

/// A self-hosted identity provider (Keycloak, Authentik, an ADFS) often has a certificate of the
/// organisation's own CA. Without `ca_file` in the grant's table, `check --connect` and the
/// channel's status name the certificate as the problem; with it, reloaded, the gateway
/// refreshes over TLS through that CA and logs in. The provider sits behind nginx serving HTTPS
/// with a certificate of a test CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_endpoint_behind_a_private_ca_is_reached_with_the_grants_ca_file() {
    let provider = OAuthProvider::start(SUPPORT.0).await;
    let mail = MailServers::start_oauth2(&provider.introspection_url()).await;
    let certificates = tempfile::tempdir().unwrap();
    make_certificates(certificates.path());
    let proxy = Nginx::start_tls(&provider.issuer, certificates.path()).await;
    let token_url = format!("{}/token", proxy.url);
    let config = |ca_line: &str| {
        let direct = format!("token_url = \"{}/token\"\n", provider.issuer);
        let grant = provider.grant(&provider.refresh_token);
        assert!(grant.contains(&direct), "{grant}");
        mail.channel_on_oauth2("support", &grant.replace(&direct, &format!("token_url = \"{token_url}\"\n{ca_line}")))
    };
    let without_ca = config("");
    let with_ca = config(&format!("ca_file = \"{}\"\n", certificates.path().join("ca.pem").display()));

    let (code, out) = check_connect(&without_ca);
    assert_eq!(code, 1, "{out}");
    let line = out.lines().find(|l| l.starts_with("support: oauth2 ")).unwrap_or_default();
    assert!(
        line.starts_with(&format!("support: oauth2 {token_url}: FAILED, ")) && line.contains("needs ca_file"),
        "{out}"
    );
    let (code, out) = check_connect(&with_ca);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("support: oauth2 {token_url}: ok, client switchboard not refused")), "{out}");

    let mut server = TestServer::start(&without_ca).await;
    let status = loop_until(|| async {
        let (_, ready) = server.request(reqwest::Method::GET, "/readyz", None, None).await;
        let check = ready["checks"]["channel:support"].as_str().unwrap_or_default().to_owned();
        check.starts_with("error: ").then_some(check)
    })
    .await;
    assert!(status.contains("UnknownIssuer") && status.contains("needs ca_file"), "{status}");
    // The one refused refresh is the check's made-up token; the gateway's never reached it.
    assert_eq!(provider.refreshes().await, (0, 1), "{:?}", provider.grants().await);

    server.reload(&with_ca).await;
    mail.append(SUPPORT, &mail_text("ann@example.org", "Through the CA", "ca-1@example.org", "", "x")).await;
    loop_until(|| async { (count(&server).await == 1).then_some(()) }).await;
    assert_eq!(provider.refreshes().await, (1, 1), "{:?}", provider.grants().await);
    let (code, ready) = server.request(reqwest::Method::GET, "/readyz", None, None).await;
    assert_eq!(code, 200, "{ready}");
    server.stop().await;
}

/// A refresh_token_file under `$CREDENTIALS_DIRECTORY` is a systemd credential: a copy the unit
/// gets at start, not a file the command can write. The token goes to stdout, with where it
/// belongs and that a restart (not a reload) takes it in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchboard_oauth2_says_where_a_systemd_credentials_token_goes() {
    let provider = OAuthProvider::start(SUPPORT.0).await;
    let mail = MailServers::start_oauth2(&provider.introspection_url()).await;
    let dir = tempfile::tempdir().unwrap();
    let (_, path) =
        config_file(dir.path(), &mail, &provider, "refresh_token_file = \"$CREDENTIALS_DIRECTORY/support-token\"");
    let cli = Authorising::start(&["oauth2", "support", "--device", "--config", &path]);
    cli.enter_device_code(&provider).await;
    let (ok, stdout, stderr) = cli.end().await;
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains(
            "is a systemd credential: put the refresh token that follows into the file its LoadCredential= line names"
        ) && stderr.contains("systemctl restart switchboard"),
        "{stderr}"
    );
    let token = stdout.trim();
    assert!(!token.is_empty() && !token.contains(char::is_whitespace), "one token on stdout: {stdout:?}");
    let config = mail.channel_on_oauth2("support", &provider.grant(token));
    let server = gateway_imports_a_mail(&mail, &config, "From the credential", "cred-1@example.org").await;
    server.stop().await;
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "nothing written beside the config");
}

/// A mail server that refuses every token (here: the channel's username is not the grant's
/// account) gets one new token per attempt, not two: a token the provider has just issued that
/// the server refuses is not a reason to ask the provider again at once, as a held token that
/// died before its time is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_refusing_every_token_costs_one_refresh_per_attempt() {
    let provider = OAuthProvider::start("admin@example.com").await;
    let mail = MailServers::start_oauth2(&provider.introspection_url()).await;
    let helpdesk = Receiver::start().await;
    let hook = webhook_for("h", &helpdesk, "[\"1s\"]", "[\"channel.*\"]");
    let config = format!("{}{hook}", mail.channel_on_oauth2("support", &provider.grant(&provider.refresh_token)));
    let server = TestServer::start(&config).await;
    let first = helpdesk.expect_event("channel.error").await;
    let message = first["data"]["error"]["message"].as_str().unwrap();
    assert!(message.contains("login refused"), "{first}");
    assert_eq!(provider.refreshes().await, (1, 0), "one token for the first attempt: {:?}", provider.grants().await);
    server.stop().await;
}
