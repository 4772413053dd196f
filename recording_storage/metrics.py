"""Prometheus metrics for one service instance, behind a small typed API.

``Metrics`` owns its own ``CollectorRegistry`` instead of the process-global one, so tests and
several services in one process never collide on metric names. Callers use the convenience
methods, never the collectors: that is where label values are bounded. A label must never carry
an id, key, path, e-mail or URL, because every distinct value is a new time series kept forever;
free-form values are normalised and capped, and anything beyond the cap is counted as ``other``.

Metrics calls sit on the hot path of the worker, so they never raise for bad *values* (negative
sizes are clamped, unknown labels become ``other``); only a wrong job outcome, which the type
checker already rejects, is a programming error.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final, Literal, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

__all__ = ["HTTP_METHODS", "JobOutcome", "Metrics", "PREFIX", "SharerOutcome", "TRANSFER_BUCKETS"]

PREFIX: Final = "recording_storage"

JobOutcome = Literal["success", "transient", "permanent", "cancelled"]
SharerOutcome = Literal["success", "partial", "failure"]

# 0.1 s (an empty or tiny recording) up to 2 h (a multi-GB meeting over a slow link), roughly
# evenly spread on a log scale so percentiles stay meaningful across the whole range.
TRANSFER_BUCKETS: Final = (
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0,
)
HTTP_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER: Final = "other"

_JOB_OUTCOMES: Final = frozenset(get_args(JobOutcome))
_SHARER_OUTCOMES: Final = frozenset(get_args(SharerOutcome))
_CHECKSUMS: Final = ("sha256", "crc64nvme", "crc32c", "crc32", "sha1")
# The ``integrity=`` values the transfer logs, kept as they are (a label may hold '-').
INTEGRITY_PROOFS: Final = frozenset(
    {"none", "md5", "multipart-md5", *_CHECKSUMS, *(f"composite-{c}" for c in _CHECKSUMS)}
)
_UNSAFE = re.compile(r"[^a-z0-9_]+")
_MAX_LABEL_LEN = 40


class _BoundedLabel:
    """Normalises free-form label values and caps how many distinct ones are ever emitted.

    The cap protects Prometheus from a caller bug (say, an exception message passed as a DLQ
    reason): after ``max_values`` distinct values, new ones are folded into ``other``.
    """

    def __init__(self, max_values: int) -> None:
        self._max = max_values
        self._seen: set[str] = set()

    def __call__(self, value: str) -> str:
        norm = _UNSAFE.sub("_", value.strip().lower()).strip("_")[:_MAX_LABEL_LEN] or "unknown"
        if norm in self._seen:
            return norm
        if len(self._seen) >= self._max:
            return OTHER
        self._seen.add(norm)
        return norm


class Metrics:
    """All metrics of the service; one instance per service, passed to whoever records.

    Names are ``recording_storage_*``. Read them with :meth:`render` (Prometheus text format,
    served with :attr:`content_type`).
    """

    content_type: Final = CONTENT_TYPE_PLAIN_0_0_4

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._jobs = Counter(f"{PREFIX}_jobs_total", "Finished jobs by outcome.", ["outcome"], registry=r)
        self._bytes = Counter(
            f"{PREFIX}_bytes_transferred_total", "Recording bytes uploaded to DRACOON.", registry=r
        )
        self._duration = Histogram(
            f"{PREFIX}_transfer_duration_seconds",
            "Wall time of successful transfers, from start of the job to its acknowledgement.",
            buckets=TRANSFER_BUCKETS,
            registry=r,
        )
        self._in_flight = Gauge(f"{PREFIX}_jobs_in_flight", "Jobs being processed now.", registry=r)
        self._receive_errors = Counter(
            f"{PREFIX}_queue_receive_errors_total", "Failed SQS ReceiveMessage calls.", registry=r
        )
        self._dlq = Counter(
            f"{PREFIX}_dlq_messages_total", "Messages sent to the dead-letter queue, by reason code.",
            ["reason"], registry=r,
        )
        self._keys_served = Counter(
            f"{PREFIX}_sharer_keys_served_total", "File keys the sharer set for users.", registry=r
        )
        self._sharer_passes = Counter(
            f"{PREFIX}_sharer_passes_total", "Finished sharer passes by outcome.", ["outcome"], registry=r
        )
        self._dracoon = Counter(
            f"{PREFIX}_dracoon_requests_total",
            "DRACOON API requests by method and HTTP status ('error' for transport errors).",
            ["method", "status"], registry=r,
        )
        self._retries = Counter(
            f"{PREFIX}_retries_total", "Retried calls by external system.", ["system"], registry=r
        )
        self._unmatched = Counter(
            f"{PREFIX}_unmatched_objects_total", "S3 objects that matched no job or target rule.", registry=r
        )
        self._integrity = Counter(
            f"{PREFIX}_integrity_checks_total",
            "Objects whose content was checked before upload, by proof (sha256, crc64nvme, md5, "
            "multipart-md5, composite-crc32, ..., none) and result (verified or mismatch).",
            ["proof", "result"], registry=r,
        )
        self._dlq_reason = _BoundedLabel(max_values=32)
        self._system = _BoundedLabel(max_values=16)
        # Known label values exist from the start at 0, so rate() and alerts work before the
        # first event instead of seeing a series appear out of nowhere.
        for outcome in sorted(_JOB_OUTCOMES):
            self._jobs.labels(outcome=outcome)
        for sharer_outcome in sorted(_SHARER_OUTCOMES):
            self._sharer_passes.labels(outcome=sharer_outcome)

    # -- jobs -------------------------------------------------------------------------------

    @contextmanager
    def job_in_flight(self) -> Iterator[None]:
        """Count a job as in flight for the duration of the ``with`` block (exceptions included)."""
        self._in_flight.inc()
        try:
            yield
        finally:
            self._in_flight.dec()

    def set_jobs_in_flight(self, count: int) -> None:
        """Set the in-flight gauge directly, for a pool that already tracks its own count."""
        self._in_flight.set(max(0, count))

    def job_finished(
        self, outcome: JobOutcome, bytes_transferred: int = 0, seconds: float | None = None
    ) -> None:
        """Record one finished job.

        ``bytes_transferred`` counts whatever was uploaded, whatever the outcome (it is traffic
        that happened). The duration histogram only sees successes: a permanent failure after a
        10 ms HEAD would otherwise drag every percentile down.
        """
        if outcome not in _JOB_OUTCOMES:
            raise ValueError(f"unknown job outcome {outcome!r}; expected one of {sorted(_JOB_OUTCOMES)}")
        self._jobs.labels(outcome=outcome).inc()
        if bytes_transferred > 0:
            self._bytes.inc(bytes_transferred)
        if outcome == "success" and seconds is not None and seconds >= 0:
            self._duration.observe(seconds)

    def add_bytes(self, count: int) -> None:
        """Count uploaded bytes as they go, for callers that report progress of long transfers.

        Use either this or ``job_finished(bytes_transferred=...)`` for a job, not both.
        """
        if count > 0:
            self._bytes.inc(count)

    # -- queue ------------------------------------------------------------------------------

    def queue_receive_error(self) -> None:
        """One failed ReceiveMessage call."""
        self._receive_errors.inc()

    def dlq_message(self, reason: str) -> None:
        """One message dead-lettered; ``reason`` is the error's short ``code``, never its message."""
        self._dlq.labels(reason=self._dlq_reason(reason)).inc()

    def integrity_check(self, proof: str, verified: bool) -> None:
        """One object's content checked with ``proof`` (``none``: the store offered nothing)."""
        label = proof if proof in INTEGRITY_PROOFS else OTHER
        self._integrity.labels(proof=label, result="verified" if verified else "mismatch").inc()

    def unmatched_object(self) -> None:
        """One S3 object (from an S3 event) that no job or target rule claims."""
        self._unmatched.inc()

    # -- sharer -----------------------------------------------------------------------------

    def sharer_keys_served(self, count: int) -> None:
        """File keys set for users in one batch or pass."""
        if count > 0:
            self._keys_served.inc(count)

    def sharer_pass(self, outcome: SharerOutcome) -> None:
        """One finished sharer pass: every instance served, some failed, or the pass failed."""
        self._sharer_passes.labels(outcome=outcome if outcome in _SHARER_OUTCOMES else OTHER).inc()

    # -- external systems -------------------------------------------------------------------

    def dracoon_request(self, method: str, path: str, status: int | None) -> None:
        """One DRACOON request; fits the DRACOON client's request hook directly.

        ``path`` is accepted for the hook's signature and deliberately dropped: it holds node
        ids and upload tokens, which must neither become series nor be exposed.
        """
        del path
        upper = method.upper()
        label_method = upper if upper in HTTP_METHODS else "OTHER"
        if status is None:
            label_status = "error"
        elif 100 <= status <= 599:
            label_status = str(status)
        else:
            label_status = OTHER
        self._dracoon.labels(method=label_method, status=label_status).inc()

    def retry(self, system: str) -> None:
        """One retried call to an external system (``"s3"``, ``"sqs"``, ``"dracoon"``, ...)."""
        self._retries.labels(system=self._system(system)).inc()

    # -- exposition -------------------------------------------------------------------------

    def render(self) -> bytes:
        """The registry in Prometheus text format 0.0.4 (understood by every scraper)."""
        return generate_latest(self.registry)
