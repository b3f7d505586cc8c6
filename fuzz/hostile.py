"""Writes hand-made hostile mails (0.1-4.5 MB each) into DIR: the shapes a parser's loops are
quadratic on or recurse into (a 2 MB line, 100,000 headers, 50,000 parts, 2,000-deep multiparts,
nested quotes, 30,000 DSN blocks, 200,000 nested HTML tags, deep RTF groups, 200,000 subject
prefixes ...). `fuzz/run.sh hostile` times each through the fuzz target; every one should take
about a second or less, and twice the input about twice the time.

Usage: hostile.py DIR
"""
import base64
import os
import random
import sys

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
H = "From: Ann <ann@example.org>\r\nTo: support@example.com\r\nSubject: x\r\nMessage-ID: <a@b>\r\n"
DAEMON = "From: MAILER-DAEMON@x\r\nTo: support@example.com\r\nReturn-Path: <>\r\n"
N = 2_000_000


def write(name, text):
    data = text if isinstance(text, bytes) else text.encode()
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)


def with_subject(subject):
    return H.replace("Subject: x", "Subject: " + subject) + "\r\nbody"


write("longline", H + "\r\n" + "a" * N)
write("quotes", H + "\r\n" + "> quoted line\n" * 100000)
write("nested_quotes", H + "\r\n" + "\n".join(">" * i + " x" for i in range(3000)))
write("onwords", H + "\r\n" + "x On Mon 10:00 a@b wrote " * 80000)
write("onwrote", H + "\r\nhello\n" + "On Mon, 1 Jan 2024, Bob <b@c> wrote:\n> x\n" * 40000)
write("outlookblocks", H + "\r\nhi\n" + "From: Bob\nSent: Monday\nTo: Ann\nSubject: x\n\n" * 30000)
write("headers", "".join(f"X-H{i}: v\r\n" for i in range(100000)) + H + "\r\nbody")
write("references", H + "References: " + " ".join(f"<m{i}@x>" for i in range(100000)) + "\r\n\r\nbody")
write("inreplyto", H + "In-Reply-To: " + "<a@b>" * 100000 + "\r\n\r\nbody")
parts = "".join(f"--b\r\nContent-Type: text/plain\r\n\r\npart {i}\r\n" for i in range(50000))
write("manyparts", H + "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" + parts + "--b--\r\n")
nest = "".join(f"Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n" for i in range(2000))
write("deepnest", H + "MIME-Version: 1.0\r\n" + nest + "Content-Type: text/plain\r\n\r\nx\r\n")
write("deeprfc822", H + "MIME-Version: 1.0\r\n" + "Content-Type: message/rfc822\r\n\r\n" * 3000 + "Subject: y\r\n\r\nx")
write("bounce_lines", DAEMON + "Subject: Undelivered Mail Returned to Sender\r\n\r\n"
      + "<ann@example.org>: host said: 550 5.1.1 no\n" * 50000)
write("bounce_prose", DAEMON + "Subject: failure notice\r\n\r\n" + "The following address failed: " * 100000)
write("dsn_many", DAEMON + "Subject: DSN\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report; "
      "report-type=delivery-status; boundary=b\r\n\r\n--b\r\n\r\nx\r\n--b\r\n"
      "Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; x\r\n\r\n"
      + "Final-Recipient: rfc822; a@b\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n" * 30000 + "--b--\r\n")
html = H + "Content-Type: text/html\r\n\r\n"
write("html_big", html + "<div>" * 200000 + "x" + "</div>" * 200000)
write("html_blockquote", html + "<blockquote>" * 50000 + "x")
write("html_div_lines", html + "<div>line</div><div><br></div>" * 100000)
write("html_tag_names", html + ("<" + "d" * 1000) * 2000)
write("html_attrs", html + "<p " + "a=b " * 300000 + ">x")
write("html_comments", html + "<!--" * 200000)
write("qp", H + "Content-Transfer-Encoding: quoted-printable\r\n\r\n" + "=\r\n" * 500000)
write("encoded_words", with_subject("=?utf-8?q?a?= " * 100000))
write("addresses", H.replace("To: support@example.com", "To: " + ", ".join(f"u{i}@example.org" for i in range(50000))) + "\r\nbody")
write("cc_groups", H + "Cc: " + "g: a@b;" * 50000 + "\r\n\r\nbody")
write("rtf", H + "Content-Type: text/rtf\r\n\r\n{\\rtf1 " + "{" * 100000 + "x" + "}" * 100000 + "}")
write("rtf_pars", H + "Content-Type: application/rtf\r\n\r\n{\\rtf1\\ansi " + "\\par " * 300000 + "}")
write("forward_chain", H.replace("Subject: x", "Subject: Fwd: x") + "\r\n"
      + "---------- Forwarded message ---------\nFrom: A <a@b>\nDate: x\nSubject: y\nTo: c@d\n\n" * 20000)
write("signature", H + "\r\n" + "-- \nsig\n" * 100000)
# A calendar invitation whose zone has thousands of observances, each with rules listing every
# day of every month, and a long list of onsets (`email/calendar.rs` caps what it considers).
observance = ("BEGIN:DAYLIGHT\r\nDTSTART:19700101T020000\r\nTZOFFSETFROM:+0100\r\nTZOFFSETTO:+0200\r\n"
              "RRULE:FREQ=YEARLY;BYMONTH=" + ",".join(str(m) for m in range(1, 13)) * 20
              + ";BYDAY=" + ",".join(f"{n}{d}" for n in range(-5, 6) for d in ("MO", "TU", "WE", "TH", "FR", "SA", "SU"))
              + "\r\nRDATE:" + ",".join(f"{1970 + i % 60}0{1 + i % 9}01T020000" for i in range(200)) + "\r\nEND:DAYLIGHT\r\n")
ics = ("BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nBEGIN:VTIMEZONE\r\nTZID:X\r\n" + observance * 240 + "END:VTIMEZONE\r\n"
       "BEGIN:VEVENT\r\nUID:u\r\nDTSTART;TZID=X:20261124T100000\r\nDTEND;TZID=X:20261124T110000\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")
write("calendar_rules", H + "MIME-Version: 1.0\r\nContent-Type: text/calendar; method=REQUEST\r\n\r\n" + ics)
write("signoffs", H + "\r\nhi\n" + "Best regards,\nAnn\n" * 100000 + "Sent from my iPhone\n" * 100000)
boilerplate = ("Geschäftsführer: X\nCONFIDENTIALITY NOTICE: " + "this e-mail is confidential " * 40 + "\n"
               + "Please consider the environment before printing\n")
write("disclaimers", H + "\r\nhi\nthere\n" + boilerplate * 1000 + "\n" * 200000 + "This e-mail " + "x" * N + "\n"
      + "Amtsgericht 123:\n" * 30000)
write("cr_only", H + "\r\n" + "line\r" * 500000)
write("nul", H + "\r\n" + "\0" * N)
write("utf8_junk", (H + "\r\n").encode() + bytes(random.Random(1).randrange(128, 256) for _ in range(N)))
write("subject_re", with_subject("Re: " * 200000 + "x"))
write("subject_brackets", with_subject("[x] " * 200000 + "x"))
write("subject_tags", with_subject("RE: [EXTERNAL] " * 100000 + "x"))
write("tokens", H + "\r\n" + "cnv_" * 500000)
tnef = base64.encodebytes(b"\x78\x9f\x3e\x22" + b"\x01" * 1_000_000).decode()
write("tnef_like", H + "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
      "Content-Type: application/ms-tnef\r\nContent-Transfer-Encoding: base64\r\n\r\n" + tnef + "--b--\r\n")
