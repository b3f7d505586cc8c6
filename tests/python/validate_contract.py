"""Validates real responses and delivered events against the served OpenAPI document.

Input on stdin: {"openapi": <the document from /v1/openapi.json>, "items": [...]}, where each
item is either {"schema": "Message", "instance": ...} (a component schema) or
{"path": "/v1/messages", "method": "post", "status": "202", "instance": ...} (a documented
response). The document itself is checked with openapi-spec-validator first.
"""
import json
import sys

import jsonschema
from openapi_spec_validator import validate as validate_spec

request = json.load(sys.stdin)
doc = request["openapi"]
validate_spec(doc)

def check(schema, instance, label):
    root = {"components": doc["components"], **schema}
    validator = jsonschema.Draft202012Validator(root)
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.path))
    if errors:
        detail = "\n".join(f"  at {list(e.path)}: {e.message}" for e in errors[:5])
        sys.exit(f"{label} does not match the contract:\n{detail}\ninstance: {json.dumps(instance)[:2000]}")

for item in request["items"]:
    if "schema" in item:
        check({"$ref": f"#/components/schemas/{item['schema']}"}, item["instance"], item["schema"])
    else:
        op = doc["paths"][item["path"]][item["method"]]
        response = op["responses"][item["status"]]
        if "$ref" in response:
            response = doc["components"]["responses"][response["$ref"].split("/")[-1]]
        schema = response["content"]["application/json"]["schema"]
        check(schema, item["instance"], f"{item['method'].upper()} {item['path']} {item['status']}")
print(f"validated {len(request['items'])} item(s) against the OpenAPI document")
