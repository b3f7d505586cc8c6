//! packaging/build.sh builds a static binary (no dynamic dependencies, no OpenSSL, the git
//! revision in `switchboard version`) and the .deb; lintian finds no errors or warnings; the
//! package holds what it should; and it installs, runs, upgrades, is removed and purged in a
//! throwaway Debian root made with debootstrap. (Runs a release build in its own target dir.)

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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
}

/// A minimal Debian (debootstrap minbase), made once and cached under target/, copied fresh for
/// each run. The mirror is the one apt uses here unless SB_DEBIAN_MIRROR says otherwise.
fn debian_root(target: &Path) -> PathBuf {
    let cache = target.join("debootstrap-bookworm");
    if !cache.join(".complete").is_file() {
        let _ = std::fs::remove_dir_all(&cache);
        let mirror = std::env::var("SB_DEBIAN_MIRROR").unwrap_or_else(|_| "http://deb.debian.org/debian".to_owned());
        ok("debootstrap", &["--variant=minbase", "bookworm", cache.to_str().unwrap(), &mirror]);
        std::fs::write(cache.join(".complete"), "").unwrap();
    }
    cache
}

fn install_in_a_throwaway_root(target: &Path, deb: &str) {
    let cache = debian_root(target);
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
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}"))).unwrap_or((rest, "/".to_owned()));
    let mut stream = std::net::TcpStream::connect(host).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    Some(answer)
}
