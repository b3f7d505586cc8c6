"""Dovecot's `sendmail_path` in the tests: hands the mail Dovecot sends (a Sieve `reject`
notice, a vacation reply) back to Dovecot over LMTP, as a mail server's own sendmail would
to its MTA. Standard library only: Dovecot runs it as its mail user.

Usage: lmtp_sendmail.py LMTP_PORT [-i] [-f SENDER] [--] RECIPIENT...  (the mail on stdin)
"""
import smtplib
import sys

port, args = int(sys.argv[1]), sys.argv[2:]
sender, recipients = "", []
while args:
    arg = args.pop(0)
    if arg == "-f":
        sender = args.pop(0)
    elif arg.startswith("-f"):
        sender = arg[2:]
    elif arg.startswith("-") and arg != "--":
        continue
    elif arg != "--":
        recipients.append(arg)
sender = "" if sender in ("<>", "MAILER-DAEMON") else sender.strip("<>")
with smtplib.LMTP("127.0.0.1", port) as lmtp:
    refused = lmtp.sendmail(sender, recipients, sys.stdin.buffer.read())
sys.exit(1 if refused else 0)
