#!/usr/bin/env bash
# Runs the whole test suite on a fresh Debian machine with Rust, installing what the tests need
# first: Dovecot (IMAP + LMTP + Sieve), Cyrus IMAP (a second IMAP server; unpacked, not installed, since
# it conflicts with Dovecot), Postfix and Exim (real MTAs' DSNs and bounces; Exim unpacked, since
# it conflicts with Postfix) and openssl (test certificates) from Debian for the email channel's
# real mail servers, nginx (a reverse proxy in front of a webhook consumer; unpacked), tnef
# (Debian's winmail.dat decoder, a second reader for ours), Sisimai (libsisimai-perl, a bounce parser our reading of
# bounces is checked against), Mail::AuthenticationResults (libmail-authenticationresults-perl, a
# second reader of Authentication-Results headers), SpamAssassin (a spam filter marking mail as a
# receiving server does); lintian, debootstrap and systemd-nspawn (systemd-container)
# for the package test (which builds a throwaway Debian root from the apt mirror and boots it
# with systemd to run the installed service), and
# cargo-deb from crates.io; from PyPI
# the official verifiers (standardwebhooks, jsonschema, openapi-spec-validator), werkzeug (an
# HTTP library reading our download headers), RTFDE and striprtf (readers of Outlook's RTF
# bodies), flufl.bounce (GNU Mailman's bounce detector, with its corpus of real bounces) and
# aiosmtpd, the real SMTP server the tests send through; from npm oidc-provider, a real OAuth 2.0
# authorization server for the XOAUTH2 tests (Node.js from Debian if missing). Fails — never
# skips — when something cannot be installed.
# Extra arguments go to `cargo test` (e.g. a test name filter).
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages (needs root, or have them installed already).
need_apt=()
command -v dovecot >/dev/null || need_apt+=(dovecot-imapd)
[ -x /usr/lib/dovecot/lmtp ] || need_apt+=(dovecot-lmtpd)
[ -e /usr/lib/dovecot/modules/lib90_sieve_plugin.so ] || need_apt+=(dovecot-sieve)
command -v openssl >/dev/null || need_apt+=(openssl)
{ command -v gpg && command -v gpg-agent; } >/dev/null || need_apt+=(gnupg)
command -v systemd-analyze >/dev/null || need_apt+=(systemd)
command -v file >/dev/null || need_apt+=(file)
command -v readelf >/dev/null || need_apt+=(binutils)
command -v lintian >/dev/null || need_apt+=(lintian)
command -v debootstrap >/dev/null || need_apt+=(debootstrap)
command -v systemd-nspawn >/dev/null || need_apt+=(systemd-container)
command -v postfix >/dev/null || need_apt+=(postfix)
command -v tnef >/dev/null || need_apt+=(tnef)
# The tz database calendar times in a named zone are read from (by the gateway and by Python).
[ -e /usr/share/zoneinfo/Europe/Warsaw ] || need_apt+=(tzdata)
perl -MSisimai -e1 2>/dev/null || need_apt+=(libsisimai-perl)
perl -MMail::AuthenticationResults -e1 2>/dev/null || need_apt+=(libmail-authenticationresults-perl)
command -v spamassassin >/dev/null || need_apt+=(spamassassin)
command -v node >/dev/null || need_apt+=(nodejs)
command -v npm >/dev/null || need_apt+=(npm)
# Roundcube, a customer's webmail sending read receipts, under PHP's built-in web server
# (php8.2-cgi stands in for the web server the php package wants, so no Apache comes along).
[ -e /usr/share/roundcube/index.php ] || need_apt+=(roundcube-core roundcube-sqlite3 php8.2-cgi)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "tests need: apt-get install ${need_apt[*]} (run as root, or install them first)" >&2
    exit 1
  fi
  echo "installing from Debian: ${need_apt[*]}" >&2
  apt-get update -q >/dev/null
  # The tests start private Postfix instances; the system's own stays unconfigured (and off).
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# Servers whose packages conflict with the ones installed above are unpacked, not installed,
# into target/test-data/<name> and run from there; the libraries they link are installed.
# unpack DIR FILE PACKAGE...: unpacks the packages into DIR unless DIR/FILE is there.
unpack() {
  local dir=$1 file=$2; shift 2
  if [ ! -e "$dir/$file" ]; then
    echo "unpacking Debian's $* into $dir" >&2
    rm -rf "$dir-deb" "$dir" && mkdir -p "$dir-deb"
    if ! (cd "$dir-deb" && apt-get download -qq "$@" 2>/dev/null); then
      apt-get update -q >/dev/null
      (cd "$dir-deb" && apt-get download -qq "$@")
    fi
    for deb in "$dir"-deb/*.deb; do dpkg-deb -x "$deb" "$dir"; done
  fi
  local libs=()
  for deb in "$dir"-deb/*.deb; do
    for dep in $(dpkg-deb -f "$deb" Depends | tr ',' '\n' | awk '$1 ~ /^lib/ {print $1}'); do
      dpkg -s "$dep" >/dev/null 2>&1 || libs+=("$dep")
    done
  done
  if [ ${#libs[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || { echo "$* need ${libs[*]} (run as root)" >&2; exit 1; }
    echo "installing from Debian for $*: ${libs[*]}" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${libs[@]}" >/dev/null
  fi
}
# system_user NAME HOME: the user (and group) a server's package would add, for it to drop to.
system_user() {
  id "$1" >/dev/null 2>&1 && return
  [ "$(id -u)" = 0 ] || { echo "the tests need a system user $1 (run as root)" >&2; exit 1; }
  getent group "$1" >/dev/null || groupadd --system "$1"
  useradd --system --gid "$1" --no-create-home --home-dir "$2" --shell /usr/sbin/nologin "$1"
}

# Exim (Debian's exim4-daemon-light), a second real MTA whose bounces and delay warnings the
# email tests read; its package conflicts with Postfix's.
unpack target/test-data/exim4 usr/sbin/exim4 exim4-daemon-light
system_user Debian-exim /var/spool/exim4

# Cyrus IMAP (Debian's cyrus-imapd), a second real IMAP server the email channel is run against;
# its package conflicts with Dovecot's. sasl2-bin brings saslpasswd2, for its test users.
unpack target/test-data/cyrus usr/lib/cyrus/bin/imapd cyrus-imapd cyrus-common sasl2-bin
system_user cyrus /var/lib/cyrus

# nginx (Debian's), the reverse proxy a helpdesk sits behind in the webhook tests: its default
# request body limit is what large events must fit. Unpacked, since its package would start a
# system-wide nginx on port 80.
unpack target/test-data/nginx usr/sbin/nginx nginx

# cargo-deb builds the .deb (packaging/build.sh); pinned so the package test is repeatable.
if ! cargo deb --version >/dev/null 2>&1; then
  echo "installing cargo-deb from crates.io" >&2
  cargo install --quiet --locked cargo-deb --version 3.8.0
fi

python=${SB_TEST_PYTHON:-python3}
command -v "$python" >/dev/null || { echo "tests need $python (apt-get install python3 python3-pip)" >&2; exit 1; }

# module name → PyPI requirement
declare -A wanted=(
  [standardwebhooks]="standardwebhooks==1.1.0"
  [jsonschema]="jsonschema>=4.18"
  [openapi_spec_validator]="openapi-spec-validator>=0.7"
  [aiosmtpd]="aiosmtpd==1.4.6"
  [werkzeug]="werkzeug>=3.0"
  [RTFDE]="RTFDE==0.1.2.2"
  [striprtf]="striprtf==0.0.35"
  [flufl.bounce]="flufl.bounce==6.0.0"
  [deltachat_rpc_client]="deltachat-rpc-client==2.65.0"
  [deltachat_rpc_server]="deltachat-rpc-server==2.65.0"
  [regex]="regex>=2023.10"
  [icalendar]="icalendar==7.3.2"
)
missing=()
for module in "${!wanted[@]}"; do
  "$python" -c "import $module" 2>/dev/null || missing+=("${wanted[$module]}")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing test verifiers from PyPI: ${missing[*]}" >&2
  "$python" -m pip install --quiet --disable-pip-version-check "${missing[@]}" 2>/dev/null \
    || "$python" -m pip install --quiet --disable-pip-version-check --break-system-packages "${missing[@]}"
fi
for module in "${!wanted[@]}"; do
  "$python" -c "import $module" || { echo "cannot import $module after installing it" >&2; exit 1; }
done
export SB_TEST_PYTHON="$python"

# Outlook winmail.dat (TNEF) samples: the test data in tnefparse's source distribution on PyPI,
# written by Outlook and Exchange. The email tests unwrap them and check the files against
# Debian's tnef.
tnef_samples=target/test-data/tnefparse-1.4.0/tests/examples
if [ ! -d "$tnef_samples" ]; then
  echo "downloading TNEF samples (tnefparse 1.4.0 sdist) from PyPI" >&2
  mkdir -p target/test-data
  "$python" -m pip download --quiet --disable-pip-version-check --no-deps --no-binary :all: \
    tnefparse==1.4.0 -d target/test-data
  tar -xzf target/test-data/tnefparse-1.4.0.tar.gz -C target/test-data
fi
export SB_TNEF_SAMPLES="$PWD/$tnef_samples"

# Real bounces from many mail servers: the test data in flufl.bounce's (GNU Mailman's bounce
# detector) source distribution on PyPI. The email tests read each as flufl.bounce does.
bounce_samples=target/test-data/flufl_bounce-6.0.0/tests/data
if [ ! -d "$bounce_samples" ]; then
  echo "downloading bounce samples (flufl.bounce 6.0.0 sdist) from PyPI" >&2
  mkdir -p target/test-data
  "$python" -m pip download --quiet --disable-pip-version-check --no-deps --no-binary :all: \
    flufl.bounce==6.0.0 -d target/test-data
  tar -xzf target/test-data/flufl_bounce-6.0.0.tar.gz -C target/test-data
fi
export SB_FLUFL_BOUNCE_SAMPLES="$PWD/$bounce_samples"

# Replies from many mail clients with the reply each should give, and messages with their
# signatures: the test data of talon (Mailgun's quotation and signature stripper) in its source
# distribution on PyPI. The email tests cut each as talon does (tests/python/talon_replies.py
# reads the cases out of talon's tests and runs its signature extractor, which needs `regex`).
talon_samples=target/test-data/talon-1.4.4
if [ ! -d "$talon_samples/tests/fixtures/standard_replies" ]; then
  echo "downloading reply samples (talon 1.4.4 sdist) from PyPI" >&2
  mkdir -p target/test-data
  "$python" -m pip download --quiet --disable-pip-version-check --no-deps --no-binary :all: \
    talon==1.4.4 -d target/test-data
  tar -xzf target/test-data/talon-1.4.4.tar.gz -C target/test-data
fi
export SB_TALON_SAMPLES="$PWD/$talon_samples"

# Peers from npm, pinned by tests/node/package-lock.json: oidc-provider, a real OAuth 2.0
# authorization server (rotating refresh tokens, RFC 7662 introspection, RFC 7009 revocation)
# the XOAUTH2 tests take their tokens from (tests/node/oauth_provider.mjs).
node_peers=target/test-data/node
if ! cmp -s tests/node/package-lock.json "$node_peers/package-lock.json" \
    || [ ! -d "$node_peers/node_modules/oidc-provider" ]; then
  echo "installing test peers from npm: oidc-provider" >&2
  rm -rf "$node_peers" && mkdir -p "$node_peers"
  cp tests/node/package.json tests/node/package-lock.json "$node_peers/"
  (cd "$node_peers" && npm ci --no-audit --no-fund --loglevel=error)
fi
node -e "import('$PWD/$node_peers/node_modules/oidc-provider/lib/index.js')" \
  || { echo "cannot load oidc-provider after installing it" >&2; exit 1; }
export SB_OIDC_PROVIDER="$PWD/$node_peers"

cargo test --locked "$@"
