"""Reads a JSON list of Content-Disposition header values on stdin; prints the file name each
gives to an HTTP client, as Werkzeug (Flask's HTTP library) reads it: RFC 6266/8187
`filename*` over the ASCII `filename`."""
import json
import sys

from werkzeug.http import parse_options_header

names = [parse_options_header(value)[1].get("filename") for value in json.load(sys.stdin)]
print(json.dumps(names, ensure_ascii=False))
