"""Reads a JSON list of RTF file paths (message bodies as Debian's `tnef --save-body` writes
them) on stdin; prints, for each, what the body was written as, read by independent
implementations: RTFDE (MS-OXRTFEX de-encapsulation) for HTML or text Outlook encapsulated in
RTF, striprtf for a body written as RTF. Each is {"kind": "html"|"text", "content": ...}."""
import json
import sys

from RTFDE.deencapsulate import DeEncapsulator
from RTFDE.exceptions import NotEncapsulatedRtf
from striprtf.striprtf import rtf_to_text


def read(path):
    raw = open(path, "rb").read().rstrip(b"\0")
    try:
        rtf = DeEncapsulator(raw)
        rtf.deencapsulate()
    except NotEncapsulatedRtf:
        return {"kind": "text", "content": rtf_to_text(raw.decode("cp1252", "replace"))}
    kind = rtf.get_content_type()
    content = rtf.html if kind == "html" else rtf.text
    if isinstance(content, bytes):
        content = content.decode("utf-8", "replace")
    return {"kind": kind, "content": content}


print(json.dumps([read(path) for path in json.load(sys.stdin)], ensure_ascii=False))
