"""Bench-only patch for moto's S3 server: answer a ranged GET by reading only the range.

moto 5.x serves every GetObject by reading the whole object out of its buffer (``FakeKey.value``)
and only then slicing out the requested range. One 8 MiB range of a 512 MiB object therefore
copies 512 MiB (measured: ~0.35 s per range, ~23 MB/s), and streaming an object in ranges is
quadratic in its size: a 2 GiB object would take minutes to download. Real S3 serves a range in
time proportional to the range, and the benchmarks measure our pipeline, not moto, so the bench
stack's moto process applies this patch. Everything else -- routing, auth, ``If-Match``,
headers, errors, the range arithmetic itself -- is still moto's own code.
"""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["apply"]

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
    _applied = True
