//! packaging/build.sh builds a static binary with no dynamic dependencies and no OpenSSL, with
//! the git revision in `switchboard version`. (Runs a release build in its own target dir.)

use std::process::Command;

#[test]
fn build_script_makes_a_static_binary() {
    let root = env!("CARGO_MANIFEST_DIR");
    let target = format!("{root}/target/packaging-test");
    let out = Command::new(format!("{root}/packaging/build.sh"))
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .expect("packaging/build.sh runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    let binary = format!("{target}/x86_64-unknown-linux-gnu/release/switchboard");
    let file = Command::new("file").arg(&binary).output().expect("file(1) (apt-get install file)");
    let file = String::from_utf8_lossy(&file.stdout);
    assert!(file.contains("static-pie linked") || file.contains("statically linked"), "{file}");
    let rev = Command::new("git").args(["rev-parse", "--short=12", "HEAD"]).current_dir(root).output().unwrap();
    let rev = String::from_utf8_lossy(&rev.stdout).trim().to_owned();
    let version = Command::new(&binary).arg("version").output().unwrap();
    let version = String::from_utf8_lossy(&version.stdout);
    assert!(version.contains(env!("CARGO_PKG_VERSION")) && version.contains(&rev), "{version}");
}
