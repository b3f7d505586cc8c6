#!/usr/bin/env bash
# Fuzzes the email channel's inbound mail path (fuzz_targets/mail.rs) with libFuzzer, by hand,
# not in CI: `fuzz/run.sh [SECONDS]` (default 600); `fuzz/run.sh hostile` times the hand-made
# hostile mails of fuzz/hostile.py through the same target instead. Needs cargo-fuzz (cargo install --locked
# cargo-fuzz); this machine's stable Rust is told to accept cargo-fuzz's nightly flags
# (RUSTC_BOOTSTRAP=1). The corpus starts from the test fixtures, fuzz/seeds/ and, when tests/run.sh has
# fetched them, Mailman's real bounces; what libFuzzer finds (crash-*, timeout-*, slow-unit-*)
# lands in fuzz/artifacts/mail/. A mail slower than 10 s is a finding: in the gateway it would
# hold its folder.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = hostile ]; then
  RUSTC_BOOTSTRAP=1 cargo fuzz build mail -O
  python3 fuzz/hostile.py fuzz/corpus/hostile
  for mail in fuzz/corpus/hostile/*; do
    start=$(date +%s%N)
    fuzz/target/x86_64-unknown-linux-gnu/release/mail -timeout=60 -rss_limit_mb=8192 "$mail" >/dev/null 2>&1 \
      || echo "$mail: failed (fuzz/target/…/mail $mail shows why)"
    printf '%-22s %6d ms\n' "$(basename "$mail")" $(( ($(date +%s%N) - start) / 1000000 ))
  done
  exit 0
fi
seconds=${1:-600}
corpus=fuzz/corpus/mail
mkdir -p "$corpus"
cp -n tests/fixtures/email/*.eml "$corpus"/
cp -n fuzz/seeds/*.eml "$corpus"/
if [ -d target/test-data/flufl_bounce-6.0.0/tests/data ]; then
  cp -n target/test-data/flufl_bounce-6.0.0/tests/data/* "$corpus"/
fi
RUSTC_BOOTSTRAP=1 cargo fuzz run mail -O "$corpus" -- \
  -max_len=131072 -timeout=10 -rss_limit_mb=4096 -max_total_time="$seconds" -print_final_stats=1
