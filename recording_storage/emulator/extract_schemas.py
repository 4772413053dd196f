"""Extract the request-body schemas the emulator validates from DRACOON's OpenAPI description.

The emulator must not read ``../shared`` at runtime, so the few schemas it checks are copied once
into ``recording_storage/data/dracoon_request_schemas.json`` with this script (descriptions and
examples stripped; ``$ref`` reduced to the schema name). Re-run it when the reference changes::

    python -m recording_storage.emulator.extract_schemas /path/to/dracoon-openapi.json
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
DEFAULT_OUTPUT = Path(__file__).resolve().parent.parent / "data" / "dracoon_request_schemas.json"


def _compact(node: Any) -> Any:
    if isinstance(node, list):
        return [_compact(v) for v in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key in KEEP:
        if key not in node:
            continue
        value = node[key]
        if key == "$ref":
            out[key] = str(value).rsplit("/", 1)[-1]
        elif key == "properties":
            out[key] = {name: _compact(sub) for name, sub in value.items()}
        else:
            out[key] = _compact(value)
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("openapi", type=Path)
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    doc = extract(json.loads(args.openapi.read_text(encoding="utf-8")))
    args.output.write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    print(f"wrote {len(doc['schemas'])} schemas (version {doc['version']}) to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
