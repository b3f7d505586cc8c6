//! A private Cyrus IMAP server, a second real IMAP server beside Dovecot: Debian's cyrus-imapd,
//! unpacked by tests/run.sh into `target/test-data/cyrus` (its package conflicts with Dovecot's),
//! started per test on a loopback port in a temp dir, with `idled` for IDLE and a SASL database
//! of its own for the test users. Cyrus numbers UIDVALIDITY, names folders, answers FETCH and
//! signals new mail in its own ways; the email channel must read it as it reads Dovecot.
//! Needs root (Cyrus's master drops to the `cyrus` user). Missing software fails the test with
//! what to do; it never skips.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use async_imap::Session;
use tokio::net::TcpStream;

use crate::harness::free_port;
use crate::mail_servers::{imap_login, listening, mails_in};

/// Cyrus's users: a mailbox name without a domain (Cyrus without virtual domains).
pub const CYRUS_SUPPORT: (&str, &str) = ("support", "support-pass-1");

pub struct Cyrus {
    pub dir: tempfile::TempDir,
    pub imap_port: u16,
    master: Child,
}

impl Cyrus {
    pub async fn start() -> Cyrus {
        assert_eq!(
            String::from_utf8(Command::new("id").arg("-u").output().unwrap().stdout).unwrap().trim(),
            "0",
            "Cyrus can only be started as root"
        );
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-data/cyrus");
        let bin = root.join("usr/lib/cyrus/bin");
        assert!(
            bin.join("imapd").exists(),
            "no Cyrus in {}: tests/run.sh unpacks Debian's cyrus-imapd there",
            root.display()
        );
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        let imap_port = free_port();
        std::fs::create_dir_all(dir.path().join("conf/socket")).unwrap();
        // Cyrus's telemetry: what each session of a user sent and got, in `conf/log/<user>/`.
        std::fs::create_dir_all(dir.path().join("conf/log").join(CYRUS_SUPPORT.0)).unwrap();
        std::fs::create_dir_all(dir.path().join("spool")).unwrap();
        let config = dir.path().join("imapd.conf");
        std::fs::write(
            &config,
            format!(
                "configdirectory: {d}/conf
partition-default: {d}/spool
servername: localhost
admins: cyrus
sasl_pwcheck_method: auxprop
sasl_auxprop_plugin: sasldb
sasl_sasldb_path: {d}/sasldb2
sasl_mech_list: PLAIN LOGIN
allowplaintext: yes
autocreate_quota: 0
unixhierarchysep: yes
idlesocket: {d}/conf/socket/idle
lmtpsocket: {d}/conf/socket/lmtp
notifysocket: {d}/conf/socket/notify
"
            ),
        )
        .unwrap();
        // Cyrus's master runs what its services name, each told the config file.
        let run = |program: &str, args: &str| format!("cmd=\"{}/{program} -C {d}/imapd.conf{args}\"", bin.display());
        std::fs::write(
            dir.path().join("cyrus.conf"),
            format!(
                "START {{\n  recover {}\n}}\nSERVICES {{\n  imap {} listen=\"127.0.0.1:{imap_port}\" prefork=0\n}}\n\
                 EVENTS {{\n}}\nDAEMON {{\n  idled {}\n}}\n",
                run("ctl_cyrusdb", " -r"),
                run("imapd", ""),
                run("idled", "")
            ),
        )
        .unwrap();
        let libraries = format!("{0}/usr/lib/x86_64-linux-gnu:{0}/lib/x86_64-linux-gnu", root.display());
        let (user, password) = CYRUS_SUPPORT;
        let mut saslpasswd = Command::new(root.join("usr/sbin/saslpasswd2"))
            .args(["-p", "-c", "-u", "localhost", "-f", &format!("{d}/sasldb2"), user])
            .env("LD_LIBRARY_PATH", &libraries)
            .stdin(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("saslpasswd2 ({e}): tests/run.sh unpacks Debian's sasl2-bin"));
        std::io::Write::write_all(&mut saslpasswd.stdin.take().unwrap(), password.as_bytes()).unwrap();
        assert!(saslpasswd.wait().unwrap().success(), "saslpasswd2 {user}");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let chown = Command::new("chown").args(["-R", "cyrus", &d]).status().unwrap();
        assert!(chown.success(), "chown cyrus (tests/run.sh adds the user)");
        // Its own process group, so that stopping it stops the imapd and idled it started.
        let master = std::os::unix::process::CommandExt::process_group(
            Command::new(bin.join("master"))
                .args(["-C", &format!("{d}/imapd.conf"), "-M", &format!("{d}/cyrus.conf")])
                .arg("-p")
                .arg(dir.path().join("master.pid"))
                .env("LD_LIBRARY_PATH", &libraries)
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.path().join("master.stderr")).unwrap()),
            0,
        )
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start Cyrus's master ({e})"));
        let cyrus = Cyrus { dir, imap_port, master };
        // Listening, and idled up (without it Cyrus checks for new mail in IDLE once a minute).
        let idled = cyrus.dir.path().join("conf/socket/idle");
        if listening(imap_port, || idled.exists()).await {
            return cyrus;
        }
        panic!(
            "Cyrus did not start on port {imap_port} (it logs to syslog only):\n{}",
            std::fs::read_to_string(cyrus.dir.path().join("master.stderr")).unwrap_or_default()
        );
    }

    /// The `[[channels]]` block of an email channel reading `CYRUS_SUPPORT`'s mailbox, with
    /// `imap` (TOML lines) added to its `[channels.imap]` table and `smtp` as its
    /// `[channels.smtp]` table (none when empty).
    pub fn channel(&self, id: &str, imap: &str, smtp: &str) -> String {
        let smtp = if smtp.is_empty() { String::new() } else { format!("[channels.smtp]\n{smtp}") };
        format!(
            "\n[[channels]]\nid = \"{id}\"\ntype = \"email\"\naddress = \"support@example.com\"\n\
             name = \"Example Support\"\n[channels.imap]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n\
             username = \"{}\"\npassword = \"{}\"\n{imap}\n{smtp}",
            self.imap_port, CYRUS_SUPPORT.0, CYRUS_SUPPORT.1
        )
    }

    /// A test-side IMAP session (a mail client of the test's own).
    pub async fn login(&self, account: (&str, &str)) -> Session<TcpStream> {
        imap_login(self.imap_port, account).await
    }

    /// Puts a mail into `folder` (its name as IMAP sends it: modified UTF-7) with APPEND.
    pub async fn append(&self, account: (&str, &str), folder: &str, mail: &str) {
        let mut session = self.login(account).await;
        let mail = mail.replace('\n', "\r\n").replace("\r\r\n", "\r\n");
        session.append(folder, None, None, mail).await.unwrap();
        session.logout().await.unwrap();
    }

    /// What `account`'s IMAP sessions said, one string per session: Cyrus's telemetry log, a
    /// file per imapd process (which serves one session after another), each session opening
    /// with a `---------- <user> <date>` line.
    pub fn sessions(&self, (user, _): (&str, &str)) -> Vec<String> {
        let dir = self.dir.path().join("conf/log").join(user);
        let files = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let logs: Vec<String> =
            files.map(|f| String::from_utf8_lossy(&std::fs::read(f.unwrap().path()).unwrap()).into_owned()).collect();
        logs.iter().flat_map(|log| log.split("---------- ")).filter(|s| !s.is_empty()).map(str::to_owned).collect()
    }

    /// Every mail in `folder` as (uid, flags, raw bytes), and the folder's UIDVALIDITY.
    pub async fn folder(&self, account: (&str, &str), folder: &str) -> (Vec<(u32, Vec<String>, Vec<u8>)>, u32) {
        let mut session = self.login(account).await;
        let found = mails_in(&mut session, folder).await;
        session.logout().await.unwrap();
        found
    }
}

impl Drop for Cyrus {
    fn drop(&mut self) {
        let group = format!("-{}", self.master.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        for _ in 0..50 {
            if self.master.try_wait().ok().flatten().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if self.master.try_wait().ok().flatten().is_none() {
            let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
            let _ = self.master.wait();
        }
    }
}
