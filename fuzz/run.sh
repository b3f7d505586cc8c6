#!/usr/bin/env bash
# Fuzzes the email channel's inbound mail path (fuzz_targets/mail.rs) with libFuzzer, by hand,
# not in CI: `fuzz/run.sh [SECONDS]` (default 600). Needs cargo-fuzz (cargo install --locked
# cargo-fuzz); this machine's stable Rust is told to accept cargo-fuzz's nightly flags
# (RUSTC_BOOTSTRAP=1). The corpus starts from the test fixtures and, when tests/run.sh has
# fetched them, Mailman's real bounces; what libFuzzer finds (crash-*, timeout-*, slow-unit-*)
# lands in fuzz/artifacts/mail/. A mail slower than 10 s is a finding: in the gateway it would
# hold its folder.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
corpus=fuzz/corpus/mail
mkdir -p "$corpus"
cp -n tests/fixtures/email/*.eml "$corpus"/
if [ -d target/test-data/flufl_bounce-6.0.0/tests/data ]; then
  cp -n target/test-data/flufl_bounce-6.0.0/tests/data/* "$corpus"/
fi
RUSTC_BOOTSTRAP=1 cargo fuzz run mail -O "$corpus" -- \
  -max_len=131072 -timeout=10 -rss_limit_mb=4096 -max_total_time="$seconds" -print_final_stats=1
