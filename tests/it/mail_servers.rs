//! A private Dovecot (IMAP + LMTP) and a real SMTP server (aiosmtpd relaying into that Dovecot
//! over LMTP), started per test on loopback ports in a temp dir; on demand also a private Postfix
//! or Exim in front of the same Dovecot, for what only a real MTA does (DSN, bounces). Missing software
//! fails the test with what to install; it never skips.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use async_imap::Session;
use futures_util::TryStreamExt;
use tokio::net::TcpStream;

use crate::harness::{free_port, make_certificates};

pub const SUPPORT: (&str, &str) = ("support@example.com", "support-pass-1");
pub const ANN: (&str, &str) = ("ann@example.org", "ann-pass-1");
pub const STRANGER: (&str, &str) = ("stranger@example.net", "stranger-pass-1");
/// Ann's colleague, in the domain the private Postfix delivers to.
pub const BEA: (&str, &str) = ("bea@example.org", "bea-pass-1");
/// Someone copied blind.
pub const CARL: (&str, &str) = ("carl@example.org", "carl-pass-1");
/// A customer in an internationalised domain (bücher.example, as mail names it in A-labels).
pub const DARIA: (&str, &str) = ("daria@xn--bcher-kva.example", "daria-pass-1");

pub struct MailServers {
    pub dir: tempfile::TempDir,
    pub imap_port: u16,
    /// Implicit-TLS IMAP port (TLS servers only).
    pub imaps_port: u16,
    /// The CA that signed the servers' certificate for `localhost` (TLS servers only).
    pub ca_file: std::path::PathBuf,
    pub smtp_port: u16,
    /// Implicit-TLS SMTP port (TLS servers only).
    pub smtps_port: u16,
    lmtp_port: u16,
    dovecot: Child,
    smtp: Child,
    _smtp_stdin: ChildStdin,
}

/// `id <flag> [user]`; an empty user means the current one.
fn id(flag: &str, user: &str) -> String {
    let mut command = Command::new("id");
    command.arg(flag);
    if !user.is_empty() {
        command.arg(user);
    }
    let out = command.output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Whether a server comes to listen on `port` (and `ready` holds) within 10 s.
pub async fn listening(port: u16, ready: impl Fn() -> bool) -> bool {
    for _ in 0..200 {
        if TcpStream::connect(("127.0.0.1", port)).await.is_ok() && ready() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

async fn wait_for_port(port: u16, what: &str, log: &std::path::Path) {
    if listening(port, || true).await {
        return;
    }
    let stderr = log.with_file_name("dovecot.stderr");
    panic!(
        "{what} did not listen on {port}:\n{}\n{}",
        std::fs::read_to_string(log).unwrap_or_default(),
        std::fs::read_to_string(stderr).unwrap_or_default()
    );
}

impl MailServers {
    pub async fn start() -> MailServers {
        Self::launch(false, None, "", &[]).await
    }

    /// Dovecot without IDLE in its capabilities (as some servers and proxies are), so a client
    /// has to poll.
    pub async fn start_without_idle() -> MailServers {
        Self::launch(false, None, "imap_capability = IMAP4rev1 LITERAL+ SASL-IR ID ENABLE UIDPLUS MOVE\n", &[]).await
    }

    /// Dovecot offering neither MOVE nor (with `uidplus = false`) UIDPLUS, as older servers do.
    /// It still accepts them: `client_commands` shows what the client sent.
    pub async fn start_without_move(uidplus: bool) -> MailServers {
        let capabilities = if uidplus { "IDLE UIDPLUS" } else { "IDLE" };
        let capabilities = format!("imap_capability = IMAP4rev1 LITERAL+ SASL-IR ID ENABLE {capabilities}\n");
        Self::launch(false, None, &capabilities, &[]).await
    }

    /// Dovecot running `account`'s Sieve script (Pigeonhole) on every mail LMTP delivers to it,
    /// and sending what the script sends (a `reject` notice, a vacation reply) back into its
    /// own mailboxes over LMTP (`tests/python/lmtp_sendmail.py` as its sendmail).
    pub async fn start_with_sieve(account: (&str, &str), script: &str) -> MailServers {
        assert!(
            std::path::Path::new("/usr/lib/dovecot/modules/lib90_sieve_plugin.so").exists(),
            "Dovecot's Sieve plugin is missing: apt-get install dovecot-sieve (tests/run.sh does)"
        );
        let injector = format!("{}/tests/python/lmtp_sendmail.py", env!("CARGO_MANIFEST_DIR"));
        // `{lmtp_port}` is filled in by `launch`, which chooses the port.
        let config = format!(
            "protocol lmtp {{\n  mail_plugins = $mail_plugins sieve\n}}\n\
             plugin {{\n  sieve = file:~/sieve;active=~/.dovecot.sieve\n}}\n\
             sendmail_path = /usr/bin/python3 {injector} {{lmtp_port}}\n"
        );
        let mail = Self::launch(false, None, &config, &[]).await;
        let home = mail.dir.path().join("mail").join(account.0);
        std::fs::create_dir_all(&home).unwrap();
        std::fs::write(home.join(".dovecot.sieve"), script).unwrap();
        let owner = format!("{}:{}", id("-u", "dovecot"), id("-g", "dovecot"));
        if id("-u", "") == "0" {
            Command::new("chown").args(["-R", &owner]).arg(&home).status().unwrap();
        }
        mail
    }

    /// Every command IMAP clients sent so far (Dovecot's rawlog of each session, `*.in`).
    pub fn client_commands(&self) -> String {
        self.rawlog("in")
    }

    /// Every response Dovecot sent so far (`*.out`).
    /// Ends every IMAP session of `user`, as a dropped connection would (`doveadm kick`).
    pub fn kick(&self, user: &str) {
        let out = Command::new("doveadm")
            .arg("-c")
            .arg(self.dir.path().join("dovecot.conf"))
            .args(["kick", user])
            .output()
            .unwrap();
        assert!(out.status.success(), "doveadm kick: {}", String::from_utf8_lossy(&out.stderr));
    }

    pub fn server_responses(&self) -> String {
        self.rawlog("out")
    }

    /// The commands each IMAP session sent, one string per session (in login order).
    pub fn client_sessions(&self) -> Vec<String> {
        self.rawlogs("in")
    }

    fn rawlog(&self, extension: &str) -> String {
        self.rawlogs(extension).concat()
    }

    fn rawlogs(&self, extension: &str) -> Vec<String> {
        let mut logs: Vec<_> = std::fs::read_dir(self.dir.path().join("rawlog"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == extension))
            .collect();
        logs.sort();
        logs.iter().map(|p| std::fs::read_to_string(p).unwrap()).collect()
    }

    /// Dovecot also accepting XOAUTH2, validating tokens at `introspection_url` (RFC 7662; the
    /// token's `sub` is the mailbox), and so does the SMTP server.
    pub async fn start_oauth2(introspection_url: &str) -> MailServers {
        Self::launch(false, Some(introspection_url), "", &[]).await
    }

    /// Dovecot with TLS (implicit on `imaps_port`, STARTTLS on `imap_port`) and an SMTP server
    /// requiring STARTTLS on `smtp_port` and speaking implicit TLS on `smtps_port`; certificates
    /// from a test CA in `ca_file`.
    pub async fn start_tls() -> MailServers {
        Self::launch(true, None, "", &[]).await
    }

    /// The servers with an SMTP server that offers only AUTH `mechanism` (e.g. `LOGIN`).
    pub async fn start_with_smtp_auth(mechanism: &str) -> MailServers {
        Self::launch(false, None, "", &[("SMTP_AUTH_ONLY", mechanism)]).await
    }

    /// The servers with an SMTP server that defers the first RCPT TO of each of `addresses`
    /// (450 4.2.0, as a greylisting server does) and takes the later ones.
    pub async fn start_with_greylisting(addresses: &[&str]) -> MailServers {
        Self::launch(false, None, "", &[("SMTP_GREYLIST", &addresses.join(","))]).await
    }

    async fn launch(
        tls: bool,
        introspection_url: Option<&str>,
        extra_config: &str,
        smtp_env: &[(&str, &str)],
    ) -> MailServers {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        let (imap_port, lmtp_port, smtp_port) = (free_port(), free_port(), free_port());
        let (imaps_port, smtps_port) = if tls { (free_port(), free_port()) } else { (0, 0) };
        if tls {
            make_certificates(dir.path());
        }
        let ssl = if tls {
            format!("ssl = yes\nssl_cert = <{d}/server.pem\nssl_key = <{d}/server.key\n")
        } else {
            "ssl = no\n".to_owned()
        };
        let root = id("-u", "") == "0";
        // Dovecot refuses uid 0 for mail: as root, mail belongs to the `dovecot` user.
        let (user, uid, gid) = if root {
            ("dovecot".to_owned(), id("-u", "dovecot"), id("-g", "dovecot"))
        } else {
            (id("-un", ""), id("-u", ""), id("-g", ""))
        };
        for sub in ["mail", "run", "state", "rawlog"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        if root {
            // Mail processes run as `dovecot`: they must reach the (0700) temp dir.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
            for sub in ["mail", "rawlog"] {
                Command::new("chown").args([&format!("{uid}:{gid}"), &format!("{d}/{sub}")]).status().unwrap();
            }
        }
        let users: String =
            [SUPPORT, ANN, STRANGER, BEA, CARL, DARIA].iter().map(|(u, p)| format!("{u}:{{PLAIN}}{p}\n")).collect();
        std::fs::write(dir.path().join("users"), users).unwrap();
        let oauth2 = match introspection_url {
            Some(url) => {
                std::fs::write(
                    dir.path().join("oauth2.conf.ext"),
                    format!("introspection_mode = post\nintrospection_url = {url}\nusername_attribute = sub\nactive_attribute = active\nactive_value = true\n"),
                )
                .unwrap();
                format!("passdb {{\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n  args = {d}/oauth2.conf.ext\n}}\n")
            }
            None => String::new(),
        };
        let mechanisms = if introspection_url.is_some() { "plain login xoauth2 oauthbearer" } else { "plain login" };
        let internal =
            if root { String::new() } else { format!("default_internal_user = {user}\ndefault_login_user = {user}\n") };
        let extra_config = extra_config.replace("{lmtp_port}", &lmtp_port.to_string());
        let config = format!(
            r#"protocols = imap lmtp
listen = 127.0.0.1
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
{internal}{ssl}{extra_config}disable_plaintext_auth = no
auth_mechanisms = {mechanisms}
mail_location = maildir:{d}/mail/%u
rawlog_dir = {d}/rawlog
first_valid_uid = {uid}
{oauth2}passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/users
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={d}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp_port}
  }}
}}
service stats {{
  unix_listener stats-reader {{
    mode = 0666
  }}
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
"#
        );
        let conf = dir.path().join("dovecot.conf");
        std::fs::write(&conf, config).unwrap();
        let log = dir.path().join("dovecot.log");
        let dovecot = Command::new("dovecot")
            .args(["-F", "-c"])
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("dovecot.stderr")).unwrap())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start dovecot ({e}): apt-get install dovecot-imapd dovecot-lmtpd (tests/run.sh does)")
            });
        wait_for_port(imap_port, "dovecot", &log).await;

        let python = std::env::var("SB_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned());
        let script = format!("{}/tests/python/smtp_relay.py", env!("CARGO_MANIFEST_DIR"));
        let mut smtp = Command::new(&python)
            .arg(&script)
            .args([smtp_port.to_string(), lmtp_port.to_string(), format!("{d}/users")])
            .args(if tls {
                vec![format!("{d}/server.pem"), format!("{d}/server.key"), smtps_port.to_string()]
            } else {
                vec![]
            })
            .envs(introspection_url.map(|u| ("INTROSPECTION_URL", u.to_owned())))
            .envs(smtp_env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.path().join("smtp.log")).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {python} {script}: {e}"));
        let mut ready = String::new();
        BufReader::new(smtp.stdout.take().unwrap()).read_line(&mut ready).unwrap();
        assert_eq!(
            ready.trim(),
            "ready",
            "the SMTP server did not start (pip install aiosmtpd; tests/run.sh does):\n{}",
            std::fs::read_to_string(dir.path().join("smtp.log")).unwrap_or_default()
        );
        let stdin = smtp.stdin.take().unwrap();
        let ca_file = dir.path().join("ca.pem");
        MailServers {
            dir,
            imap_port,
            imaps_port,
            ca_file,
            smtp_port,
            smtps_port,
            lmtp_port,
            dovecot,
            smtp,
            _smtp_stdin: stdin,
        }
    }

    /// The `[[channels]]` block of an email channel on these servers.
    /// `channel` with `imap` (TOML lines) added to its `[channels.imap]` table.
    pub fn channel_with_imap(&self, id: &str, imap: &str) -> String {
        self.channel(id, "").replacen("[channels.imap]\n", &format!("[channels.imap]\n{imap}\n"), 1)
    }

    pub fn channel(&self, id: &str, extra: &str) -> String {
        let smtp = format!(
            "port = {}\ntls = \"none\"\nusername = \"{}\"\npassword = \"{}\"\n",
            self.smtp_port, SUPPORT.0, SUPPORT.1
        );
        self.channel_sending(id, extra, &smtp)
    }

    /// `channel`, logging in to IMAP and SMTP with XOAUTH2 on one OAuth2 grant (`grant`: the
    /// lines of an `oauth2` table) instead of the password.
    pub fn channel_on_oauth2(&self, id: &str, grant: &str) -> String {
        let smtp = format!(
            "port = {}\ntls = \"none\"\nusername = \"{}\"\n[channels.smtp.oauth2]\n{grant}",
            self.smtp_port, SUPPORT.0
        );
        let password = format!("password = \"{}\"\n[channels.smtp]", SUPPORT.1);
        let config = self.channel_sending(id, "", &smtp);
        assert!(config.contains(&password));
        config.replacen(&password, &format!("[channels.imap.oauth2]\n{grant}[channels.smtp]"), 1)
    }

    /// `channel`, sending through the MTA on `port` (the private Postfix or Exim; no login: they
    /// relay for loopback clients).
    pub fn channel_via_mta(&self, id: &str, port: u16) -> String {
        self.channel_via_mta_with(id, port, "")
    }

    /// `channel_via_mta` with `extra` (TOML lines) in the channel's block.
    pub fn channel_via_mta_with(&self, id: &str, port: u16, extra: &str) -> String {
        self.channel_sending(id, extra, &format!("port = {port}\ntls = \"none\"\n"))
    }

    /// The channel block with `smtp` (TOML lines after `host`) as its `[channels.smtp]` table.
    fn channel_sending(&self, id: &str, extra: &str, smtp: &str) -> String {
        format!(
            r#"
[[channels]]
id = "{id}"
type = "email"
address = "{}"
name = "Example Support"
{extra}
[channels.imap]
host = "127.0.0.1"
port = {}
tls = "none"
username = "{}"
password = "{}"
[channels.smtp]
host = "127.0.0.1"
{smtp}"#,
            SUPPORT.0, self.imap_port, SUPPORT.0, SUPPORT.1
        )
    }

    /// A private Postfix (Debian's) on a loopback port that delivers every mail for
    /// example.com/example.org into this Dovecot over LMTP, and bounces what Dovecot refuses with
    /// a real delivery status notification to the sender. Mail for slow.example.org cannot be
    /// delivered and stays queued: its sender gets a delay notification after about a second.
    /// `refused@example.org` is refused at RCPT (554). Needs root (Postfix's master drops to the
    /// `postfix` user).
    pub async fn start_postfix(&self) -> Postfix {
        assert_eq!(id("-u", ""), "0", "Postfix can only be started as root");
        let port = free_port();
        let dir = self.dir.path().join("postfix");
        let d = dir.display();
        for sub in ["conf", "queue", "data"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        Command::new("chown").args(["postfix", &format!("{d}/data")]).status().unwrap();
        // Logging to the start-fg process's stdout: no syslog daemon needed.
        std::fs::write(
            dir.join("conf/main.cf"),
            format!(
                "compatibility_level = 3.6
queue_directory = {d}/queue
data_directory = {d}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.example.net
mydomain = example.net
myorigin = example.net
mydestination =
alias_maps =
alias_database =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_recipient_restrictions = check_recipient_access inline:{{ refused@example.org=REJECT }}
virtual_mailbox_domains = example.com example.org slow.example.org
virtual_transport = lmtp:inet:127.0.0.1:{}
# slow.example.org never answers (nothing listens on port 9): its mail waits in the queue, and
# the sender gets Postfix's delay warning within seconds instead of hours.
transport_maps = inline:{{ slow.example.org=lmtp:inet:127.0.0.1:9 }}
delay_warning_time = 1s
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
maillog_file = /dev/stdout
maillog_file_prefixes = /dev/stdout
",
                self.lmtp_port
            ),
        )
        .unwrap();
        // Every service unchrooted (Debian's master.cf chroots most).
        let services = [
            ("pickup", "unix  n - n 60 1", "pickup"),
            ("cleanup", "unix n - n - 0", "cleanup"),
            ("qmgr", "unix n - n 300 1", "qmgr"),
            ("rewrite", "unix - - n - -", "trivial-rewrite"),
            ("bounce", "unix - - n - 0", "bounce"),
            ("defer", "unix - - n - 0", "bounce"),
            ("trace", "unix - - n - 0", "bounce"),
            ("verify", "unix - - n - 1", "verify"),
            ("flush", "unix n - n 1000? 0", "flush"),
            ("proxymap", "unix - - n - -", "proxymap"),
            ("smtp", "unix - - n - -", "smtp"),
            ("showq", "unix n - n - -", "showq"),
            ("error", "unix - - n - -", "error"),
            ("retry", "unix - - n - -", "error"),
            ("discard", "unix - - n - -", "discard"),
            ("lmtp", "unix - - n - -", "lmtp"),
            ("anvil", "unix - - n - 1", "anvil"),
            ("scache", "unix - - n - 1", "scache"),
            ("postlog", "unix-dgram n - n - 1", "postlogd"),
        ];
        let mut master = format!("127.0.0.1:{port} inet n - n - - smtpd\n");
        for (name, flags, command) in services {
            master.push_str(&format!("{name} {flags} {command}\n"));
        }
        std::fs::write(dir.join("conf/master.cf"), master).unwrap();
        let log = std::fs::File::create(dir.join("postfix.log")).unwrap();
        let child = Command::new("postfix")
            .args(["-c", &format!("{d}/conf"), "start-fg"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start postfix ({e}): apt-get install postfix (tests/run.sh does)"));
        let postfix = Postfix { port, dir, child };
        if listening(port, || true).await {
            return postfix;
        }
        panic!("postfix did not listen on {port}:\n{}", postfix.log());
    }

    /// A private Exim (Debian's exim4-daemon-light 4.96, which cannot be installed beside
    /// Postfix: `tests/run.sh` unpacks it into `target/test-data/exim4` and adds the
    /// `Debian-exim` user its package would) on a loopback port. Mail for example.com and
    /// example.org goes into this Dovecot over LMTP; nobody exists at example.net, so mail to
    /// example.net fails after Exim accepted it, and the sender gets Exim's own bounce; mail for
    /// slow.example.org cannot be delivered and waits, and its sender gets Exim's delay warning
    /// after about a second. Needs
    /// root (Exim drops to `Debian-exim` for deliveries).
    pub async fn start_exim(&self) -> Exim {
        assert_eq!(id("-u", ""), "0", "Exim can only be started as root");
        let bin = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-data/exim4/usr/sbin/exim4");
        assert!(bin.exists(), "no Exim at {}: tests/run.sh unpacks Debian's exim4-daemon-light there", bin.display());
        let port = free_port();
        let dir = self.dir.path().join("exim");
        let d = dir.display();
        for sub in ["spool", "log"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
            Command::new("chown").args(["Debian-exim:Debian-exim", &format!("{d}/{sub}")]).status().unwrap();
        }
        std::fs::write(
            dir.join("exim.conf"),
            format!(
                "exim_path = {bin}
primary_hostname = mx.example.net
qualify_domain = example.net
spool_directory = {d}/spool
log_file_path = {d}/log/%slog
pid_file_path = {d}/exim.pid
daemon_smtp_ports = {port}
local_interfaces = 127.0.0.1
host_lookup =
rfc1413_hosts =
acl_smtp_rcpt = check_rcpt
delay_warning = 1s

begin acl
check_rcpt:
  accept hosts = 127.0.0.1

begin routers
into_dovecot:
  driver = manualroute
  domains = example.com : example.org
  route_list = * 127.0.0.1
  transport = dovecot_lmtp
  self = send
# Nothing listens on port 9: mail for slow.example.org waits in the queue, and its sender gets
# Exim's delay warning after a second instead of a day.
to_slow:
  driver = manualroute
  domains = slow.example.org
  route_list = * 127.0.0.1
  transport = to_port_9
  self = send
nobody_at_example_net:
  driver = redirect
  domains = example.net
  allow_fail
  data = :fail: Unrouteable address

begin transports
dovecot_lmtp:
  driver = smtp
  protocol = lmtp
  port = {lmtp}
  hosts_avoid_tls = *
to_port_9:
  driver = smtp
  port = 9

begin retry
* * F,10m,1s
",
                bin = bin.display(),
                lmtp = self.lmtp_port
            ),
        )
        .unwrap();
        let child = Command::new(&bin)
            .args(["-C", &format!("{d}/exim.conf"), "-bdf", "-q1s"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("stderr")).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} ({e})", bin.display()));
        let exim = Exim { port, dir, child };
        if listening(port, || true).await {
            return exim;
        }
        panic!("exim did not listen on {port}:\n{}", exim.log());
    }

    /// A test-side IMAP session (a mail client of the test's own).
    pub async fn login(&self, account: (&str, &str)) -> Session<TcpStream> {
        imap_login(self.imap_port, account).await
    }

    /// Puts a mail into a user's INBOX with IMAP APPEND.
    pub async fn append(&self, account: (&str, &str), mail: &str) {
        self.append_received(account, mail, None).await;
    }

    /// `append` with the server's received date (INTERNALDATE), e.g. `"01-Jan-2020 10:00:00 +0000"`.
    pub async fn append_received(&self, account: (&str, &str), mail: &str, received: Option<&str>) {
        let mut session = self.login(account).await;
        let date = received.map(|d| format!("\"{d}\""));
        let mail = mail.replace('\n', "\r\n").replace("\r\r\n", "\r\n");
        session.append("INBOX", None, date.as_deref(), mail).await.unwrap();
        session.logout().await.unwrap();
    }

    /// Gives `account`'s INBOX the UIDVALIDITY `validity` (doveadm, as a migration would).
    pub fn set_uid_validity(&self, account: (&str, &str), validity: u32) {
        let conf = self.dir.path().join("dovecot.conf");
        let out = Command::new("doveadm")
            .arg("-c")
            .arg(&conf)
            .args(["mailbox", "update", "-u", account.0, "--uid-validity", &validity.to_string(), "INBOX"])
            .output()
            .unwrap_or_else(|e| panic!("doveadm: {e} (apt-get install dovecot-core)"));
        assert!(out.status.success(), "doveadm mailbox update: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// `account`'s INBOX UIDVALIDITY.
    pub async fn uid_validity(&self, account: (&str, &str)) -> u32 {
        let mut session = self.login(account).await;
        let validity = session.select("INBOX").await.unwrap().uid_validity.unwrap();
        session.logout().await.unwrap();
        validity
    }

    /// The maildir file of `account`'s mail whose source contains `needle` (to damage it).
    pub fn mail_file(&self, account: (&str, &str), needle: &str) -> std::path::PathBuf {
        let maildir = self.dir.path().join("mail").join(account.0);
        let files = ["cur", "new"].iter().filter_map(|sub| std::fs::read_dir(maildir.join(sub)).ok()).flatten();
        files
            .map(|entry| entry.unwrap().path())
            .find(|path| std::fs::read_to_string(path).is_ok_and(|text| text.contains(needle)))
            .unwrap_or_else(|| panic!("no mail with {needle} in {}", maildir.display()))
    }

    /// What the SMTP server logged: one `AUTH <mechanism> ok|refused <user>` line per login.
    pub fn smtp_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("smtp.log")).unwrap_or_default()
    }

    /// Every mail in a user's INBOX as (uid, flags, raw bytes).
    pub async fn inbox(&self, account: (&str, &str)) -> Vec<(u32, Vec<String>, Vec<u8>)> {
        let mut session = self.login(account).await;
        let (mails, _) = mails_in(&mut session, "INBOX").await;
        session.logout().await.unwrap();
        mails
    }

    /// Deletes every mail in a user's INBOX but the one with Message-ID `<keep>` (flag and
    /// expunge), as another mail client would.
    pub async fn delete_all_but(&self, account: (&str, &str), keep: &str) {
        let mut session = self.login(account).await;
        let (mails, _) = mails_in(&mut session, "INBOX").await;
        let keep = format!("Message-ID: <{keep}>");
        let doomed: Vec<String> = mails
            .iter()
            .filter(|(_, _, bytes)| !String::from_utf8_lossy(bytes).contains(&keep))
            .map(|(uid, _, _)| uid.to_string())
            .collect();
        delete(&mut session, "INBOX", &doomed.join(",")).await;
        session.logout().await.unwrap();
    }

    /// Deletes every mail in a user's INBOX (flag and expunge).
    pub async fn delete_all(&self, account: (&str, &str)) {
        let mut session = self.login(account).await;
        delete(&mut session, "INBOX", "1:*").await;
        session.logout().await.unwrap();
    }
}

impl Drop for MailServers {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.dovecot.id().to_string()]).status();
        let _ = self.dovecot.wait();
        let _ = self.smtp.kill();
        let _ = self.smtp.wait();
    }
}

/// A test-side IMAP session (a mail client of the test's own) with the server on `port`.
pub async fn imap_login(port: u16, (user, password): (&str, &str)) -> Session<TcpStream> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut client = async_imap::Client::new(tcp);
    client.read_response().await.unwrap();
    client.login(user, password).await.map_err(|(e, _)| e).unwrap()
}

/// Creates `folders` (their names as IMAP sends them: modified UTF-7) in `account`'s mailbox on
/// the server on `port`, as a mail client would.
pub async fn create_folders(port: u16, account: (&str, &str), folders: &[&str]) {
    let mut session = imap_login(port, account).await;
    for folder in folders {
        session.create(folder).await.unwrap();
    }
    session.logout().await.unwrap();
}

/// Every mail in `folder` (selected in `session`) as (uid, flags, raw bytes), and the folder's
/// UIDVALIDITY.
pub async fn mails_in(session: &mut Session<TcpStream>, folder: &str) -> (Vec<(u32, Vec<String>, Vec<u8>)>, u32) {
    let validity = session.select(folder).await.unwrap().uid_validity.unwrap();
    let fetches: Vec<_> =
        session.uid_fetch("1:*", "(UID FLAGS BODY.PEEK[])").await.unwrap().try_collect().await.unwrap_or_default();
    let mut mails: Vec<_> = fetches
        .iter()
        .filter_map(|f| Some((f.uid?, f.flags().map(|fl| format!("{fl:?}")).collect(), f.body()?.to_vec())))
        .collect();
    mails.sort_by_key(|(uid, _, _)| *uid);
    (mails, validity)
}

/// Deletes the mails with UIDs `uids` (an IMAP set) from `folder`, as a mail client does:
/// flagged `\Deleted`, then expunged.
pub async fn delete(session: &mut Session<TcpStream>, folder: &str, uids: &str) {
    session.select(folder).await.unwrap();
    let _: Vec<_> = session.uid_store(uids, "+FLAGS (\\Deleted)").await.unwrap().try_collect().await.unwrap();
    let _: Vec<_> = session.expunge().await.unwrap().try_collect().await.unwrap();
}

/// For each of `mails` (as `mails_in` lists them), whether it is marked read.
pub fn seen(mails: &[(u32, Vec<String>, Vec<u8>)]) -> Vec<bool> {
    mails.iter().map(|(_, flags, _)| flags.iter().any(|f| f.contains("Seen"))).collect()
}

/// A mail as a client would write it.
pub fn mail(from: &str, to: &str, subject: &str, message_id: &str, headers: &str, body: &str) -> String {
    format!("From: {from}\nTo: {to}\nSubject: {subject}\nMessage-ID: <{message_id}>\nDate: Mon, 23 Nov 2026 10:00:00 +0000\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n{headers}\n{body}\n")
}

/// A private Postfix started by `MailServers::start_postfix`; stopped when dropped.
pub struct Postfix {
    pub port: u16,
    dir: std::path::PathBuf,
    child: Child,
}

impl Postfix {
    /// What Postfix logged (one line per delivery attempt, with its `dsn=` status).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("postfix.log")).unwrap_or_default()
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let conf = self.dir.join("conf");
        let _ = Command::new("postfix").arg("-c").arg(&conf).arg("stop").output();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A private Exim started by `MailServers::start_exim`; stopped when dropped.
pub struct Exim {
    pub port: u16,
    dir: std::path::PathBuf,
    child: Child,
}

impl Exim {
    /// What Exim logged (its main and panic logs, and what it wrote to stderr).
    pub fn log(&self) -> String {
        ["log/mainlog", "log/paniclog", "stderr"]
            .iter()
            .map(|f| std::fs::read_to_string(self.dir.join(f)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Exim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
