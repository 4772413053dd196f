"""The bench's moto patches change moto's cost, never its answers."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from moto.core.utils import unix_time, unix_time_millis, utcnow

from bench._motopatch import fast_clock


def test_fast_clock_reads_the_same_time_as_moto() -> None:
    fast_time, fast_millis = fast_clock(unix_time, unix_time_millis)
    before = unix_time()
    now_s, now_ms = fast_time(), fast_millis()
    after = unix_time()
    assert before - 0.001 <= now_s <= after + 0.001
    assert before * 1000 - 1 <= now_ms <= after * 1000 + 1
    # Not a different clock that happens to be close: the epoch and units are moto's.
    assert abs(now_s - time.time()) < 1


def test_fast_clock_converts_a_given_datetime_exactly_as_moto() -> None:
    fast_time, fast_millis = fast_clock(unix_time, unix_time_millis)
    for moment in (datetime(1970, 1, 1), datetime(2026, 12, 6, 17, 20, 1, 123456),
                   utcnow() - timedelta(days=3, microseconds=7)):
        assert fast_time(moment) == unix_time(moment)
        assert fast_millis(moment) == unix_time_millis(moment)
