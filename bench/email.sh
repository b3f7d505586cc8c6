#!/usr/bin/env bash
# Email channel figures for BENCHMARKS.md (issue 3). Run by hand, never in CI:
#   bench/email.sh              (N=10000 mails for the backlog; about 5 minutes)
# Needs dovecot-imapd and dovecot-lmtpd (tests/run.sh installs them). Starts a private Dovecot,
# then measures:
#   1. backlog: N mails of ~8 KB (text + HTML + attachment) imported from IMAP into events and
#      delivered to a webhook, against a plain IMAP client fetching the same mailbox (ratio);
#      RSS sampled every 0.1 s during the import (flat memory);
#   2. new mail with IDLE: APPEND → webhook received, p50/p95 over 200 mails, 20 per second.
# STAGES=1 adds where the import's time goes: a build with bench/import-stages.patch (in a git
# worktree; never part of the product) times the import inside the gateway, from UID SEARCH to
# the last commit (the raw client's clock also starts after login), and can leave out the store
# transaction (SB_STAGES_NO_COMMIT) or also the MIME parsing and blob writing
# (SB_STAGES_NO_PARSE); SB_STAGES_ALL leaves nothing out. 3 runs each; about 3 more minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-10000}
TARGET=x86_64-unknown-linux-gnu
RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --locked --target $TARGET -p switchboard >&2
cargo build --release --locked -p switchboard-bench >&2
BIN=$PWD/target/$TARGET/release/switchboard
SB=$PWD/target/release/sbbench

work=$(mktemp -d); chmod 755 "$work"
trap 'kill $(jobs -p) 2>/dev/null || true; sleep 0.5; rm -rf "$work"' EXIT
imap=18143; lmtp=18024; port=18080; hook=18098
mkdir -p "$work/mail" "$work/run" "$work/state"
chown dovecot:dovecot "$work/mail"
printf 'support@example.com:{PLAIN}support-pass\nann@example.org:{PLAIN}ann-pass\n' > "$work/users"
cat > "$work/dovecot.conf" <<CONF
protocols = imap lmtp
listen = 127.0.0.1
base_dir = $work/run
state_dir = $work/state
log_path = $work/dovecot.log
ssl = no
disable_plaintext_auth = no
mail_location = maildir:$work/mail/%u
first_valid_uid = $(id -u dovecot)
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $work/users
}
userdb {
  driver = static
  args = uid=$(id -u dovecot) gid=$(id -g dovecot) home=$work/mail/%u
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $imap
  }
  inet_listener imaps {
    port = 0
  }
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = $lmtp
  }
}
CONF
dovecot -F -c "$work/dovecot.conf" & sleep 1

config() { # $1 = dir, $2 = mailbox user, $3 = password
  mkdir -p "$1"
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
id = "support"
type = "email"
address = "$2"
[channels.imap]
host = "127.0.0.1"
port = $imap
tls = "none"
username = "$2"
password = "$3"
[[webhooks]]
id = "bench"
url = "http://127.0.0.1:$hook/events"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
events = ["message.received"]
TOML
}
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

echo "machine: $(nproc) cores; dovecot $(dovecot --version | cut -d' ' -f1)"
echo "filling the mailbox: $("$SB" imap-append $imap support@example.com support-pass --count "$N" --size 8192)"
# Both sides are short (about a second): repeat them and take medians.
for i in 1 2 3 4 5; do "$SB" imap-fetch $imap support@example.com support-pass; done > "$work/fetch"
echo "raw fetch (plain IMAP client), 5 runs, mails/s: $(grep -o '"per_s":[0-9.]*' "$work/fetch" | cut -d: -f2 | sort -n | tr '\n' ' ')"
raw=$(grep -o '"per_s":[0-9.]*' "$work/fetch" | cut -d: -f2 | sort -n | sed -n 3p)

# Into events only: no consumer; the committed count is polled from the database. 3 runs.
: > "$work/import"
for run in 1 2 3; do
  d="$work/events-only-$run"; config "$d" support@example.com support-pass
  sed -i '/^\[\[webhooks\]\]/,$d' "$d/switchboard.toml"
  t0=$(date +%s%N)
  "$BIN" run --config "$d/switchboard.toml" >"$d/out" 2>"$d/log" & pid=$!
  until [ -f "$d/var/switchboard.db" ] && [ "$(sqlite3 "$d/var/switchboard.db" "select count(*) from messages" 2>/dev/null || echo 0)" -ge "$N" ]; do sleep 0.05; done
  t1=$(date +%s%N)
  echo "$N * 1000000000 / ($t1 - $t0)" | bc >> "$work/import"
  kill -TERM $pid; wait $pid 2>/dev/null || true
done
imported=$(sort -n "$work/import" | sed -n 2p)
echo "backlog import into events (no consumer), 3 runs, mails/s: $(sort -n "$work/import" | tr '\n' ' ')"
echo "median import $imported mails/s vs median raw fetch $raw mails/s = $(echo "100 * $imported / $raw" | bc) %"

if [ "${STAGES:-0}" = 1 ]; then
  stages=$PWD/target/stages-src
  git worktree remove --force "$stages" 2>/dev/null || true
  git worktree add --detach "$stages" HEAD >&2
  git -C "$stages" apply "$PWD/bench/import-stages.patch"
  # Same target dir: only switchboard itself is compiled again (as a plain release build).
  target_dir=$PWD/target
  (cd "$stages" && CARGO_TARGET_DIR="$target_dir" cargo build --release --locked -p switchboard) >&2
  cp target/release/switchboard "$work/switchboard-stages"
  git worktree remove --force "$stages"
  for variant in SB_STAGES_ALL SB_STAGES_NO_COMMIT SB_STAGES_NO_PARSE; do
    : > "$work/stages"
    for run in 1 2 3; do
      d="$work/stages-$variant-$run"; config "$d" support@example.com support-pass
      sed -i '/^\[\[webhooks\]\]/,$d' "$d/switchboard.toml"
      env "$variant=1" "$work/switchboard-stages" run --config "$d/switchboard.toml" >"$d/out" 2>"$d/log" & pid=$!
      until grep -q "STAGES import" "$d/log"; do sleep 0.05; done
      grep -o "in [0-9]* ms" "$d/log" | cut -d' ' -f2 >> "$work/stages"
      kill -TERM $pid; wait $pid 2>/dev/null || true
    done
    ms=$(sort -n "$work/stages" | sed -n 2p)
    echo "import stages, $variant: $(sort -n "$work/stages" | tr '\n' ' ')ms (SEARCH → last commit); median $ms ms = $(echo "$N * 1000 / $ms" | bc) mails/s = $(echo "100 * $N * 1000 / $ms / $raw" | bc) % of the raw fetch"
  done
fi

# Into events and delivered to a webhook consumer.
d="$work/backlog"; config "$d" support@example.com support-pass
"$SB" receive $hook --expect "$N" > "$d/received" & rpid=$!
t0=$(date +%s%N)
"$BIN" run --config "$d/switchboard.toml" >"$d/out" 2>"$d/log" & pid=$!
: > "$d/rss"; (while kill -0 $pid 2>/dev/null; do echo "$(rss_kb $pid)" >> "$d/rss"; sleep 0.1; done) &
wait $rpid; t1=$(date +%s%N)
secs=$(echo "scale=2; ($t1 - $t0) / 1000000000" | bc)
echo "backlog import into events and delivered to a webhook: $N mails in ${secs}s = $(echo "$N / $secs" | bc) mails/s"
# In time order (flat = no growth with the backlog), then summarised.
echo "RSS every 0.1 s during the import, MB: $(awk 'NF && $1>0 {printf "%d ", $1/1024}' "$d/rss")"
sort -n "$d/rss" | awk 'NF && $1>0 {a[NR]=$1} END {n=length(a); printf "RSS during the import: min %d MB, median %d MB, max %d MB (%d samples)\n", a[1]/1024, a[int((n+1)/2)]/1024, a[n]/1024, n}'
kill -TERM $pid; wait $pid 2>/dev/null || true

d="$work/idle"; config "$d" ann@example.org ann-pass
"$SB" receive $hook --expect 200 > "$d/received" & rpid=$!
"$BIN" run --config "$d/switchboard.toml" >"$d/out" 2>"$d/log" & pid=$!
sleep 2
"$SB" imap-append $imap ann@example.org ann-pass --count 200 --interval-ms 50 --size 4096 >/dev/null
wait $rpid
echo "new mail with IDLE, APPEND → webhook received (200 mails, 20/s): $(cat "$d/received")"
kill -TERM $pid; wait $pid 2>/dev/null || true
