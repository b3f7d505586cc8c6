"""A real SMTP server (aiosmtpd, PyPI) that requires AUTH and delivers into Dovecot over LMTP.

Usage: smtp_relay.py SMTP_PORT LMTP_PORT USERS_FILE [CERT KEY SMTPS_PORT]
With CERT and KEY the server offers STARTTLS on SMTP_PORT and requires it before AUTH, and a
second listener on SMTPS_PORT speaks TLS from the first byte (implicit TLS, as on port 465). With
INTROSPECTION_URL in the environment it also accepts AUTH XOAUTH2, validating the bearer token
there (RFC 7662; client credentials in the URL go as HTTP Basic) and taking the token's `sub` as
the mailbox, as Dovecot's oauth2 passdb does. With SMTP_AUTH_ONLY=LOGIN (or PLAIN) it offers
only that mechanism (no XOAUTH2 either). With SMTP_GREYLIST=a@x,b@y the first RCPT TO of each of
those addresses is deferred as Postgrey defers it (450 4.2.0 … Greylisted), and later ones taken. Every login is logged to stderr as `AUTH <mechanism> ok|refused <user>`.
USERS_FILE holds `user:{PLAIN}password` lines (Dovecot's passwd-file). Prints "ready" once
listening; runs until stdin closes. Unknown recipients are refused with 550 by Dovecot and
that answer is passed through, so senders see real permanent failures.
"""
import base64
import json
import os
import smtplib
import ssl
import sys
import urllib.parse
import urllib.request

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

smtp_port, lmtp_port, users_file = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
users = {}
for line in open(users_file):
    name, _, password = line.strip().partition(":")
    users[name] = password.removeprefix("{PLAIN}")


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and users.get(auth_data.login.decode()) == auth_data.password.decode()
    user = auth_data.login.decode() if isinstance(auth_data, LoginPassword) else "?"
    print(f"AUTH {mechanism} {'ok' if ok else 'refused'} {user}", file=sys.stderr, flush=True)
    # handled=False: aiosmtpd answers a failure with 535 itself (its default, handled=True, answers
    # nothing and leaves the client waiting).
    return AuthResult(success=ok, handled=False)


greylisted = {a.strip().lower() for a in os.environ.get("SMTP_GREYLIST", "").split(",") if a.strip()}


class Relay:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower() in greylisted:
            greylisted.discard(address.lower())
            print(f"RCPT {address} greylisted", file=sys.stderr, flush=True)
            return f"450 4.2.0 <{address}>: Recipient address rejected: Greylisted, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def auth_XOAUTH2(self, server, args):
        url = os.environ.get("INTROSPECTION_URL")
        if not url or len(args) < 2:
            return AuthResult(success=False, handled=False)
        raw = base64.b64decode(args[1]).decode()
        fields = dict(part.split("=", 1) for part in raw.split("\x01") if "=" in part)
        token = fields.get("auth", "").removeprefix("Bearer ")
        body = urllib.parse.urlencode({"token": token}).encode()
        parts = urllib.parse.urlsplit(url)
        headers = {}
        if parts.username:
            basic = f"{parts.username}:{parts.password or ''}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(basic).decode()
            url = urllib.parse.urlunsplit(parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else "")))
        with urllib.request.urlopen(urllib.request.Request(url, data=body, headers=headers)) as response:
            answer = json.load(response)
        ok = answer.get("active") is True and answer.get("sub") == fields.get("user")
        print(f"AUTH XOAUTH2 {'ok' if ok else 'refused'} {fields.get('user')}", file=sys.stderr, flush=True)
        return AuthResult(success=ok, handled=False)

    async def handle_DATA(self, server, session, envelope):
        try:
            lmtp = smtplib.LMTP("127.0.0.1", lmtp_port)
            refused = lmtp.sendmail(envelope.mail_from, envelope.rcpt_tos, envelope.original_content)
            lmtp.quit()
        except smtplib.SMTPRecipientsRefused as e:
            code, message = next(iter(e.recipients.values()))
            return f"{code} {message.decode(errors='replace')}"
        except Exception as e:  # Dovecot unreachable: a temporary failure
            return f"451 4.3.0 delivery failed: {e}"
        if refused:
            code, message = next(iter(refused.values()))
            return f"{code} {message.decode(errors='replace')}"
        return "250 2.0.0 delivered"


only = os.environ.get("SMTP_AUTH_ONLY")
exclude = [m for m in ("PLAIN", "LOGIN", "XOAUTH2") if only and m != only]
tls = {}
controllers = []
if len(sys.argv) > 6:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(sys.argv[4], sys.argv[5])
    tls = {"tls_context": context, "require_starttls": True}
    # Implicit TLS: the connection is encrypted before any SMTP (aiosmtpd's own TLS check only
    # knows STARTTLS, hence auth_require_tls=False).
    controllers.append(Controller(
        Relay(), hostname="127.0.0.1", port=int(sys.argv[6]), authenticator=authenticator,
        auth_required=True, auth_require_tls=False, auth_exclude_mechanism=exclude, ssl_context=context,
    ))
controllers.append(Controller(
    Relay(), hostname="127.0.0.1", port=smtp_port, authenticator=authenticator,
    auth_required=True, auth_require_tls=bool(tls), auth_exclude_mechanism=exclude, **tls,
))
for controller in controllers:
    controller.start()
print("ready", flush=True)
sys.stdin.read()
for controller in controllers:
    controller.stop()
