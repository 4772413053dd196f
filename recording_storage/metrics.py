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

import platform
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final, Literal, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, ProcessCollector
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

from . import __version__

__all__ = [
    "DLQ_REASONS", "HTTP_METHODS", "JobOutcome", "Metrics", "PREFIX", "RETRY_SYSTEMS", "SharerOutcome",
    "TRANSFER_BUCKETS",
]

PREFIX: Final = "recording_storage"

JobOutcome = Literal["success", "transient", "permanent", "cancelled"]
SharerOutcome = Literal["success", "partial", "failure"]

# 0.1 s (an empty or tiny recording) up to 2 h (a multi-GB meeting over a slow link), roughly
# evenly spread on a log scale so percentiles stay meaningful across the whole range.
TRANSFER_BUCKETS: Final = (
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0,
)
HTTP_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# The reason codes docs/job-message.md documents for the DLQ (tests/test_docs.py keeps the two
# equal). Their series exist at 0 from the start: `increase(...[15m]) > 0` cannot fire for a
# series that first appears with its first increment, so the first dead letter after a restart
# would go unnoticed. Codes outside this list still count; their series appear when first used.
DLQ_REASONS: Final = (
    "invalid_message", "no_routing_rules", "unknown_instance", "instance_config_invalid",
    "configurator_rejected", "invalid_target_config", "no_targets", "expiration_passed",
    "source_missing", "access_denied", "no_such_bucket", "room_not_encrypted", "name_clash",
    "no_key_pair", "quota", "plaintext_too_large", "conditional_delete_unsupported",
)
# Systems whose retries the service counts itself (botocore's own retries are not visible).
RETRY_SYSTEMS: Final = ("dracoon", "s3")
OTHER: Final = "other"

_JOB_OUTCOMES: Final = frozenset(get_args(JobOutcome))
_SHARER_OUTCOMES: Final = frozenset(get_args(SharerOutcome))
_CHECKSUMS: Final = ("sha256", "crc64nvme", "crc32c", "crc32", "sha1")
# The ``integrity=`` values the transfer logs, kept as they are (a label may hold '-').
INTEGRITY_PROOFS: Final = frozenset(
    {"none", "md5", "multipart-md5", *_CHECKSUMS, *(f"composite-{c}" for c in _CHECKSUMS)}
)
_UNSAFE = re.compile(r"[^a-z0-9_]+")
_UNSAFE_IN_DOMAIN = re.compile(r"[^a-z0-9_.-]+")  # an instance label keeps its domain readable
_MAX_LABEL_LEN = 40


class _BoundedLabel:
    """Normalises free-form label values and caps how many distinct ones are ever emitted.

    The cap protects Prometheus from a caller bug (say, an exception message passed as a DLQ
    reason): after ``max_values`` distinct values beyond the ``known`` ones, new ones are folded
    into ``other``. Known values never count against the cap.
    """

    def __init__(
        self, max_values: int, known: tuple[str, ...] = (), unsafe: re.Pattern[str] = _UNSAFE
    ) -> None:
        self._max = max_values
        self._unsafe = unsafe
        self._known = {self._normalise(v) for v in known}
        self._seen: set[str] = set()

    def _normalise(self, value: str) -> str:
        return self._unsafe.sub("_", value.strip().lower()).strip("_")[:_MAX_LABEL_LEN] or "unknown"

    def __call__(self, value: str) -> str:
        norm = self._normalise(value)
        if norm in self._known or norm in self._seen:
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
            f"{PREFIX}_transferred_bytes_total",
            "Recording bytes read from S3 and handed to every target's upload, counted per chunk as they go.",
            registry=r,
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
        self._dlq_failed = Counter(
            f"{PREFIX}_dead_letter_failures_total",
            "Dead letters the DLQ refused or could not take; the message is retried after a backoff.",
            registry=r,
        )
        self._held = Counter(
            f"{PREFIX}_jobs_held_total",
            "Jobs held back (not dead-lettered) because their instance's account cannot work, "
            "e.g. its DRACOON login is refused; by instance domain.",
            ["instance"], registry=r,
        )
        self._dlq_reason = _BoundedLabel(max_values=32, known=DLQ_REASONS)
        self._instance = _BoundedLabel(max_values=64, unsafe=_UNSAFE_IN_DOMAIN)
        self._system = _BoundedLabel(max_values=16, known=RETRY_SYSTEMS)
        self._integrity = Counter(
            f"{PREFIX}_integrity_checks_total",
            "Objects whose content was checked before upload, by proof (sha256, crc64nvme, md5, "
            "multipart-md5, composite-crc32, ..., none) and result (verified or mismatch).",
            ["proof", "result"], registry=r,
        )
        # Known label values exist from the start at 0, so rate() and alerts work before the
        # first event instead of seeing a series appear out of nowhere.
        for outcome in sorted(_JOB_OUTCOMES):
            self._jobs.labels(outcome=outcome)
        for sharer_outcome in sorted(_SHARER_OUTCOMES):
            self._sharer_passes.labels(outcome=sharer_outcome)
        for reason in DLQ_REASONS:
            self._dlq.labels(reason=self._dlq_reason(reason))
        for system in RETRY_SYSTEMS:
            self._retries.labels(system=self._system(system))
        # What is running: joins with any series on `version` after a rollout, and answers
        # "which pods still run the old build?" without shell access.
        build = Info(f"{PREFIX}_build", "Version of recording-storage and Python running.", registry=r)
        build.info({"version": __version__, "python": platform.python_version()})
        # process_* (CPU, resident memory, open file descriptors, start time) for this registry;
        # the global registry that would carry them by default is deliberately not used.
        ProcessCollector(registry=r)

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

    def job_finished(self, outcome: JobOutcome, seconds: float | None = None) -> None:
        """Record one finished job.

        The duration histogram only sees successes: a permanent failure after a 10 ms HEAD
        would otherwise drag every percentile down. Bytes are not counted here but as they move
        (:meth:`add_bytes`), so the counter climbs during a long transfer instead of jumping at
        its end, and a cancelled or failed job still counts the traffic it caused.
        """
        if outcome not in _JOB_OUTCOMES:
            raise ValueError(f"unknown job outcome {outcome!r}; expected one of {sorted(_JOB_OUTCOMES)}")
        self._jobs.labels(outcome=outcome).inc()
        if outcome == "success" and seconds is not None and seconds >= 0:
            self._duration.observe(seconds)

    def add_bytes(self, count: int) -> None:
        """Count recording bytes as they are read and handed to the uploads (one chunk at a time).

        Repeats count again (a restarted upload, a redelivered job): this is traffic, not a
        tally of distinct recordings; ``jobs_total`` counts those.
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

    def dead_letter_failed(self) -> None:
        """One dead letter that could not be sent (the message stays in the job queue)."""
        self._dlq_failed.inc()

    def job_held(self, instance: str) -> None:
        """One job held for an account-wide problem of ``instance`` (a configured domain)."""
        self._held.labels(instance=self._instance(instance)).inc()
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
