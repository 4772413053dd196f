"""Metrics: each convenience method moves the right series, labels stay bounded, output parses."""

from __future__ import annotations

import platform

import pytest
from prometheus_client.parser import text_string_to_metric_families

from recording_storage import __version__
from recording_storage.metrics import DLQ_REASONS, PREFIX, RETRY_SYSTEMS, TRANSFER_BUCKETS, Metrics

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(metrics: Metrics) -> Samples:
    """Parse the rendered exposition text the way a scraper would."""
    out: Samples = {}
    for family in text_string_to_metric_families(metrics.render().decode("utf-8")):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return samples(metrics).get((f"{PREFIX}_{name}", frozenset(labels.items())))


def test_every_metric_is_prefixed_and_described() -> None:
    """All families carry the service prefix (or the process collector's) and a help text."""
    families = list(text_string_to_metric_families(Metrics().render().decode()))
    names = {f.name for f in families}
    assert all(n.startswith((PREFIX + "_", "process_")) for n in names)
    assert all(f.documentation for f in families)
    expected = {
        "jobs", "transferred_bytes", "transfer_duration_seconds", "jobs_in_flight", "queue_receive_errors",
        "dlq_messages", "sharer_keys_served", "sharer_passes", "dracoon_requests", "retries",
        "unmatched_objects", "build_info",
    }
    assert {f"{PREFIX}_{n}" for n in expected} <= names


def test_registries_are_independent() -> None:
    """Two instances in one process neither collide nor share values (no global registry)."""
    a, b = Metrics(), Metrics()
    a.job_finished("success", 1.0)
    assert value(a, "jobs_total", outcome="success") == 1
    assert value(b, "jobs_total", outcome="success") == 0


def test_known_outcomes_exist_at_zero() -> None:
    """Series for every job and sharer outcome exist before the first event, so rate() works."""
    m = Metrics()
    for outcome in ("success", "transient", "permanent", "cancelled"):
        assert value(m, "jobs_total", outcome=outcome) == 0
    for outcome in ("success", "partial", "failure"):
        assert value(m, "sharer_passes_total", outcome=outcome) == 0


def test_alerted_label_values_exist_at_zero() -> None:
    """increase(...) > 0 fires for the first dead letter / retry after a start only if the series
    already existed at 0: every known DLQ reason and retrying system is there from the start."""
    m = Metrics()
    assert len(DLQ_REASONS) >= 15 and {"source_missing", "unknown_instance", "name_clash"} <= set(DLQ_REASONS)
    for reason in DLQ_REASONS:
        assert value(m, "dlq_messages_total", reason=reason) == 0, reason
    assert set(RETRY_SYSTEMS) == {"dracoon", "s3"}
    for system in RETRY_SYSTEMS:
        assert value(m, "retries_total", system=system) == 0, system
    m.dlq_message("source_missing")
    assert value(m, "dlq_messages_total", reason="source_missing") == 1


def test_build_info_and_process_metrics() -> None:
    """build_info names the running version; the process collector reports CPU and memory."""
    m = Metrics()
    assert value(m, "build_info", version=__version__, python=platform.python_version()) == 1
    names = {name for name, _ in samples(m)}
    for name in ("process_cpu_seconds_total", "process_resident_memory_bytes", "process_start_time_seconds"):
        assert name in names


def test_job_finished_counts_outcome_and_success_duration() -> None:
    """Only successes feed the duration histogram; bytes are not counted at the end of a job."""
    m = Metrics()
    m.job_finished("success", 2.0)
    m.job_finished("success", 4000.0)
    m.job_finished("transient", 0.01)
    m.job_finished("permanent")
    assert value(m, "jobs_total", outcome="success") == 2
    assert value(m, "jobs_total", outcome="transient") == 1
    assert value(m, "jobs_total", outcome="permanent") == 1
    assert value(m, "transferred_bytes_total") == 0
    assert value(m, "transfer_duration_seconds_count") == 2
    assert value(m, "transfer_duration_seconds_sum") == 4002.0
    assert value(m, "transfer_duration_seconds_bucket", le="2.5") == 1
    assert value(m, "transfer_duration_seconds_bucket", le="3600.0") == 1
    assert value(m, "transfer_duration_seconds_bucket", le="7200.0") == 2


def test_duration_buckets_span_a_tenth_of_a_second_to_two_hours() -> None:
    """The histogram resolves both tiny and multi-hour transfers."""
    assert TRANSFER_BUCKETS[0] == 0.1
    assert TRANSFER_BUCKETS[-1] == 7200.0
    assert list(TRANSFER_BUCKETS) == sorted(TRANSFER_BUCKETS)


def test_job_finished_rejects_unknown_outcome_and_ignores_negative_values() -> None:
    """A wrong outcome is a programming error; negative sizes or durations never break a job."""
    m = Metrics()
    with pytest.raises(ValueError, match="unknown job outcome"):
        m.job_finished("exploded")  # type: ignore[arg-type]
    m.job_finished("success", -1.0)
    m.add_bytes(-3)
    assert value(m, "transferred_bytes_total") == 0
    assert value(m, "transfer_duration_seconds_count") == 0
    m.add_bytes(7)
    assert value(m, "transferred_bytes_total") == 7


def test_in_flight_gauge_follows_the_with_block_even_on_error() -> None:
    """The gauge goes up inside the block and back down when the job raises."""
    m = Metrics()
    with m.job_in_flight():
        with m.job_in_flight():
            assert value(m, "jobs_in_flight") == 2
        assert value(m, "jobs_in_flight") == 1
    with pytest.raises(RuntimeError), m.job_in_flight():
        raise RuntimeError("job failed")
    assert value(m, "jobs_in_flight") == 0
    m.set_jobs_in_flight(3)
    assert value(m, "jobs_in_flight") == 3


def test_dracoon_request_matches_the_hook_and_drops_the_path() -> None:
    """Status is a string, transport errors are 'error', and the path never reaches the output."""
    m = Metrics()
    hook = m.dracoon_request  # usable as the client's (method, path, status) hook
    hook("get", "/api/v4/nodes/12345?token=SECRET-TOKEN", 200)
    hook("POST", "/api/v4/uploads/SECRET-UPLOAD-TOKEN", None)
    hook("POST", "/x", None)
    hook("BREW", "/x", 418)
    hook("GET", "/x", 1234)
    assert value(m, "dracoon_requests_total", method="GET", status="200") == 1
    assert value(m, "dracoon_requests_total", method="POST", status="error") == 2
    assert value(m, "dracoon_requests_total", method="OTHER", status="418") == 1
    assert value(m, "dracoon_requests_total", method="GET", status="other") == 1
    text = m.render().decode()
    assert "SECRET" not in text
    assert "12345" not in text


def test_free_form_labels_are_normalised_and_capped() -> None:
    """DLQ reasons and retry systems cannot create unbounded series."""
    m = Metrics()
    m.dlq_message("Source Missing!")
    m.dlq_message("source_missing")
    assert value(m, "dlq_messages_total", reason="source_missing") == 2
    for i in range(100):
        m.dlq_message(f"reason_{i}")
    reasons = {dict(k[1])["reason"] for k in samples(m) if k[0] == f"{PREFIX}_dlq_messages_total"}
    assert len(reasons) == len(DLQ_REASONS) + 33  # the known ones, 32 others, plus "other"
    assert value(m, "dlq_messages_total", reason="other") == 100 - 32
    m.dlq_message("source_missing")  # a value seen before the cap keeps its own series
    assert value(m, "dlq_messages_total", reason="source_missing") == 3
    fresh = Metrics()
    fresh.dlq_message("x" * 500)
    assert value(fresh, "dlq_messages_total", reason="x" * 40) == 1
    m.retry("S3")
    m.retry("s3")
    m.retry("")
    assert value(m, "retries_total", system="s3") == 2
    assert value(m, "retries_total", system="unknown") == 1


def test_queue_sharer_and_unmatched_counters_move() -> None:
    """The remaining convenience methods each move exactly their own series."""
    m = Metrics()
    m.queue_receive_error()
    m.sharer_keys_served(150)
    m.sharer_keys_served(0)
    m.sharer_pass("success")
    m.sharer_pass("partial")
    m.unmatched_object()
    m.unmatched_object()
    assert value(m, "queue_receive_errors_total") == 1
    assert value(m, "sharer_keys_served_total") == 150
    assert value(m, "sharer_passes_total", outcome="success") == 1
    assert value(m, "sharer_passes_total", outcome="partial") == 1
    assert value(m, "sharer_passes_total", outcome="failure") == 0
    assert value(m, "unmatched_objects_total") == 2


def test_content_type_is_the_classic_text_format() -> None:
    """Every Prometheus version understands text format 0.0.4."""
    assert Metrics.content_type.startswith("text/plain; version=0.0.4")
