"""The expiration grammar and its calendar arithmetic."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from recording_storage.expiration import Expiration, ExpirationError, parse_expiration

BASE = datetime(2018, 12, 13, 14, 15, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # The original's five vectors (tests/system/dates_test.go), same base date.
        ("1 day", datetime(2018, 12, 14, 14, 15, tzinfo=UTC)),
        ("5 days", datetime(2018, 12, 18, 14, 15, tzinfo=UTC)),
        ("1 week 3 days", datetime(2018, 12, 23, 14, 15, tzinfo=UTC)),
        ("1 year 10 months", datetime(2020, 10, 13, 14, 15, tzinfo=UTC)),
        ("4 years 3 months 2 weeks 1 day", datetime(2023, 3, 28, 14, 15, tzinfo=UTC)),
    ],
)
def test_original_vectors(text: str, expected: datetime) -> None:
    """The Go service's test vectors give the same dates."""
    exp = parse_expiration(text)
    assert exp is not None
    assert exp.expire_at(BASE) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 day", Expiration(days=1)),
        ("2 DAYS", Expiration(days=2)),
        ("1 Year", Expiration(years=1)),
        ("  3   weeks  ", Expiration(weeks=3)),
        ("1day", Expiration(days=1)),
        ("12months", Expiration(months=12)),
        ("1 year, 2 months and 3 days", Expiration(years=1, months=2, days=3)),
        ("1 year,2 months, and 3 weeks", Expiration(years=1, months=2, weeks=3)),
        ("1 week\t2 days", Expiration(weeks=1, days=2)),
        ("2 days 1 week", Expiration(weeks=1, days=2)),
        ("0 years 1 day", Expiration(days=1)),
        ("007 days", Expiration(days=7)),
        ("100 years", Expiration(years=100)),
        ("1200 months", Expiration(months=1200)),
        ("36524 days", Expiration(days=36524)),
        ("1 months", Expiration(months=1)),
        ("3 day", Expiration(days=3)),
    ],
)
def test_accepted_forms(text: str, expected: Expiration) -> None:
    """Case, spacing, plural, commas and "and" are all tolerated."""
    assert parse_expiration(text) == expected


@pytest.mark.parametrize("text", [None, "", "   ", "\t\n"])
def test_empty_means_no_expiration(text: str | None) -> None:
    assert parse_expiration(text) is None


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("forever", "expected a number"),
        ("never", "expected a number"),
        ("1", "found nothing"),
        ("1 fortnight", "expected year(s), month(s), week(s) or day(s)"),
        ("1 d", "expected year(s)"),
        ("day", "expected a number"),
        ("1 day 2 days", "days given more than once"),
        ("1 Year 1 year", "years given more than once"),
        ("1.5 days", "unexpected character '.'"),
        ("-1 day", "unexpected character '-'"),
        ("+1 day", "unexpected character '+'"),
        ("1 day;", "unexpected character ';'"),
        ("1 día", "unexpected character"),
        ("\u0661 day", "unexpected character"),  # Arabic-Indic digit one
        ("0 days", "is zero"),
        ("0 years 0 days", "is zero"),
        ("101 years", "longer than the allowed maximum"),
        ("100 years 1 day", "longer than the allowed maximum"),
        ("1201 months", "longer than the allowed maximum"),
        ("36525 days", "longer than the allowed maximum"),
        ("9999999999 days", "too large"),
        ("1 day,", "ends with a separator"),
        ("1 day and", "ends with a separator"),
        ("and 1 day", "expected a number"),
        (", 1 day", "expected a number"),
        ("1 day, , 2 weeks", "expected a number"),
        ("1 day and and 2 weeks", "expected a number"),
        ("1 dayss", "expected year(s)"),
        ("1 day please", "expected a number"),
        ("x" * 201, "too long"),
    ],
)
def test_rejected(text: str, reason: str) -> None:
    """Anything outside the grammar is an error with a reason (the original expired the file at once)."""
    with pytest.raises(ExpirationError) as info:
        parse_expiration(text)
    assert reason in str(info.value)
    assert len(str(info.value)) < 300


def test_rejects_non_string() -> None:
    with pytest.raises(ExpirationError, match="must be a string"):
        parse_expiration(5)  # type: ignore[arg-type]


def test_error_is_a_value_error() -> None:
    """Config validators (pydantic) may call the parser and get their usual error type."""
    with pytest.raises(ValueError):
        parse_expiration("soon")


@pytest.mark.parametrize(
    ("base", "text", "expected"),
    [
        (datetime(2019, 1, 31, tzinfo=UTC), "1 month", datetime(2019, 2, 28, tzinfo=UTC)),
        (datetime(2020, 1, 31, tzinfo=UTC), "1 month", datetime(2020, 2, 29, tzinfo=UTC)),
        (datetime(2019, 3, 31, tzinfo=UTC), "1 month", datetime(2019, 4, 30, tzinfo=UTC)),
        (datetime(2019, 8, 31, tzinfo=UTC), "1 month 1 day", datetime(2019, 10, 1, tzinfo=UTC)),
        (datetime(2020, 2, 29, tzinfo=UTC), "1 year", datetime(2021, 2, 28, tzinfo=UTC)),
        (datetime(2020, 2, 29, tzinfo=UTC), "4 years", datetime(2024, 2, 29, tzinfo=UTC)),
        (datetime(2020, 2, 29, tzinfo=UTC), "1 year 1 month", datetime(2021, 3, 29, tzinfo=UTC)),
        (datetime(2019, 12, 31, tzinfo=UTC), "2 months", datetime(2020, 2, 29, tzinfo=UTC)),
        (datetime(2019, 11, 30, tzinfo=UTC), "14 months", datetime(2021, 1, 30, tzinfo=UTC)),
        (datetime(2020, 2, 28, tzinfo=UTC), "1 day", datetime(2020, 2, 29, tzinfo=UTC)),
        (datetime(2019, 2, 28, tzinfo=UTC), "1 day", datetime(2019, 3, 1, tzinfo=UTC)),
    ],
)
def test_month_end_clamping_and_leap_years(base: datetime, text: str, expected: datetime) -> None:
    """Months clamp to the month end (Go's AddDate rolled Jan 31 + 1 month into March)."""
    exp = parse_expiration(text)
    assert exp is not None
    assert exp.expire_at(base) == expected


def test_days_are_calendar_days_in_the_base_zone() -> None:
    """Across the DST change "1 day" keeps the wall-clock time, i.e. 23 real hours here."""
    berlin = ZoneInfo("Europe/Berlin")
    base = datetime(2019, 3, 30, 12, 0, tzinfo=berlin)
    exp = parse_expiration("1 day")
    assert exp is not None
    result = exp.expire_at(base)
    assert (result.hour, result.day, result.tzinfo) == (12, 31, berlin)
    assert result.astimezone(UTC) - base.astimezone(UTC) == timedelta(hours=23)


def test_out_of_range_result_is_an_expiration_error() -> None:
    exp = parse_expiration("2 years")
    assert exp is not None
    with pytest.raises(ExpirationError, match="out of range"):
        exp.expire_at(datetime(9998, 6, 1, tzinfo=UTC))
    with pytest.raises(ExpirationError, match="out of range"):
        Expiration(days=2).expire_at(datetime(9999, 12, 31, tzinfo=UTC))


def test_canonical_text() -> None:
    assert str(Expiration(years=1, months=2, weeks=1, days=3)) == "1 year 2 months 1 week 3 days"
    assert str(Expiration(days=1)) == "1 day"


expirations = st.builds(
    Expiration,
    years=st.integers(0, 60),
    months=st.integers(0, 400),
    weeks=st.integers(0, 500),
    days=st.integers(0, 3000),
).filter(lambda e: e != Expiration())
bases = st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2500, 12, 31), timezones=st.just(UTC))


@given(expirations)
def test_canonical_text_round_trips(exp: Expiration) -> None:
    assert parse_expiration(str(exp)) == exp
    assert parse_expiration(str(exp).upper().replace(" ", "  ")) == exp


@given(expirations, bases)
def test_result_is_after_base_and_keeps_time_of_day(exp: Expiration, base: datetime) -> None:
    result = exp.expire_at(base)
    assert result > base
    assert result.time() == base.time()
    assert result.tzinfo is base.tzinfo


@given(st.integers(1, 1200), bases)
def test_months_clamp_to_the_month_end(months: int, base: datetime) -> None:
    result = Expiration(months=months).expire_at(base)
    assert (result.year * 12 + result.month) - (base.year * 12 + base.month) == months
    assert result.day == min(base.day, calendar.monthrange(result.year, result.month)[1])


@given(st.integers(0, 3000), st.integers(0, 500), bases)
def test_weeks_and_days_are_exact(days: int, weeks: int, base: datetime) -> None:
    exp = Expiration(weeks=weeks, days=days)
    if exp == Expiration():
        return
    assert exp.expire_at(base) - base == timedelta(days=days + 7 * weeks)


@given(expirations, st.sampled_from(["years", "months", "weeks", "days"]), bases)
def test_monotonic_in_every_unit(exp: Expiration, unit: str, base: datetime) -> None:
    bigger = Expiration(**{**exp.__dict__, unit: getattr(exp, unit) + 1})
    assert bigger.expire_at(base) >= exp.expire_at(base)


@given(st.text(max_size=60))
def test_never_crashes(text: str) -> None:
    """Any text parses to an Expiration, None or an ExpirationError; nothing else escapes."""
    try:
        result = parse_expiration(text)
    except ExpirationError as e:
        assert len(str(e)) < 300
    else:
        assert result is None or isinstance(result, Expiration)
