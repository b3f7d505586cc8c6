"""Verifies captured webhook deliveries with the official `standardwebhooks` package (PyPI).

Input on stdin: {"secret": "whsec_...", "deliveries": [{"headers": {...}, "body": "..."}]}.
Exits non-zero, naming the delivery, if any signature does not verify.
"""
import json
import sys

from standardwebhooks.webhooks import Webhook

request = json.load(sys.stdin)
hook = Webhook(request["secret"])
for i, d in enumerate(request["deliveries"]):
    try:
        payload = hook.verify(d["body"], d["headers"])
    except Exception as e:  # the library raises WebhookVerificationError
        sys.exit(f"delivery {i} ({d['headers'].get('webhook-id')}) did not verify: {e!r}")
    if payload.get("id") != d["headers"]["webhook-id"]:
        sys.exit(f"delivery {i}: body id {payload.get('id')} != webhook-id {d['headers']['webhook-id']}")
print(f"verified {len(request['deliveries'])} deliveries with standardwebhooks")
