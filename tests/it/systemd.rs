//! The systemd side of the appliance: the unit passes `systemd-analyze verify` and rates ≤ 2.0 in
//! `systemd-analyze security --offline=true`; the binary sends READY=1, watchdog pings and
//! STOPPING=1 on a real NOTIFY_SOCKET.

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::config_text;

/// The unit with ExecStart pointing at the binary under test (verify checks it exists).
fn unit_under_test(dir: &std::path::Path) -> std::path::PathBuf {
    let unit = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/switchboard.service")).unwrap();
    let path = dir.join("switchboard.service");
    std::fs::write(&path, unit.replace("/usr/bin/switchboard", env!("CARGO_BIN_EXE_switchboard"))).unwrap();
    path
}

fn analyze(args: &[&str]) -> (bool, String) {
    let out = Command::new("systemd-analyze")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("systemd-analyze: {e} (apt-get install systemd; tests/run.sh does)"));
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn the_unit_verifies_and_is_hardened() {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_under_test(dir.path());
    let (ok, out) = analyze(&["verify", unit.to_str().unwrap()]);
    assert!(ok && !out.contains("switchboard.service:"), "systemd-analyze verify:\n{out}");
    let (_, out) = analyze(&["security", "--offline=true", unit.to_str().unwrap()]);
    let level: f64 = out
        .lines()
        .find_map(|l| l.split("Overall exposure level for switchboard.service:").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{out}"));
    assert!(level <= 2.0, "exposure {level} > 2.0:\n{out}");
    let unit_text = std::fs::read_to_string(&unit).unwrap();
    for line in [
        "Type=notify",
        "ExecStartPre=",
        "ExecReload=",
        "WatchdogSec=",
        "StateDirectory=switchboard",
        "ConfigurationDirectory=switchboard",
    ] {
        assert!(unit_text.contains(line), "the unit lacks {line}");
    }
}

/// Reads notify datagrams into `messages` until `done` holds (10 s at most).
fn receive_until(socket: &UnixDatagram, messages: &mut Vec<String>, done: &dyn Fn(&[String]) -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 4096];
    while !done(messages) {
        assert!(Instant::now() < deadline, "no {what}; got {messages:?}");
        if let Ok(n) = socket.recv(&mut buf) {
            messages.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
}

#[test]
fn ready_watchdog_and_stopping_reach_the_notify_socket() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let port = crate::harness::free_port();
    let config = dir.path().join("switchboard.toml");
    std::fs::write(&config, config_text(dir.path(), &format!("127.0.0.1:{port}"), "")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["run", "--config"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "400000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut messages: Vec<String> = Vec::new();
    receive_until(&socket, &mut messages, &|m| m.iter().any(|s| s.lines().any(|l| l == "READY=1")), "READY=1");
    // Listening by the time READY=1 is sent.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    receive_until(
        &socket,
        &mut messages,
        &|m| m.iter().filter(|s| s.contains("WATCHDOG=1")).count() >= 2,
        "two watchdog pings",
    );
    // `systemctl reload` sends SIGHUP: RELOADING=1, then READY=1 again, and the service stays up.
    Command::new("kill").args(["-HUP", &child.id().to_string()]).status().unwrap();
    receive_until(&socket, &mut messages, &|m| m.iter().any(|s| s.lines().any(|l| l == "RELOADING=1")), "RELOADING=1");
    let reloading = messages.iter().position(|s| s.contains("RELOADING=1")).unwrap();
    receive_until(
        &socket,
        &mut messages,
        &|m| m[reloading..].iter().any(|s| s.lines().any(|l| l == "READY=1")),
        "READY=1 after the reload",
    );
    assert!(messages[reloading].contains("MONOTONIC_USEC="), "{messages:?}");
    assert!(child.try_wait().unwrap().is_none(), "SIGHUP stopped the process");
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    receive_until(&socket, &mut messages, &|m| m.iter().any(|s| s.lines().any(|l| l == "STOPPING=1")), "STOPPING=1");
    assert!(child.wait().unwrap().success());
}

#[test]
fn under_journald_lines_carry_priorities_and_no_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let port = crate::harness::free_port();
    let config = dir.path().join("switchboard.toml");
    let text =
        config_text(dir.path(), &format!("127.0.0.1:{port}"), "").replace("level = \"warn\"", "level = \"info\"");
    std::fs::write(&config, &text).unwrap();
    let log = dir.path().join("stderr");
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["run", "--config"])
        .arg(&config)
        .env("JOURNAL_STREAM", "8:12345")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the binary did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    // A reload with a setting that only a restart applies: reported as a warning.
    std::fs::write(&config, text.replace("level = \"info\"", "level = \"debug\"")).unwrap();
    Command::new("kill").args(["-HUP", &child.id().to_string()]).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&log).unwrap().contains("configuration reloaded") {
        assert!(Instant::now() < deadline, "no reload: {}", std::fs::read_to_string(&log).unwrap());
        std::thread::sleep(Duration::from_millis(50));
    }
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(child.wait().unwrap().success());
    let text = std::fs::read_to_string(&log).unwrap();
    let started = text.lines().find(|l| l.contains("switchboard started")).unwrap_or_else(|| panic!("{text}"));
    assert!(started.starts_with("<6>"), "{started}");
    // The level comes right after the priority: no timestamp before it, and no colour codes.
    assert!(started["<6>".len()..].trim_start().starts_with("INFO"), "{started}");
    assert!(!started.contains('\u{1b}'), "no colour: {started}");
    let hup = text.lines().find(|l| l.contains("SIGHUP received")).unwrap_or_else(|| panic!("{text}"));
    assert!(hup.starts_with("<6>"), "{hup}");
    let restart = text.lines().find(|l| l.contains("log.level changed")).unwrap_or_else(|| panic!("{text}"));
    assert!(restart.starts_with("<4>"), "{restart}");
}

#[test]
fn json_logs_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let port = crate::harness::free_port();
    let config = dir.path().join("switchboard.toml");
    let text = config_text(dir.path(), &format!("127.0.0.1:{port}"), "")
        .replace("level = \"warn\"", "level = \"info\"\nformat = \"json\"");
    std::fs::write(&config, &text).unwrap();
    let log = dir.path().join("stderr");
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["run", "--config"])
        .arg(&config)
        .env("JOURNAL_STREAM", "8:12345")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the binary did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(child.wait().unwrap().success());
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> =
        text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    let started = lines.iter().find(|l| l["message"] == "switchboard started").unwrap_or_else(|| panic!("{text}"));
    assert_eq!(started["level"], "INFO", "{started}");
    assert_eq!(started["listen"], format!("127.0.0.1:{port}"), "{started}");
    assert!(started["timestamp"].is_string(), "{started}");
}
