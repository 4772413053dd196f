"""``python -m bench``: run the registered benchmarks, print a table, write bench/results.json."""

from __future__ import annotations

import sys

from bench.common import run

# Bench modules to import (each registers its benchmarks on import); add new ones here.
MODULES = [
    "bench.crypto_bench",
    "bench.pipeline_bench",
    "bench.cpu_bench",
    "bench.load_bench",
]


def main() -> int:
    return run(MODULES)


if __name__ == "__main__":
    sys.exit(main())
