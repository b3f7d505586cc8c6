//! packaging/build.sh builds a static binary (no dynamic dependencies, no OpenSSL, the git
//! revision in `switchboard version`) and the .deb; lintian finds no errors or warnings; the
//! package holds what it should; and it installs, runs, upgrades, is removed and purged in a
//! throwaway Debian root made with debootstrap, then does the same as a service under a real
//! systemd (that root booted with systemd-nspawn). (Runs a release build in its own target dir.)

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::mail_servers::{self, MailServers, ANN, SUPPORT};

fn run(program: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{program} cannot run ({e}); tests/run.sh installs it"));
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

fn ok(program: &str, args: &[&str]) -> String {
    let (success, text) = run(program, args);
    assert!(success, "{program} {args:?} failed:\n{text}");
    text
}

#[test]
fn build_script_makes_a_static_binary_and_a_clean_package_that_installs() {
    let root = env!("CARGO_MANIFEST_DIR");
    let target = format!("{root}/target/packaging-test");
    let out = Command::new(format!("{root}/packaging/build.sh"))
        .env("CARGO_TARGET_DIR", &target)
        .stdin(Stdio::null())
        .output()
        .expect("packaging/build.sh runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");

    // The binary.
    let binary = format!("{target}/x86_64-unknown-linux-gnu/release/switchboard");
    let file = ok("file", &[&binary]);
    assert!(file.contains("static-pie linked") || file.contains("statically linked"), "{file}");
    let rev = Command::new("git").args(["rev-parse", "--short=12", "HEAD"]).current_dir(root).output().unwrap();
    let rev = String::from_utf8_lossy(&rev.stdout).trim().to_owned();
    let version = ok(&binary, &["version"]);
    assert!(version.contains(env!("CARGO_PKG_VERSION")) && version.contains(&rev), "{version}");

    // The package: lintian-clean, with the listed contents.
    let deb = format!("{target}/debian/switchboard_{}-1_amd64.deb", env!("CARGO_PKG_VERSION"));
    assert!(Path::new(&deb).is_file(), "no {deb}:\n{text}");
    let lintian = ok("lintian", &["--fail-on", "error,warning", &deb]);
    assert!(!lintian.lines().any(|l| l.starts_with("E:") || l.starts_with("W:")), "{lintian}");
    let contents = ok("dpkg-deb", &["-c", &deb]);
    for (path, mode) in [
        ("./usr/bin/switchboard", "-rwxr-xr-x"),
        ("./etc/switchboard/switchboard.toml", "-rw-r-----"),
        ("./lib/systemd/system/switchboard.service", "-rw-r--r--"),
        ("./usr/lib/sysusers.d/switchboard.conf", "-rw-r--r--"),
        ("./usr/share/man/man1/switchboard.1.gz", "-rw-r--r--"),
        ("./usr/share/man/man1/switchboard-run.1.gz", "-rw-r--r--"),
        ("./usr/share/bash-completion/completions/switchboard", "-rw-r--r--"),
        ("./usr/share/zsh/vendor-completions/_switchboard", "-rw-r--r--"),
        ("./usr/share/fish/vendor_completions.d/switchboard.fish", "-rw-r--r--"),
        ("./usr/share/doc/switchboard/copyright", "-rw-r--r--"),
        ("./usr/share/doc/switchboard/changelog.Debian.gz", "-rw-r--r--"),
        ("./usr/share/doc/switchboard/examples/switchboard.toml", "-rw-r--r--"),
    ] {
        let line = contents
            .lines()
            .find(|l| l.ends_with(&format!(" {path}")))
            .unwrap_or_else(|| panic!("{path} missing:\n{contents}"));
        assert!(line.starts_with(mode), "{line}");
    }
    let control = tempfile::tempdir().unwrap();
    ok("dpkg-deb", &["-e", &deb, control.path().to_str().unwrap()]);
    let conffiles = std::fs::read_to_string(control.path().join("conffiles")).unwrap();
    assert_eq!(conffiles.trim(), "/etc/switchboard/switchboard.toml");
    for script in ["postinst", "prerm", "postrm"] {
        assert!(control.path().join(script).is_file(), "no {script}");
    }

    install_in_a_throwaway_root(Path::new(&target), &deb);
    run_under_systemd(Path::new(&target), &deb);
}

/// A minimal Debian (debootstrap minbase) with the dependencies of the package `deb` and
/// `extra` packages, made once and cached under target/ (one cache per package list), copied
/// fresh for each run. The mirror is the one apt uses here unless SB_DEBIAN_MIRROR says otherwise.
fn debian_root(target: &Path, deb: &str, extra: &[&str]) -> PathBuf {
    let depends = ok("dpkg-deb", &["-f", deb, "Depends"]);
    // "passwd, procps (>= 2)" → passwd, procps
    let depends = depends.split(',').filter_map(|d| d.split_whitespace().next());
    let packages: Vec<&str> = depends.chain(extra.iter().copied()).collect();
    let packages = packages.join(",");
    let cache = target.join(format!("debootstrap-bookworm-{}", packages.replace(',', "-")));
    if !cache.join(".complete").is_file() {
        let _ = std::fs::remove_dir_all(&cache);
        let mirror = std::env::var("SB_DEBIAN_MIRROR").unwrap_or_else(|_| "http://deb.debian.org/debian".to_owned());
        let include = format!("--include={packages}");
        ok("debootstrap", &["--variant=minbase", &include, "bookworm", cache.to_str().unwrap(), &mirror]);
        std::fs::write(cache.join(".complete"), "").unwrap();
    }
    cache
}

fn install_in_a_throwaway_root(target: &Path, deb: &str) {
    let cache = debian_root(target, deb, &[]);
    let scratch = tempfile::tempdir_in(target).unwrap();
    let root = scratch.path().join("root");
    ok("cp", &["-a", cache.to_str().unwrap(), root.to_str().unwrap()]);
    let r = root.to_str().unwrap();
    std::fs::copy(deb, root.join("tmp/switchboard.deb")).unwrap();
    let stat = |path: &str| ok("chroot", &[r, "stat", "-c", "%U:%G %a", path]).trim().to_owned();

    // Install: the user, the state directory, the config's owner and mode, the unit enabled.
    ok("chroot", &[r, "dpkg", "-i", "/tmp/switchboard.deb"]);
    let user = ok("chroot", &[r, "getent", "passwd", "switchboard"]);
    assert!(user.contains(":/var/lib/switchboard:/usr/sbin/nologin"), "{user}");
    assert_eq!(stat("/etc/switchboard/switchboard.toml"), "root:switchboard 640");
    assert_eq!(stat("/var/lib/switchboard"), "switchboard:switchboard 750");
    let wants = root.join("etc/systemd/system/multi-user.target.wants/switchboard.service");
    assert_eq!(std::fs::read_link(&wants).unwrap(), Path::new("/lib/systemd/system/switchboard.service"));

    // The installed binary, as the service user: check, then serve /healthz.
    let check = ok("chroot", &["--userspec=switchboard:switchboard", r, "/usr/bin/switchboard", "check"]);
    assert!(check.contains("/etc/switchboard/switchboard.toml: ok (0 channel(s)"), "{check}");
    let port = crate::harness::free_port();
    let log = scratch.path().join("run.log");
    let mut child = Command::new("chroot")
        .args(["--userspec=switchboard:switchboard", r, "env", &format!("SWITCHBOARD_SERVER__LISTEN=127.0.0.1:{port}")])
        .args(["/usr/bin/switchboard", "run"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let health = loop {
        match http_get(&format!("http://127.0.0.1:{port}/healthz")) {
            Some(answer) => break answer,
            None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            None => panic!("no /healthz from the installed binary:\n{}", std::fs::read_to_string(&log).unwrap()),
        }
    };
    assert!(health.starts_with("HTTP/1.1 200") && health.contains(r#"{"status":"ok"}"#), "{health}");
    // A backup run by root is written as the service user.
    let backup = ok("chroot", &[r, "/usr/bin/switchboard", "backup", "/var/backups/switchboard"]);
    assert!(backup.contains("integrity ok"), "{backup}");
    assert_eq!(stat("/var/backups/switchboard/switchboard.db"), "switchboard:switchboard 644");
    ok("kill", &["-TERM", &child.id().to_string()]);
    assert!(child.wait().unwrap().success(), "{}", std::fs::read_to_string(&log).unwrap());
    assert_eq!(stat("/var/lib/switchboard/switchboard.db").split(' ').next(), Some("switchboard:switchboard"));

    // Upgrade (the same version again): the edited config is kept, with its owner and mode.
    let config = root.join("etc/switchboard/switchboard.toml");
    let edited = format!("{}\n# edited by the administrator\n", std::fs::read_to_string(&config).unwrap());
    std::fs::write(&config, &edited).unwrap();
    ok("chroot", &[r, "dpkg", "-i", "/tmp/switchboard.deb"]);
    assert_eq!(std::fs::read_to_string(&config).unwrap(), edited);
    assert_eq!(stat("/etc/switchboard/switchboard.toml"), "root:switchboard 640");

    // Remove keeps state and config; purge removes both.
    ok("chroot", &[r, "dpkg", "-r", "switchboard"]);
    assert!(!root.join("usr/bin/switchboard").exists());
    assert!(root.join("var/lib/switchboard/switchboard.db").is_file(), "remove must keep the state");
    assert!(config.is_file(), "remove must keep the config");
    ok("chroot", &[r, "dpkg", "-P", "switchboard"]);
    assert!(!root.join("var/lib/switchboard").exists(), "purge removes the state");
    assert!(!root.join("etc/switchboard").exists(), "purge removes the config");
}

/// A plain HTTP/1.1 GET over a TCP socket (this test is synchronous); `None` if nothing listens.
fn http_get(url: &str) -> Option<String> {
    http_request("GET", url, "Accept: */*", None)
}

/// An HTTP/1.1 request with one extra header line and an optional JSON body: the answer's
/// status line, headers and body; `None` if nothing listens.
fn http_request(method: &str, url: &str, header: &str, body: Option<&str>) -> Option<String> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}"))).unwrap_or((rest, "/".to_owned()));
    let mut stream = std::net::TcpStream::connect(host).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let body = body.unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\n{header}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    Some(answer)
}

/// A Debian root booted with systemd-nspawn: its systemd is PID 1 there. It shares the host's
/// network, so its services' ports answer on the host's loopback. Stopped when dropped.
struct Booted {
    nspawn: std::process::Child,
    /// The container's init, seen from the host (for nsenter).
    init: u32,
    log: PathBuf,
}

impl Booted {
    fn boot(root: &Path, log: PathBuf) -> Booted {
        let nspawn = Command::new("systemd-nspawn")
            .args(["--quiet", "--register=no", "--keep-unit", "--boot", "--console=passive", "-D"])
            .arg(root)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::from(std::fs::File::options().append(true).open(&log).unwrap()))
            .spawn()
            .unwrap_or_else(|e| panic!("systemd-nspawn cannot run ({e}); tests/run.sh installs systemd-container"));
        let mut booted = Booted { nspawn, init: 0, log };
        let deadline = Instant::now() + Duration::from_secs(60);
        let state = loop {
            booted.init = booted.init_pid().unwrap_or(0);
            let state = if booted.init == 0 {
                None
            } else {
                booted.run(&["systemctl", "is-system-running"]).1.lines().next().map(str::to_owned)
            };
            match state.as_deref() {
                Some(state @ ("running" | "degraded")) => break state.to_owned(),
                _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(250)),
                _ => panic!("the container did not boot ({state:?}):\n{}", booted.console()),
            }
        };
        if state == "degraded" {
            eprintln!("container degraded: {}", booted.run(&["systemctl", "--failed", "--no-legend"]).1);
        }
        booted
    }

    fn init_pid(&mut self) -> Option<u32> {
        if let Some(status) = self.nspawn.try_wait().unwrap() {
            panic!("systemd-nspawn exited ({status}):\n{}", self.console());
        }
        let tasks = std::fs::read_dir(format!("/proc/{}/task", self.nspawn.id())).ok()?;
        tasks
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("children")).ok())
            .find_map(|children| children.split_whitespace().next()?.parse().ok())
    }

    /// Runs a command inside (all of the container's namespaces): success and output.
    fn run(&self, command: &[&str]) -> (bool, String) {
        let init = self.init.to_string();
        run("nsenter", &[&["-t", init.as_str(), "-a"], command].concat())
    }

    fn ok(&self, command: &[&str]) -> String {
        let (success, text) = self.run(command);
        if !success {
            let journal = self.run(&["journalctl", "--no-pager", "-n", "40", "-o", "cat"]).1;
            panic!("{command:?} failed inside the container:\n{text}\nthe journal's end:\n{journal}");
        }
        text
    }

    /// One property of a unit (`systemctl show -p`).
    fn property(&self, unit: &str, name: &str) -> String {
        self.ok(&["systemctl", "show", unit, "-p", name, "--value"]).trim().to_owned()
    }

    fn console(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Booted {
    fn drop(&mut self) {
        // SIGTERM asks nspawn to shut the container down in order; it is killed if it lingers.
        let _ = Command::new("kill").args(["-TERM", &self.nspawn.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.nspawn.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = self.nspawn.kill();
                let _ = self.nspawn.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The JSON body of an HTTP answer (`Value::Null` if it has none).
fn json_body(answer: &str) -> serde_json::Value {
    let body = answer.split_once("\r\n\r\n").map(|(_, body)| body).unwrap_or_default();
    serde_json::from_str(body).unwrap_or_default()
}

/// Polls `f` for `what` (15 s at most).
fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(value) = f() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The package under a real systemd (PID 1 in a container): the installed unit starts
/// (Type=notify: active only once ready) with its hardening in effect, pings the watchdog,
/// reads a secret from LoadCredential=, reloads a changed config live (mail in and out from
/// within its sandbox) and keeps the running one when the file is broken, failing `systemctl
/// reload`, logs with journal priorities, restarts on upgrade with its state kept, and stops
/// cleanly.
fn run_under_systemd(target: &Path, deb: &str) {
    let cache = debian_root(target, deb, &["systemd", "systemd-sysv", "dbus"]);
    let scratch = tempfile::tempdir_in(target).unwrap();
    let root = scratch.path().join("root");
    ok("cp", &["-a", cache.to_str().unwrap(), root.to_str().unwrap()]);
    std::fs::copy(deb, root.join("root/switchboard.deb")).unwrap();
    // The administrator's drop-in (as `systemctl edit` writes it): the test's port; a shorter
    // watchdog, so that missed pings show within the test (10 s: pings every 5 s, each after a
    // durable write, which other tests' fsyncs may slow but not by seconds); and a secret handed
    // over as a credential (a root-only file the service user could not read itself), as the
    // unit's comment suggests.
    let port = crate::harness::free_port();
    let drop_in = root.join("etc/systemd/system/switchboard.service.d");
    std::fs::create_dir_all(&drop_in).unwrap();
    std::fs::write(
        drop_in.join("test.conf"),
        format!(
            "[Service]\nEnvironment=SWITCHBOARD_SERVER__LISTEN=127.0.0.1:{port}\nWatchdogSec=10s\n\
             LoadCredential=ops-token:/etc/ops.token\n"
        ),
    )
    .unwrap();
    let token = "systemd-test-token-0001";
    std::fs::write(root.join("etc/ops.token"), format!("{token}\n")).unwrap();
    ok("chmod", &["600", root.join("etc/ops.token").to_str().unwrap()]);
    let container = Booted::boot(&root, scratch.path().join("console.log"));
    let unit = "switchboard.service";
    let journal = || container.ok(&["journalctl", "-u", unit, "--no-pager", "-o", "cat"]);

    // Install: enabled and started; active means it told systemd it is ready.
    container.ok(&["dpkg", "-i", "/root/switchboard.deb"]);
    assert_eq!(container.property(unit, "UnitFileState"), "enabled");
    wait_for("the service to be active", || (container.property(unit, "ActiveState") == "active").then_some(()));
    let pid = container.property(unit, "MainPID");
    let url = |path: &str| format!("http://127.0.0.1:{port}{path}");
    let health = http_get(&url("/healthz")).unwrap_or_else(|| panic!("no /healthz:\n{}", journal()));
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    // The hardening is in effect for the running process.
    let status = container.ok(&["cat", &format!("/proc/{pid}/status")]);
    for line in ["NoNewPrivs:\t1", "CapEff:\t0000000000000000", "Seccomp:\t2"] {
        assert!(status.lines().any(|l| l == line), "{line} expected:\n{status}");
    }
    let security = container.ok(&["systemd-analyze", "security", unit, "--no-pager"]);
    let exposure: f64 = security
        .lines()
        .find_map(|l| l.split("Overall exposure level for switchboard.service:").nth(1))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level:\n{security}"));
    assert!(exposure <= 2.0, "exposure {exposure}:\n{security}");
    // The watchdog (10 s) is pinged: twelve seconds later the same process still runs.
    std::thread::sleep(Duration::from_secs(12));
    assert_eq!((container.property(unit, "MainPID"), container.property(unit, "NRestarts")), (pid.clone(), "0".into()));

    // Reload: a token (from the credential), an api channel and a mail channel (a private Dovecot
    // and SMTP server on the shared loopback) come in live, in the same process.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mail = runtime.block_on(MailServers::start());
    let auth = format!("Authorization: Bearer {token}");
    assert!(http_request("GET", &url("/v1/events?after=0"), &auth, None).unwrap().starts_with("HTTP/1.1 401"));
    let config = root.join("etc/switchboard/switchboard.toml");
    let packaged = std::fs::read_to_string(&config).unwrap();
    let added = format!(
        "{packaged}\n[[tokens]]\nname = \"ops\"\ntoken_file = \"$CREDENTIALS_DIRECTORY/ops-token\"\nscopes = [\"send\", \"read\", \"admin\"]\n\
         [[channels]]\nid = \"web\"\ntype = \"api\"\n{}",
        mail.channel("support", "")
    );
    std::fs::write(&config, &added).unwrap();
    container.ok(&["systemctl", "reload", unit]);
    let body = r#"{"from": {"address": "visitor-1"}, "text": "Hello", "external_id": "x-1", "thread": "t-1"}"#;
    let accepted = wait_for("the reloaded channel", || {
        http_request("POST", &url("/v1/channels/web/inbound"), &auth, Some(body))
            .filter(|a| a.starts_with("HTTP/1.1 202"))
    });
    let message_id = json_body(&accepted)["message_id"].as_str().unwrap().to_owned();
    assert_eq!(container.property(unit, "MainPID"), pid, "a reload is not a restart");
    // Mail in over IMAP and a reply out over SMTP, from within the unit's sandbox.
    let written = mail_servers::mail(ANN.0, SUPPORT.0, "Under systemd", "systemd-1@example.org", "", "Hello from Ann");
    runtime.block_on(mail.append(SUPPORT, &written));
    let received = wait_for("the mail as an event", || {
        let events = json_body(&http_request("GET", &url("/v1/events?after=0"), &auth, None)?);
        let events = events["events"].as_array()?.clone();
        events.into_iter().find(|e| e["type"] == "message.received" && e["data"]["subject"] == "Under systemd")
    });
    let reply = format!(
        r#"{{"conversation_id": "{}", "text": "Hi Ann"}}"#,
        received["data"]["conversation_id"].as_str().unwrap()
    );
    let queued = http_request("POST", &url("/v1/messages"), &auth, Some(&reply)).unwrap();
    assert!(queued.starts_with("HTTP/1.1 202"), "{queued}");
    wait_for("the reply in Ann's mailbox", || {
        let inbox = runtime.block_on(mail.inbox(ANN));
        inbox.iter().any(|(_, _, source)| String::from_utf8_lossy(source).contains("Hi Ann")).then_some(())
    });

    // A broken file: the gateway refuses it and keeps running on the config it has, and
    // `systemctl reload` fails; the journal's priority filter shows why.
    std::fs::write(&config, "[server\nlisten =").unwrap();
    let (reloaded, said) = container.run(&["systemctl", "reload", unit]);
    assert!(!reloaded, "a broken config must not reload: {said}");
    // journald takes the lines in asynchronously: read again until they are all there (15 s).
    let lines = [
        "configuration refused; the running configuration is kept",
        "configuration refused (1 problem(s)); the running one is kept:",
        "not valid TOML",
    ];
    let deadline = Instant::now() + Duration::from_secs(15);
    let errors = loop {
        let errors = container.ok(&["journalctl", "-u", unit, "-p", "err", "--no-pager", "-o", "cat"]);
        if lines.iter().all(|line| errors.contains(line)) || Instant::now() > deadline {
            break errors;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    for line in lines {
        assert!(errors.contains(line), "{line}:\n{errors}");
    }
    assert_eq!(container.property(unit, "ActiveState"), "active");
    assert_eq!(container.property(unit, "MainPID"), pid);
    let read = http_request("GET", &url(&format!("/v1/messages/{message_id}")), &auth, None).unwrap();
    assert!(read.starts_with("HTTP/1.1 200"), "the running config is kept: {read}");
    std::fs::write(&config, &added).unwrap();

    // Upgrade (the same package again): restarted, and the state is still there. Then a crash
    // (SIGKILL): systemd starts it again (Restart=on-failure), and the state is still there.
    let restarted_after = |what: &str, before: &str| {
        wait_for(what, || {
            let now = container.property(unit, "MainPID");
            (container.property(unit, "ActiveState") == "active" && now != before && now != "0").then_some(now)
        })
    };
    let still_there = |what: &str| {
        let read = wait_for(what, || {
            http_request("GET", &url(&format!("/v1/messages/{message_id}")), &auth, None)
                .filter(|a| a.starts_with("HTTP/1.1 200"))
        });
        assert!(read.contains("\"text\":\"Hello\""), "{read}");
    };
    container.ok(&["dpkg", "-i", "/root/switchboard.deb"]);
    let upgraded = restarted_after("the restarted service", &pid);
    still_there("the message after the upgrade");
    container.ok(&["systemctl", "kill", "-s", "KILL", "--kill-whom=main", unit]);
    restarted_after("the service started again after a crash", &upgraded);
    assert_eq!(container.property(unit, "NRestarts"), "1");
    still_there("the message after the crash");

    // Stop: a clean exit (status 0, drained), not a kill at TimeoutStopSec.
    container.ok(&["systemctl", "stop", unit]);
    assert_eq!(container.property(unit, "ActiveState"), "inactive");
    assert_eq!(
        (container.property(unit, "Result"), container.property(unit, "ExecMainStatus")),
        ("success".into(), "0".into())
    );
    wait_for("the drain in the journal", || {
        journal().contains("shutting down: intake stopped, draining work in flight").then_some(())
    });
    // Removing the package stops and disables the unit; the state stays.
    container.ok(&["systemctl", "start", unit]);
    container.ok(&["dpkg", "-r", "switchboard"]);
    assert_eq!(container.property(unit, "ActiveState"), "inactive");
    assert!(root.join("var/lib/switchboard/switchboard.db").is_file());
}
