"""Bench-only patch for moto's S3 server: answer a ranged GET by reading only the range.

moto 5.x serves every GetObject by reading the whole object out of its buffer (``FakeKey.value``)
and only then slicing out the requested range. One 8 MiB range of a 512 MiB object therefore
copies 512 MiB (measured: ~0.35 s per range, ~23 MB/s), and streaming an object in ranges is
quadratic in its size: a 2 GiB object would take minutes to download. Real S3 serves a range in
time proportional to the range, and the benchmarks measure our pipeline, not moto, so the bench
stack's moto process applies this patch. Everything else -- routing, auth, ``If-Match``,
headers, errors, the range arithmetic itself -- is still moto's own code.

The same goes for moto's SQS clock (``fast_clock``). Its queue model reads the time through
datetime arithmetic (about 6 us a read) once or twice for every message in the queue, four
times per ``ReceiveMessage`` (the visible-message scan, then three attribute scans for the
retention check). With the load bench's 200 queued jobs that was 14-18 ms of moto CPU per
receive, on the two cores the service under test shares; real SQS costs its caller the same
whatever the queue depth. The patch reads the same clock with ``time.time()``: same values,
same semantics, about 3 ms per receive at that depth.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

__all__ = ["apply", "fast_clock"]

_local = threading.local()
_applied = False


class _LazyBody:
    """The object's bytes, read on demand: ``len()`` and slices without materialising the whole."""

    def __init__(self, key: Any, read_all: Any) -> None:
        self._key = key
        self._read_all = read_all

    def __len__(self) -> int:
        return int(self._key.size)

    def __getitem__(self, item: Any) -> bytes:
        if not isinstance(item, slice) or item.step not in (None, 1):
            return bytes(self.materialize()[item])
        start, stop, _ = item.indices(len(self))
        with self._key.lock:
            buffer = self._key._value_buffer
            buffer.seek(start)
            data: bytes = buffer.read(max(0, stop - start))
        return data

    def materialize(self) -> bytes:
        data: bytes = self._read_all(self._key)
        return data


def apply() -> None:
    """Patch moto (idempotent); call in the process that runs the moto server, before serving."""
    global _applied
    if _applied:
        return
    from moto.s3.models import FakeKey
    from moto.s3.responses import S3Response

    original_value: Any = FakeKey.value
    read_all = original_value.fget

    def value(self: Any) -> Any:
        if getattr(_local, "lazy", False):
            return _LazyBody(self, read_all)
        return read_all(self)

    FakeKey.value = property(value, original_value.fset)  # type: ignore[assignment,method-assign]

    original_get_object = S3Response.get_object

    def get_object(self: Any) -> Any:
        # Only a GET with a Range header reaches moto's slicing code; any other read stays eager.
        _local.lazy = bool(self.headers.get("Range"))
        try:
            return original_get_object(self)
        finally:
            _local.lazy = False

    original_key_response = S3Response.key_response

    def key_response(self: Any, request: Any, full_url: str, headers: Any) -> Any:
        result = original_key_response(self, request, full_url, headers)
        if isinstance(result, tuple) and len(result) == 3 and isinstance(result[2], _LazyBody):
            # A Range moto answers with the whole object (multi-range, unparsable): send it all.
            return result[0], result[1], result[2].materialize()
        return result

    S3Response.get_object = get_object  # type: ignore[method-assign]
    S3Response.key_response = key_response  # type: ignore[method-assign]

    from moto.sqs import models as sqs_models

    names = ("unix_time", "unix_time_millis")  # moto's names, imported into the SQS model
    clocks = fast_clock(*(vars(sqs_models)[name] for name in names))
    for name, clock in zip(names, clocks, strict=True):
        setattr(sqs_models, name, clock)
    _applied = True


Clock = Callable[..., float]  # (dt: datetime | None = None) -> float


def fast_clock(unix_time: Clock, unix_time_millis: Clock) -> tuple[Clock, Clock]:
    """moto's ``unix_time``/``unix_time_millis`` with "now" read by ``time.time()``.

    A given datetime still goes through moto's own conversion; only the reading of the
    current time changes, which is where the queue scans spend their time.
    """

    def fast_unix_time(dt: datetime | None = None) -> float:
        return time.time() if dt is None else unix_time(dt)

    def fast_unix_time_millis(dt: datetime | None = None) -> float:
        return time.time() * 1000.0 if dt is None else unix_time_millis(dt)

    return fast_unix_time, fast_unix_time_millis


def _operation(environ: Any) -> str:
    """The AWS operation of a WSGI request: ``sqs:<Target>`` or ``s3:<method><Object|Bucket>``."""
    target = str(environ.get("HTTP_X_AMZ_TARGET", ""))
    if target.startswith("AmazonSQS."):
        return "sqs:" + target.split(".", 1)[1]
    method = str(environ.get("REQUEST_METHOD", "?"))
    bucket, _, key = str(environ.get("PATH_INFO", "")).lstrip("/").partition("/")
    query = str(environ.get("QUERY_STRING", ""))
    if key:
        names = {"GET": "GetObject", "HEAD": "HeadObject", "PUT": "PutObject", "DELETE": "DeleteObject"}
        if "uploadId=" in query or query.startswith("uploads"):
            return f"s3:{method}Multipart"
        return "s3:" + names.get(method, method + "Object")
    return f"s3:{method}Bucket" if bucket else f"s3:{method}"


def count_and_delay(rtt_ms: float) -> None:
    """Count every request by operation and hold each for ``rtt_ms`` before moto answers it.

    The count is served (and reset, with ``DELETE``) at ``/_bench/requests``: requests as the
    server saw them, retries included. The delay stands in for a network round trip (the server
    thread sleeps; moto's server is threaded, so concurrent requests wait side by side).
    """
    import json
    import time
    from collections import Counter

    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    counts: Counter[str] = Counter()
    lock = threading.Lock()
    original_call = DomainDispatcherApplication.__call__

    def call(self: Any, environ: Any, start_response: Any) -> Any:
        if environ.get("PATH_INFO") == "/_bench/requests":
            with lock:
                body = json.dumps(dict(counts)).encode()
                if environ.get("REQUEST_METHOD") == "DELETE":
                    counts.clear()
            start_response("200 OK", [("Content-Type", "application/json"),
                                      ("Content-Length", str(len(body)))])
            return [body]
        with lock:
            counts[_operation(environ)] += 1
        if rtt_ms:
            time.sleep(rtt_ms / 1000)
        return original_call(self, environ, start_response)

    DomainDispatcherApplication.__call__ = call  # type: ignore[method-assign]

