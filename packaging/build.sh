#!/usr/bin/env bash
# Builds the static release binary (rustls only, no OpenSSL, no dynamic dependencies) with the
# version and git revision embedded, and checks it. Usage: packaging/build.sh
# Output: ${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-gnu/release/switchboard
# (The Debian package step is issue 4's remaining work; see the closing notes.)
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
