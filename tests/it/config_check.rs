//! `switchboard check` with the real binary: the example passes; broken configs name each key.

use std::process::Command;

fn check(config: &str) -> (i32, String) {
    check_with_env(config, &[])
}

/// `switchboard check` on `config` written to a temp file, with extra environment variables.
fn check_with_env(config: &str, envs: &[(&str, &str)]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchboard.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["check", "--config"])
        .arg(&path)
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    )
}

#[test]
fn the_example_config_passes() {
    let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/switchboard.toml")).unwrap();
    let (code, out) = check(&example);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ok (1 channel(s), 1 webhook consumer(s), 1 token(s))"), "{out}");
}

#[test]
fn broken_configs_name_every_key() {
    let broken = r#"
[server]
listen = "not-an-address"
[storage]
path = "./var"
colour = "blue"
[[tokens]]
name = "a"
token = "short"
scopes = []
[[tokens]]
name = "b"
token_file = "/nonexistent/token"
scopes = ["send"]
[[channels]]
id = "Web Chat"
type = "api"
outbound_url = "ftp://example.com"
[channels.limits]
per_second = 0
[[channels]]
id = "sms"
type = "pigeon"
[[channels]]
id = "mail"
type = "email"
address = "support@example.com"
aliases = ["sales@example.com", "no-at-sign", "info+x@example.com"]
max_mail_bytes = 1000
authserv_id = "mx.example.com; dmarc=pass"
smime_ca_file = "/nonexistent/smime-ca.pem"
smime_key_file = "/etc/hostname"
openpgp_keyring_file = "/etc/hostname"
openpgp_secret_key_file = "/etc/hostname"
smime_recipients_file = "/etc/hostname"
[channels.smtp]
host = "smtp.example.com"
idle_timeout = "10m"
ca_file = "/etc/hostname"
[[channels]]
id = "mail2"
type = "email"
address = "help@example.com"
openpgp_encrypt = "always"
smime_encrypt = "when_possible"
[channels.smtp]
host = "smtp.example.com"
[[webhooks]]
id = "h"
url = "not a url"
secret = "whsec_tooshort"
events = ["message.recieved"]
max_body_bytes = 1000
ca_file = "/nonexistent/ca.pem"
channels = ["mail", "nope"]
"#;
    let (code, out) = check(broken);
    assert_eq!(code, 1, "{out}");
    for expected in [
        "server.listen: ",
        "storage.colour: unknown key",
        "tokens[0].token: must be at least 16 characters",
        "tokens[0].scopes: must grant at least one",
        "tokens[1].token_file: cannot read /nonexistent/token",
        "channels[0].id: `Web Chat` must be",
        "channels[0].outbound_url: `ftp://example.com` must be an http",
        "channels[0].limits.per_second: must be a number greater than 0",
        "channels[0].secret: is required with outbound_url",
        "channels[1].type: unknown channel type `pigeon`",
        "channels[2].smtp.idle_timeout: must be at most 5m",
        "channels[2].aliases[1]: `no-at-sign` is not a mail address",
        "channels[2].aliases[2]: must not contain `+`",
        "channels[2].max_mail_bytes: must be at least 16384",
        "channels[2].authserv_id: `mx.example.com; dmarc=pass` is not an authserv-id",
        "channels[2].smime_ca_file: cannot read /nonexistent/smime-ca.pem",
        "channels[2].smime_certificate_file: is required with smime_key",
        "channels[2].openpgp_keyring_file: /etc/hostname: cannot be read as OpenPGP public keys",
        "channels[2].openpgp_secret_key_file: /etc/hostname: holds no ASCII-armored OpenPGP secret key",
        "channels[2].smime_recipients_file: /etc/hostname holds no PEM certificate",
        "channels[3].smime_encrypt: needs smime_certificate_file",
        "webhooks[0].url: ",
        "webhooks[0].secret: must be `whsec_`",
        "webhooks[0].events[0]: `message.recieved` matches no event type",
        "webhooks[0].max_body_bytes: must be at least 4096",
        "webhooks[0].ca_file: cannot read /nonexistent/ca.pem",
        "webhooks[0].channels[1]: no channel `nope` is configured",
        "channels[2].smtp.ca_file: /etc/hostname holds no PEM certificate",
    ] {
        assert!(out.lines().any(|l| l.starts_with(expected)), "missing `{expected}` in:\n{out}");
    }
}

#[test]
fn run_refuses_a_broken_config_and_a_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[server]\nlisten = 5\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard")).args(["run", "--config"]).arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("server.listen: ") && err.contains("refusing to start"), "{err}");

    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["check", "--config", "/nonexistent.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("config: cannot read /nonexistent.toml"));

    let out = Command::new(env!("CARGO_BIN_EXE_switchboard")).args(["check", "--config"]).arg(&path).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("server.listen"));
    std::fs::write(&path, "[server\nlisten=").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard")).args(["check", "--config"]).arg(&path).output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not valid TOML"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn example() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/switchboard.toml")).unwrap()
}

#[test]
fn environment_overrides_the_file() {
    let (code, out) = check_with_env(&example(), &[("SWITCHBOARD_SERVER__PUBLIC_URL", "gopher://nope")]);
    assert_eq!(code, 1);
    assert!(out.contains("server.public_url: `gopher://nope`"), "{out}");
}

/// The systemd unit names the file with `SWITCHBOARD_CONFIG` (no `--config`): that variable
/// names the file and is no config key.
#[test]
fn switchboard_config_names_the_file_and_is_no_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchboard.toml");
    std::fs::write(&path, example()).unwrap();
    for command in ["check", "run"] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .arg(command)
            .env("SWITCHBOARD_CONFIG", &path)
            .env("SWITCHBOARD_SERVER__LISTEN", format!("127.0.0.1:{}", crate::harness::free_port()))
            .env("SWITCHBOARD_STORAGE__PATH", dir.path().join("var"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        if command == "run" {
            // Running, not refused: still up after a moment, then stopped like systemd does.
            std::thread::sleep(std::time::Duration::from_millis(1500));
            assert!(child.try_wait().unwrap().is_none(), "`run` exited: {:?}", child.wait_with_output().unwrap());
            Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
        }
        let out = child.wait_with_output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{command}: {text}");
        if command == "check" {
            assert!(text.contains(&format!("{}: ok", path.display())), "{text}");
        }
    }
}

#[test]
fn a_stray_environment_variable_is_named() {
    let (code, out) = check_with_env(&example(), &[("SWITCHBOARD_COLOUR", "blue")]);
    assert_eq!(code, 1);
    assert!(out.contains("colour: unknown key (set by the environment variable SWITCHBOARD_COLOUR)"), "{out}");
}

#[test]
fn secrets_come_inline_from_files_or_from_named_environment_variables() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "a-token-from-a-file-0001\n").unwrap();
    let config = format!(
        r#"
[[tokens]]
name = "file"
token_file = "{}"
scopes = ["read"]
[[tokens]]
name = "env"
token_env = "SB_TEST_TOKEN"
scopes = ["read"]
[[webhooks]]
id = "h"
url = "http://127.0.0.1:9/events"
secret_env = "SB_TEST_WEBHOOK_SECRET"
"#,
        token_file.display()
    );
    let path = dir.path().join("switchboard.toml");
    std::fs::write(&path, &config).unwrap();
    let run = |envs: &[(&str, &str)]| {
        let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(["check", "--config"])
            .arg(&path)
            .envs(envs.iter().copied())
            .output()
            .unwrap();
        (out.status.code().unwrap(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (code, err) = run(&[
        ("SB_TEST_TOKEN", "a-token-from-the-env-0002"),
        ("SB_TEST_WEBHOOK_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, err) = run(&[("SB_TEST_TOKEN", "a-token-from-the-env-0002")]);
    assert_eq!(code, 1);
    assert!(
        err.contains("webhooks[0].secret_env: the environment variable SB_TEST_WEBHOOK_SECRET is not set"),
        "{err}"
    );
}

#[test]
fn secret_files_can_live_in_the_systemd_credentials_directory() {
    let credentials = tempfile::tempdir().unwrap();
    std::fs::write(credentials.path().join("helpdesk-token"), "a-token-from-credentials-03\n").unwrap();
    let config =
        "[[tokens]]\nname = \"c\"\ntoken_file = \"$CREDENTIALS_DIRECTORY/helpdesk-token\"\nscopes = [\"read\"]\n";
    let (code, out) = check_with_env(config, &[("CREDENTIALS_DIRECTORY", credentials.path().to_str().unwrap())]);
    assert_eq!(code, 0, "{out}");
    let braced = config.replace("$CREDENTIALS_DIRECTORY", "${CREDENTIALS_DIRECTORY}");
    let (code, out) = check_with_env(&braced, &[("CREDENTIALS_DIRECTORY", credentials.path().to_str().unwrap())]);
    assert_eq!(code, 0, "{out}");
    // Outside systemd the variable is missing, and the problem says so.
    let path = credentials.path().join("switchboard.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["check", "--config"])
        .arg(&path)
        .env_remove("CREDENTIALS_DIRECTORY")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("tokens[0].token_file: $CREDENTIALS_DIRECTORY/helpdesk-token: CREDENTIALS_DIRECTORY is not set"),
        "{err}"
    );
}

#[test]
fn the_commented_email_example_is_valid() {
    let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/switchboard.toml")).unwrap();
    let start = example.find("# --- email channel example ---").expect("the email example block");
    let end = example.find("# --- end ---").expect("its end marker");
    let block: String = example[start..end]
        .lines()
        .skip(1)
        .filter(|l| !l.starts_with("# #"))
        .map(|l| format!("{}\n", l.strip_prefix("# ").unwrap_or(l)))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchboard.toml");
    std::fs::write(&path, format!("{example}\n{block}")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["check", "--config"])
        .arg(&path)
        .env("SUPPORT_IMAP_PASSWORD", "imap-secret")
        .env("SUPPORT_SMTP_PASSWORD", "smtp-secret")
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{text}\n{block}");
    assert!(text.contains("2 channel(s)"), "{text}");
}

/// An `smime_ca_file` whose certificate cannot be a trust anchor (here, PEM around bytes that are
/// no certificate) is named by `switchboard check`, not skipped at every signed mail; one
/// that can (the test CA of `make_certificates`) passes.
#[test]
fn an_smime_ca_file_that_cannot_be_trusted_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("bogus.pem");
    std::fs::write(&bogus, "-----BEGIN CERTIFICATE-----\nMAMCAQE=\n-----END CERTIFICATE-----\n").unwrap();
    crate::harness::make_certificates(dir.path());
    let channel = |file: &std::path::Path| {
        format!(
            "[[channels]]\nid = \"mail\"\ntype = \"email\"\naddress = \"support@example.com\"\nsmime_ca_file = {:?}\n\
             [channels.smtp]\nhost = \"smtp.example.com\"\n",
            file.to_str().unwrap()
        )
    };
    let (code, out) = check(&channel(&bogus));
    assert_eq!(code, 1, "{out}");
    let expected = format!("channels[0].smime_ca_file: {}: certificate 1 cannot be a trusted CA", bogus.display());
    assert!(out.lines().any(|l| l.starts_with(&expected)), "missing `{expected}` in:\n{out}");
    let (code, out) = check(&channel(&dir.path().join("ca.pem")));
    assert_eq!(code, 0, "{out}");
}
