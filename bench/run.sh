#!/usr/bin/env bash
# Reproduces every figure in BENCHMARKS.md for the core. Run by hand, never in CI:
#   bench/run.sh            (about 4 minutes; needs curl)
# Builds the static release binary, then for each scenario starts a fresh gateway with its
# state in a temp dir and drives it with bench/ (sbbench) over loopback. The load generator and
# the gateway share the machine's cores, as they would on a small appliance.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
E2E_SECONDS=${E2E_SECONDS:-20}
TARGET=x86_64-unknown-linux-gnu

RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --locked --target $TARGET -p switchboard >&2
cargo build --release --locked -p switchboard-bench >&2
BIN=target/$TARGET/release/switchboard
LOAD=target/release/sbbench
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

port=18080
config() { # $1 = dir, $2 = extra TOML
  cat > "$1/switchboard.toml" <<TOML
[server]
listen = "127.0.0.1:$port"
public_url = "http://127.0.0.1:$port"
[storage]
path = "$1/var"
[log]
level = "warn"
[[tokens]]
name = "bench"
token = "dev-token-change-me"
scopes = ["send", "read", "admin"]
[[channels]]
id = "web"
type = "api"
$2
TOML
}
start() { # $1 = dir; prints the pid, waits for /healthz
  "$BIN" run --config "$1/switchboard.toml" >"$1/out" 2>"$1/log" &
  local pid=$!
  for _ in $(seq 1 500); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.01; done
  echo $pid
}
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
stop() { kill -TERM "$1"; wait "$1" 2>/dev/null || true; }

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GB", $2/1048576}' /proc/meminfo), $(uname -r)"
echo "binary: $(stat -c %s "$BIN") bytes; $(file -b "$BIN" | cut -d, -f1-4)"

# Start-up: exec → /healthz answers (includes opening the store and migrations on a new dir).
d="$work/startup"; mkdir -p "$d"; config "$d" ""
t0=$(date +%s%N); pid=$(start "$d"); t1=$(date +%s%N)
echo "startup_ms: $(( (t1 - t0) / 1000000 ))"
sleep 5; echo "idle_rss_mb: $(( $(rss_kb "$pid") / 1024 ))"; stop "$pid"

# Durable ingest at 1, 16, 64 connections; the same load against a do-nothing hyper server.
for c in 1 16 64; do
  d="$work/ingest-$c"; mkdir -p "$d"; config "$d" ""
  pid=$(start "$d")
  peak=0; (while kill -0 "$pid" 2>/dev/null; do r=$(rss_kb "$pid" || echo 0); [ "$r" -gt "$peak" ] && peak=$r && echo "$peak" > "$d/peak"; sleep 0.2; done) &
  result=$("$LOAD" load "http://127.0.0.1:$port/v1/channels/web/inbound" --concurrency $c --seconds "$SECONDS_PER_RUN")
  echo "ingest c=$c: $result rss_peak_mb=$(( $(cat "$d/peak") / 1024 ))"
  stop "$pid"
  "$LOAD" null 18099 >/dev/null & npid=$!; sleep 0.3
  echo "null   c=$c: $("$LOAD" load "http://127.0.0.1:18099/" --concurrency $c --seconds "$SECONDS_PER_RUN")"
  kill $npid; wait $npid 2>/dev/null || true
done

# End to end: inbound POST → webhook received, at 1,000 msg/s sustained.
d="$work/e2e"; mkdir -p "$d"
config "$d" "[[webhooks]]
id = \"bench\"
url = \"http://127.0.0.1:18098/events\"
secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"
events = [\"message.received\"]"
expect=$(( 1000 * E2E_SECONDS * 98 / 100 ))
"$LOAD" receive 18098 --expect $expect > "$d/e2e" & rpid=$!
pid=$(start "$d")
load=$("$LOAD" load "http://127.0.0.1:$port/v1/channels/web/inbound" --concurrency 32 --seconds "$E2E_SECONDS" --rate 1000)
echo "e2e load: $load rss_mb=$(( $(rss_kb "$pid") / 1024 ))"
wait $rpid; echo "e2e latency (POST sent → webhook received, first $expect): $(cat "$d/e2e")"
stop "$pid"
