#!/usr/bin/env bash
# storage.retention figures for BENCHMARKS.md. Run by hand, never in CI:
#   bench/retention.sh            (N_SECONDS=20 of filling; about 3 minutes after the build;
#                                  needs curl, sqlite3 and libfaketime: apt-get install faketime)
# Fills a gateway's store through its HTTP API for N_SECONDS as fast as it takes items (an api
# channel, each item with a distinct attachment of ATTACHMENT_BYTES), with its clock set two
# days back by libfaketime (so the build here is the dynamic one: faketime cannot reach into
# the static binary); then restarts it on the real clock with `retention = "1d"`, so all of it
# is old, and measures one `POST /v1/storage/prune`: how long it takes, what it removed, the
# space under storage.path before and after, and the latency of inbound requests sent at a
# steady rate meanwhile (the prune shares the store's one writer), against the same load
# without a prune.
set -euo pipefail
cd "$(dirname "$0")/.."
N_SECONDS=${N_SECONDS:-20}
ATTACHMENT_BYTES=${ATTACHMENT_BYTES:-8192}
[ -e /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 ] || { echo "needs libfaketime (apt-get install faketime)" >&2; exit 1; }
cargo build --release --locked -p switchboard >&2
cargo build --release --locked -p switchboard-bench >&2
BIN=$PWD/target/release/switchboard
LOAD=$PWD/target/release/sbbench
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
port=18081
token=dev-token-change-me
config() { # $1 = retention line
  cat > "$work/switchboard.toml" <<TOML
[server]
listen = "127.0.0.1:$port"
public_url = "http://127.0.0.1:$port"
max_body_bytes = 1048576
[storage]
path = "$work/var"
$1
[log]
level = "info"
[[tokens]]
name = "bench"
token = "$token"
scopes = ["send", "read", "admin"]
[[channels]]
id = "web"
type = "api"
TOML
}
start() { # $@ = environment (the fake clock); prints the pid once /healthz answers
  env "$@" "$BIN" run --config "$work/switchboard.toml" >>"$work/out" 2>>"$work/log" &
  local pid=$!
  for _ in $(seq 1 1000); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.01; done
  echo $pid
}
stop() { kill -TERM "$1"; wait "$1" 2>/dev/null || true; }
space() { du -sb "$work/var" | cut -f1; }
inbound="http://127.0.0.1:$port/v1/channels/web/inbound"

echo "machine: $(nproc) cores, $(uname -r); commit $(git rev-parse --short HEAD)"
config ""
# libfaketime preloaded straight into the gateway (the faketime wrapper would stand between a
# signal and it).
pid=$(start LD_PRELOAD=/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 FAKETIME=-2d)
echo "fill (two days ago): $("$LOAD" load "$inbound" --concurrency 16 --seconds "$N_SECONDS" --attachment-bytes "$ATTACHMENT_BYTES")"
stop "$pid"
messages=$(sqlite3 "$work/var/switchboard.db" "SELECT count(*) FROM messages" 2>/dev/null || echo "?")
echo "stored: $messages messages, $(ls "$work/var/blobs/packs" | wc -l) packs, $(space) bytes under storage.path"

config 'retention = "1d"'
pid=$(start)
echo "steady load, no prune: $("$LOAD" load "$inbound" --concurrency 4 --seconds 10 --rate 200)"
# Long enough to cover the prune (its time is printed: compare).
"$LOAD" load "$inbound" --concurrency 4 --seconds "${DURING_SECONDS:-60}" --rate 200 > "$work/during" &
loader=$!
sleep 2
t0=$(date +%s%N)
pruned=$(curl -sf -X POST -H "authorization: Bearer $token" "http://127.0.0.1:$port/v1/storage/prune")
t1=$(date +%s%N)
wait $loader
echo "prune: $(( (t1 - t0) / 1000000 )) ms: $pruned"
echo "steady load during the prune: $(cat "$work/during")"
stop "$pid"
echo "after: $(ls "$work/var/blobs/packs" | wc -l) packs, $(space) bytes under storage.path"
