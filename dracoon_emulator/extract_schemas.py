"""Extract the schemas the emulator checks against from DRACOON's OpenAPI description.

The emulator must not read ``../shared`` at runtime, so what it needs is copied once into
``dracoon_emulator/data/`` with this script (descriptions and examples stripped):

* ``dracoon_request_schemas.json``: the request bodies it validates (``openapi.py``; ``$ref``
  reduced to the schema name);
* ``dracoon_response_schemas.json``: for every operation it serves, each documented status and
  that status's body schema (``null`` when the description documents no body), with every
  component schema they reference (``contract.py``).

Re-run it when the reference changes or the emulator serves a new operation (add it to
``OPERATIONS``; a test fails while a served route is missing here)::

    python -m dracoon_emulator.extract_schemas /path/to/dracoon-openapi.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

ROOTS = (
    "CreateRoomRequest",
    "CreateFolderRequest",
    "EncryptRoomRequest",
    "CreateFileUploadRequest",
    "CompleteUploadRequest",
    "GeneratePresignedUrlsRequest",
    "CompleteS3FileUploadRequest",
    "UserKeyPairContainer",
    "UserFileKeySetBatchRequest",
    "DeleteNodesRequest",
    "UpdateFileRequest",
)
# "METHOD /path" as in the description (its server prefix ``/api`` left off).
OPERATIONS = (
    "GET /v4/user/account",
    "GET /v4/user/ping",
    "GET /v4/public/system/info",
    "GET /v4/public/system/info/auth/ad",
    "GET /v4/public/system/info/auth/openid",
    "GET /v4/config/info/general",
    "GET /v4/config/info/defaults",
    "GET /v4/config/info/infrastructure",
    "GET /v4/config/info/policies/algorithms",
    "GET /v4/nodes",
    "DELETE /v4/nodes",
    "GET /v4/nodes/search",
    "POST /v4/nodes/rooms",
    "POST /v4/nodes/folders",
    "PUT /v4/nodes/rooms/{room_id}/encrypt",
    "GET /v4/nodes/{node_id}",
    "DELETE /v4/nodes/{node_id}",
    "POST /v4/nodes/files/uploads",
    "GET /v4/nodes/files/uploads/{upload_id}",
    "POST /v4/nodes/files/uploads/{upload_id}",
    "PUT /v4/nodes/files/uploads/{upload_id}",
    "DELETE /v4/nodes/files/uploads/{upload_id}",
    "POST /v4/nodes/files/uploads/{upload_id}/s3_urls",
    "PUT /v4/nodes/files/uploads/{upload_id}/s3",
    "POST /v4/uploads/{token}",
    "PUT /v4/uploads/{token}",
    "DELETE /v4/uploads/{token}",
    "GET /v4/user/account/keypair",
    "POST /v4/user/account/keypair",
    "DELETE /v4/user/account/keypair",
    "GET /v4/user/account/keypairs",
    "GET /v4/nodes/missingFileKeys",
    "POST /v4/nodes/files/keys",
    "PUT /v4/nodes/files/{file_id}",
    "GET /v4/nodes/files/{file_id}/user_file_key",
    "POST /v4/nodes/files/{file_id}/downloads",
    "GET /v4/nodes/files/{file_id}/downloads",
    "GET /v4/downloads/{token}",
)
KEEP = (
    "type",
    "format",
    "required",
    "enum",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "items",
    "properties",
    "$ref",
    "default",
)
# Responses are validated by a full OpenAPI 3.0 validator, so they keep every keyword that
# constrains a value (writeOnly, nullable, composition) and full ``#/components/schemas/`` refs.
KEEP_RESPONSE = (
    *KEEP,
    "nullable",
    "readOnly",
    "writeOnly",
    "allOf",
    "oneOf",
    "anyOf",
    "not",
    "additionalProperties",
    "pattern",
    "minItems",
    "maxItems",
    "uniqueItems",
    "exclusiveMinimum",
    "exclusiveMaximum",
)
DATA = Path(__file__).resolve().parent / "data"
DEFAULT_OUTPUT = DATA / "dracoon_request_schemas.json"
DEFAULT_RESPONSE_OUTPUT = DATA / "dracoon_response_schemas.json"


def _compact(node: Any, keep: tuple[str, ...] = KEEP, *, short_refs: bool = True) -> Any:
    if isinstance(node, list):
        return [_compact(v, keep, short_refs=short_refs) for v in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key in keep:
        if key not in node:
            continue
        value = node[key]
        if key == "$ref":
            out[key] = str(value).rsplit("/", 1)[-1] if short_refs else str(value)
        elif key == "properties":
            out[key] = {name: _compact(sub, keep, short_refs=short_refs) for name, sub in value.items()}
        else:
            out[key] = _compact(value, keep, short_refs=short_refs)
    return out


def _refs(node: Any) -> list[str]:
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    if not isinstance(node, dict):
        return []
    found = [str(node["$ref"])] if "$ref" in node else []
    return found + [r for v in node.values() for r in _refs(v)]


def extract(spec: dict[str, Any]) -> dict[str, Any]:
    """Return the compact schema document for ``ROOTS`` and everything they reference."""
    all_schemas = spec["components"]["schemas"]
    picked: dict[str, Any] = {}
    todo = list(ROOTS)
    while todo:
        name = todo.pop()
        if name in picked:
            continue
        picked[name] = _compact(all_schemas[name])
        todo.extend(_refs(picked[name]))
    return {
        "source": "DRACOON API OpenAPI description, components/schemas (request bodies only)",
        "version": spec.get("info", {}).get("version", "unknown"),
        "schemas": dict(sorted(picked.items())),
    }


def extract_responses(spec: dict[str, Any]) -> dict[str, Any]:
    """Return the response document: per operation, status -> body schema or ``None``."""
    operations: dict[str, dict[str, Any]] = {}
    todo: list[str] = []
    for operation in OPERATIONS:
        method, path = operation.split(" ", 1)
        described = spec["paths"][path][method.lower()]["responses"]
        statuses: dict[str, Any] = {}
        for status, response in sorted(described.items()):
            schemas = [c["schema"] for c in (response.get("content") or {}).values() if "schema" in c]
            statuses[status] = _compact(schemas[0], KEEP_RESPONSE, short_refs=False) if schemas else None
            todo.extend(r.rsplit("/", 1)[-1] for r in _refs(statuses[status]))
        operations[operation] = statuses
    all_schemas = spec["components"]["schemas"]
    picked: dict[str, Any] = {}
    while todo:
        name = todo.pop()
        if name in picked:
            continue
        picked[name] = _compact(all_schemas[name], KEEP_RESPONSE, short_refs=False)
        todo.extend(r.rsplit("/", 1)[-1] for r in _refs(picked[name]))
    return {
        "source": "DRACOON API OpenAPI description: responses of the operations the emulator serves",
        "version": spec.get("info", {}).get("version", "unknown"),
        "operations": operations,
        "components": {"schemas": dict(sorted(picked.items()))},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("openapi", type=Path)
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--responses-output", type=Path, default=DEFAULT_RESPONSE_OUTPUT)
    args = parser.parse_args(argv)
    spec = json.loads(args.openapi.read_text(encoding="utf-8"))
    doc = extract(spec)
    args.output.write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    print(f"wrote {len(doc['schemas'])} schemas (version {doc['version']}) to {args.output}")
    responses = extract_responses(spec)
    args.responses_output.write_text(json.dumps(responses, indent=1) + "\n", encoding="utf-8")
    print(
        f"wrote {len(responses['operations'])} operations, {len(responses['components']['schemas'])} "
        f"schemas to {args.responses_output}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
