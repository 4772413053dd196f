"""Tie requirements.lock to the pyproject.toml dependency lists it was compiled from.

``make lock`` compiles the lock with pip-compile and then runs ``stamp``, which appends one
comment line holding a digest of everything the lock answers for: the runtime dependencies,
the build requirements (the image installs the package with ``--no-build-isolation``, so
setuptools and wheel come from the lock too) and ``requires-python``. ``check`` recomputes the
digest offline; tests/test_docs.py does the same, so CI fails when pyproject.toml changed but the
lock was not regenerated. Optional extras (dev, local) are not in the image and not in the digest.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tomllib
from pathlib import Path

__all__ = ["STAMP_PREFIX", "dependency_digest", "recorded_digest"]

STAMP_PREFIX = "# pyproject-dependencies-sha256: "


def dependency_digest(pyproject: Path) -> str:
    """sha256 over the dependency lists that decide the lock's content, order-independent."""
    data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    basis = {
        "dependencies": sorted(data["project"].get("dependencies", [])),
        "build-requires": sorted(data["build-system"].get("requires", [])),
        "requires-python": data["project"].get("requires-python", ""),
    }
    return hashlib.sha256(json.dumps(basis, sort_keys=True).encode()).hexdigest()


def recorded_digest(lock: Path) -> str | None:
    """The digest ``stamp`` wrote into ``lock``, or None if it has none."""
    for line in lock.read_text(encoding="utf-8").splitlines():
        if line.startswith(STAMP_PREFIX):
            return line.removeprefix(STAMP_PREFIX).strip()
    return None


def _stamp(pyproject: Path, lock: Path) -> None:
    lines = [ln for ln in lock.read_text(encoding="utf-8").splitlines() if not ln.startswith(STAMP_PREFIX)]
    lines.append(STAMP_PREFIX + dependency_digest(pyproject))
    lock.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: list[str]) -> int:
    usage = "usage: python -m tools.lockstamp {stamp|check} PYPROJECT LOCK"
    if len(argv) != 3 or argv[0] not in {"stamp", "check"}:
        print(usage, file=sys.stderr)
        return 2
    command, pyproject, lock = argv[0], Path(argv[1]), Path(argv[2])
    if command == "stamp":
        _stamp(pyproject, lock)
        return 0
    if recorded_digest(lock) != dependency_digest(pyproject):
        print(f"{lock} is stale: {pyproject} changed its dependencies; run `make lock`", file=sys.stderr)
        return 1
    print(f"{lock} matches {pyproject}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
