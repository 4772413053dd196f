"""The memory benchmark's transfer process: ``python -m bench._memchild`` (see pipeline_bench).

A fresh interpreter whose only job is one transfer, so its peak RSS is the transfer's and not
the servers' (they run in other processes). It warms up with a tiny transfer first (imports
done, clients logged in, key pair unlocked, botocore's service model loaded), takes the idle
RSS, runs the measured transfer, and reports its peak RSS (``VmHWM``; ``ru_maxrss`` too, for
comparison, though it may be the parent's peak, see ``_stack.rss_mib``).

stdin: one JSON object ``{"stack": {...}, "config": {...}, "key": ..., "warm_key": ...}``;
stdout: one JSON line ``{"cold_rss_mib", "idle_rss_mib", "peak_rss_mib", "ru_maxrss_mib", "seconds",
"bytes"}``.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import resource
import sys
import time
import tracemalloc
from typing import Any

from bench._stack import Stack, app_config, job_for, quiet_logs, rss_mib, transfer_pipeline

__all__ = ["main"]


async def _transfer(params: dict[str, Any]) -> dict[str, float]:
    stack = Stack(**params["stack"])
    config = app_config(params["config"])
    tag = f"{os.getpid()}"
    async with transfer_pipeline(stack, config) as rt:
        warm = await rt.transferer.run(job_for(params["warm_key"], f"Bench/mem-warm-{tag}"))
        if warm.uploaded != 1:
            raise RuntimeError(f"warm-up transfer did not upload: {warm}")
        gc.collect()
        idle = rss_mib()
        if os.environ.get("BENCH_TRACEMALLOC"):  # diagnosis only: Python's own view of the peak
            tracemalloc.start()
        started = time.perf_counter()
        report = await rt.transferer.run(job_for(params["key"], f"Bench/mem-{tag}"))
        seconds = time.perf_counter() - started
        if tracemalloc.is_tracing():
            traced_peak = tracemalloc.get_traced_memory()[1] / 1024**2
            tracemalloc.stop()
            print(f"tracemalloc peak {traced_peak:.1f} MiB", file=sys.stderr)
    if report.uploaded != 1:
        raise RuntimeError(f"measured transfer did not upload: {report}")
    return {"idle_rss_mib": idle, "seconds": seconds, "bytes": float(report.bytes_read)}


def main() -> int:
    quiet_logs()
    cold = rss_mib()
    params = json.loads(sys.stdin.read())
    result = asyncio.run(_transfer(params))
    peak = rss_mib("VmHWM")  # not ru_maxrss: it can hold the parent's peak (see rss_mib)
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"cold_rss_mib": cold, "peak_rss_mib": peak, "ru_maxrss_mib": maxrss, **result}),
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
