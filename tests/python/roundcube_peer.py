"""Roundcube (Debian's roundcube-core, under PHP's built-in web server) as a customer's webmail:
logs in as the customer and opens one mail, as she would in her browser.

Roundcube is set to send read receipts without asking (`mdn_requests = 1`): opening a mail that
asks for one (`Disposition-Notification-To`) makes Roundcube send its RFC 8098 receipt through
the SMTP server, logged in as her, and flag the mail `$MDNSent`.

Usage: roundcube_peer.py WORKDIR IMAP_PORT SMTP_PORT ADDRESS PASSWORD MESSAGE_ID

Prints one JSON line: {"opened": true, "flags": [...]} with the mail's IMAP flags afterwards.
Exits non-zero, with Roundcube's error log, when logging in or opening the mail fails.
"""

import http.cookiejar
import imaplib
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

ROUNDCUBE = "/var/lib/roundcube"  # Debian's web root: index.php and links to the program


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def configure(workdir, imap_port, smtp_port):
    config = os.path.join(workdir, "config")
    for sub in ("config", "logs", "temp"):
        os.makedirs(os.path.join(workdir, sub), exist_ok=True)
    for shipped in ("defaults.inc.php", "mimetypes.php"):
        target = os.path.join(config, shipped)
        if not os.path.exists(target):
            os.symlink(os.path.join("/etc/roundcube", shipped), target)
    settings = {
        "db_dsnw": f"sqlite:///{workdir}/roundcube.db?mode=0600",
        "imap_host": f"127.0.0.1:{imap_port}",
        "smtp_host": f"127.0.0.1:{smtp_port}",
        "smtp_user": "%u",
        "smtp_pass": "%p",
        "log_dir": f"{workdir}/logs/",
        "temp_dir": f"{workdir}/temp/",
        "des_key": "switchboard-test-des-key",
        "plugins": [],
        "skin": "elastic",
        # Send a read receipt without asking (0 asks the user, 2 never sends).
        "mdn_requests": 1,
        "login_rate_limit": 0,
    }
    lines = ["<?php", "$config = [];"]
    for key, value in settings.items():
        php = (
            "[]" if value == [] else json.dumps(value) if isinstance(value, str) else str(value)
        )
        lines.append(f"$config['{key}'] = {php};")
    with open(os.path.join(config, "config.inc.php"), "w") as f:
        f.write("\n".join(lines) + "\n")
    return config


def uid_of(imap_port, address, password, message_id):
    imap = imaplib.IMAP4("127.0.0.1", imap_port)
    imap.login(address, password)
    imap.select("INBOX")
    for _ in range(100):
        typ, data = imap.uid("SEARCH", None, "HEADER", "Message-ID", message_id)
        if typ == "OK" and data[0].split():
            uid = data[0].split()[-1].decode()
            imap.logout()
            return uid
        time.sleep(0.1)
        imap.noop()
    raise SystemExit(f"no mail with Message-ID {message_id} in {address}'s INBOX")


def flags_of(imap_port, address, password, uid):
    imap = imaplib.IMAP4("127.0.0.1", imap_port)
    imap.login(address, password)
    imap.select("INBOX", readonly=True)
    typ, data = imap.uid("FETCH", uid, "(FLAGS)")
    imap.logout()
    return re.search(rb"FLAGS \(([^)]*)\)", data[0]).group(1).decode().split()


def main(workdir, imap_port, smtp_port, address, password, message_id):
    imap_port, smtp_port = int(imap_port), int(smtp_port)
    config = configure(workdir, imap_port, smtp_port)
    uid = uid_of(imap_port, address, password, message_id)

    port = free_port()
    env = dict(os.environ, ROUNDCUBE_CONFIG_DIR=config)
    server = subprocess.Popen(
        ["php", "-S", f"127.0.0.1:{port}", "-t", ROUNDCUBE],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(os.path.join(workdir, "logs", "php-server.log"), "w"),
    )
    base = f"http://127.0.0.1:{port}/"

    def failed(why):
        logs = []
        for name in sorted(os.listdir(os.path.join(workdir, "logs"))):
            with open(os.path.join(workdir, "logs", name), errors="replace") as f:
                logs.append(f"--- {name}\n{f.read()[-4000:]}")
        server.terminate()
        raise SystemExit(f"{why}\n" + "\n".join(logs))

    try:
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        for _ in range(100):
            try:
                login_page = opener.open(base + "?_task=login", timeout=10).read().decode()
                break
            except OSError:
                time.sleep(0.1)
        else:
            failed("PHP's web server did not answer")
        token = re.search(r'name="_token" value="([^"]+)"', login_page)
        if not token:
            failed(f"no login form:\n{login_page[:2000]}")
        form = {
            "_token": token.group(1),
            "_task": "login",
            "_action": "login",
            "_timezone": "UTC",
            "_url": "",
            "_user": address,
            "_pass": password,
        }
        answer = opener.open(base + "?_task=login", urllib.parse.urlencode(form).encode(), timeout=30)
        page = answer.read().decode()
        if "_task=login" in answer.geturl() or 'id="login-form"' in page:
            failed(f"login refused (at {answer.geturl()})")
        # Open the mail, as a click in the message list does.
        query = urllib.parse.urlencode({"_task": "mail", "_action": "show", "_uid": uid, "_mbox": "INBOX"})
        shown = opener.open(base + "?" + query, timeout=30).read().decode()
        if "messagebody" not in shown and "message-content" not in shown:
            failed(f"the mail did not open:\n{shown[:2000]}")
        print(json.dumps({"opened": True, "flags": flags_of(imap_port, address, password, uid)}), flush=True)
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main(*sys.argv[1:7])
