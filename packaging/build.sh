#!/usr/bin/env bash
# Builds the static release binary (rustls only, no OpenSSL, no dynamic dependencies) with the
# version and git revision embedded, checks it, and packages it as a .deb with cargo-deb.
# Usage: packaging/build.sh        (needs cargo-deb: cargo install cargo-deb --locked)
# Output: ${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-gnu/release/switchboard
#         ${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-gnu/debian/switchboard_<version>_amd64.deb
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=x86_64-unknown-linux-gnu
SWITCHBOARD_GIT_REV=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
export SWITCHBOARD_GIT_REV
RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --locked --target "$TARGET" -p switchboard
BIN=${CARGO_TARGET_DIR:-target}/$TARGET/release/switchboard
[ -x "$BIN" ] || { echo "error: $BIN was not built" >&2; exit 1; }

# A static-pie executable has no PT_INTERP and no NEEDED entries.
if readelf -d "$BIN" | grep -q '(NEEDED)'; then
  echo "error: $BIN has dynamic dependencies:" >&2
  readelf -d "$BIN" | grep '(NEEDED)' >&2
  exit 1
fi
if readelf -l "$BIN" | grep -q 'Requesting program interpreter'; then
  echo "error: $BIN asks for a dynamic loader" >&2
  exit 1
fi
# rustls only: OpenSSL must not be anywhere in the dependency graph.
if cargo tree --locked -p switchboard -e normal -i openssl-sys >/dev/null 2>&1; then
  echo "error: openssl-sys is in the dependency graph:" >&2
  cargo tree --locked -p switchboard -e normal -i openssl-sys >&2
  exit 1
fi
"$BIN" version
echo "static binary: $BIN ($(stat -c %s "$BIN") bytes)"

# Man pages and shell completions, generated from the CLI definition, next to the binary where
# the [package.metadata.deb] assets expect them.
OUT=$(dirname "$BIN")
rm -rf "$OUT/man" "$OUT/completions"
mkdir -p "$OUT/man" "$OUT/completions"
"$BIN" man "$OUT/man"
gzip -9n "$OUT"/man/*.1
"$BIN" completions bash >"$OUT/completions/switchboard.bash"
"$BIN" completions zsh >"$OUT/completions/_switchboard"
"$BIN" completions fish >"$OUT/completions/switchboard.fish"

command -v cargo-deb >/dev/null || { echo "error: cargo-deb is missing (cargo install cargo-deb --locked)" >&2; exit 1; }
cargo deb --no-build --locked --target "$TARGET" -p switchboard
ls -1 "${CARGO_TARGET_DIR:-target}/$TARGET/debian/"*.deb
