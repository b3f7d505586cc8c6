"""Delta Chat (its core, deltachat-rpc-server, driven by deltachat-rpc-client) as a customer's
mail client that speaks Autocrypt: a real peer for the gateway's Autocrypt support.

    deltachat_peer.py ACCOUNTS_DIR IMAP_PORT SMTP_PORT ADDRESS PASSWORD SUPPORT_ADDRESS

On the private Dovecot and SMTP server of tests/it/mail_servers.rs (plain, on loopback) it
writes to SUPPORT_ADDRESS in clear (its Autocrypt header carries its key), waits for the
answer, prints it as a JSON line (text, whether Delta Chat shows it end-to-end encrypted), and
answers it: encrypted, to the key our answer's Autocrypt header carried. Fails (exit 1) when
an answer does not come within a minute.
"""

import json
import os
import sys
import threading

import deltachat_rpc_server
from deltachat_rpc_client import DeltaChat, Rpc


def main():
    accounts, imap_port, smtp_port, address, password, support = sys.argv[1:7]
    # The core's binary, in its PyPI package (pip's bin directory may not be on PATH).
    server = os.path.join(os.path.dirname(deltachat_rpc_server.__file__), "deltachat-rpc-server")
    timer = threading.Timer(60, lambda: (print("no answer within 60 s", flush=True), os._exit(1)))
    timer.daemon = True
    timer.start()
    with Rpc(accounts_dir=accounts, rpc_server_path=server) as rpc:
        account = DeltaChat(rpc).add_account()
        account.add_or_update_transport({
            "addr": address, "password": password,
            "imapServer": "127.0.0.1", "imapPort": int(imap_port), "imapSecurity": "plain",
            "smtpServer": "127.0.0.1", "smtpPort": int(smtp_port), "smtpSecurity": "plain",
        })
        # A first mail to someone whose key it does not know goes in clear.
        account.set_config("force_encryption", "0")
        account.bring_online()
        chat = account.create_contact(support).create_chat()
        chat.send_text("Hello, my invoice for order 7 is wrong.").wait_until_delivered()
        print(json.dumps({"sent": True}), flush=True)

        answer = account.wait_for_incoming_msg().get_snapshot()
        print(json.dumps({"answer": answer.text, "encrypted": answer.show_padlock}), flush=True)
        chat = answer.chat
        chat.accept()
        chat.send_text("Thanks, the new one is right.").wait_until_delivered()
        print(json.dumps({"answered": True}), flush=True)
    timer.cancel()


if __name__ == "__main__":
    main()
