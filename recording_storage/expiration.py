"""The expiration grammar of job targets: ``"4 years 3 months 2 weeks 1 day"``.

Grammar (case-insensitive, ASCII digits only)::

    expiration := component (separator component)*
    component  := NUMBER unit            e.g. "3 months", "1day"
    unit       := year[s] | month[s] | week[s] | day[s]
    separator  := whitespace | "," | "and" | ", and"

Why it is stricter than the original (original-service.md §2.3, bug 22): the Go service summed
every regex match anywhere in the text and silently ignored the rest, so ``"1 day 2 days"`` meant
three days, ``"3 Days"`` meant *no* days and ``"forever"`` meant *expire immediately*. Here
anything that does not parse is an error with a readable reason, each unit may appear once, the
total must be positive (``"0 days"`` would be "expire now") and at most 100 years (a typo such as
``"1000 years"`` is rejected instead of silently accepted). ``""`` / ``None`` mean "never expire".

Arithmetic is calendar-correct and clamps to the month end (Jan 31 + 1 month = Feb 28/29), unlike
Go's ``AddDate`` which rolled over into March. Years and months are applied together as one month
count, with a single clamp, as ``dateutil.relativedelta`` does (so Feb 29 + 1 year 1 month is
Mar 29, not Mar 28); weeks and days are then added as calendar days in the base's own time zone,
so "1 day" after 14:15 local time is 14:15 local time the next day even across a DST change.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction

__all__ = ["MAX_TEXT_LENGTH", "Expiration", "ExpirationError", "parse_expiration"]

MAX_TEXT_LENGTH = 200
# Bound on the total span, measured with the mean Gregorian year/month so that "100 years",
# "1200 months" and "5217 weeks" are all accepted and anything meaningfully longer is not.
_MAX_DAYS = Fraction(36524_25, 100)
_DAYS_PER = {
    "year": Fraction(36524_25, 100_00),
    "month": Fraction(36524_25, 1200_00),
    "week": Fraction(7),
    "day": Fraction(1),
}
_UNITS = ("year", "month", "week", "day")
_MAX_DIGITS = 6

_CHARS = re.compile(r"[0-9a-z,\s]*", re.ASCII)
_TOKEN = re.compile(r"[0-9]+|[a-z]+|,", re.ASCII)
_UNIT_WORDS = {**{u: u for u in _UNITS}, **{u + "s": u for u in _UNITS}}


class ExpirationError(ValueError):
    """An expiration text that does not follow the grammar; the message says what and where."""


@dataclass(frozen=True)
class Expiration:
    """A calendar span; ``str()`` gives the canonical text, which parses back to an equal value."""

    years: int = 0
    months: int = 0
    weeks: int = 0
    days: int = 0

    def __str__(self) -> str:
        parts = []
        for unit in _UNITS:
            n = getattr(self, unit + "s")
            if n:
                parts.append(f"{n} {unit}{'' if n == 1 else 's'}")
        return " ".join(parts)

    def expire_at(self, base: datetime) -> datetime:
        """``base`` plus this span; keeps ``base``'s time zone.

        Raises ``ExpirationError`` when the result falls outside what ``datetime`` can represent.
        """
        try:
            total = base.year * 12 + (base.month - 1) + self.years * 12 + self.months
            year, month0 = divmod(total, 12)
            if not 1 <= year <= 9999:
                raise OverflowError
            day = min(base.day, calendar.monthrange(year, month0 + 1)[1])
            moved = base.replace(year=year, month=month0 + 1, day=day)
            return moved + timedelta(days=self.weeks * 7 + self.days)
        except (OverflowError, ValueError):
            raise ExpirationError(f'"{self}" after {base.date().isoformat()} is out of range') from None


def _quote(text: str) -> str:
    """The text for an error message, cut short: expirations come from messages and configs."""
    return repr(text if len(text) <= 40 else text[:37] + "...")


def parse_expiration(text: str | None) -> Expiration | None:
    """Parse an expiration; ``None`` or blank means no expiration.

    Raises ``ExpirationError`` (a ``ValueError``) naming the problem.
    """
    if text is None:
        return None
    if not isinstance(text, str):
        raise ExpirationError(f"must be a string, not {type(text).__name__}")
    if len(text) > MAX_TEXT_LENGTH:
        raise ExpirationError(f"is too long ({len(text)} characters, at most {MAX_TEXT_LENGTH})")
    lowered = text.lower()
    if not lowered.strip():
        return None
    if not _CHARS.fullmatch(lowered):
        bad = next(c for c in lowered if not _CHARS.fullmatch(c))
        raise ExpirationError(
            f"cannot parse {_quote(text)}: unexpected character {bad!r}; "
            'expected e.g. "1 year 2 months 3 weeks 4 days"'
        )
    tokens = _TOKEN.findall(lowered)
    values = _parse_tokens(text, tokens)
    exp = Expiration(**{unit + "s": n for unit, n in values.items()})
    span = sum((_DAYS_PER[unit] * n for unit, n in values.items()), Fraction(0))
    if span <= 0:
        raise ExpirationError(f"{_quote(text)} is zero; leave the expiration empty for no expiration")
    if span > _MAX_DAYS:
        raise ExpirationError(f"{_quote(text)} is longer than the allowed maximum of 100 years")
    return exp


def _parse_tokens(text: str, tokens: list[str]) -> dict[str, int]:
    """Walk ``NUMBER UNIT (sep NUMBER UNIT)*``; separators are optional "," and/or "and"."""
    values: dict[str, int] = {}
    i = 0
    expect_component = True
    while i < len(tokens):
        tok = tokens[i]
        if not expect_component and tok in (",", "and"):
            # One optional comma, then one optional "and".
            if tok == "," and i + 1 < len(tokens) and tokens[i + 1] == "and":
                i += 1
            i += 1
            expect_component = True
            if i == len(tokens):
                raise ExpirationError(f"cannot parse {_quote(text)}: ends with a separator")
            continue
        if not tok.isdigit():
            raise ExpirationError(
                f"cannot parse {_quote(text)}: expected a number, found {_quote(tok)}; "
                'expected e.g. "1 year 2 months 3 weeks 4 days"'
            )
        if len(tok.lstrip("0")) > _MAX_DIGITS:
            raise ExpirationError(f"{_quote(text)}: the number is too large")
        if i + 1 >= len(tokens) or tokens[i + 1] not in _UNIT_WORDS:
            found = "nothing" if i + 1 >= len(tokens) else _quote(tokens[i + 1])
            raise ExpirationError(
                f"cannot parse {_quote(text)}: after {tok} expected year(s), month(s), week(s) or "
                f"day(s), found {found}"
            )
        unit = _UNIT_WORDS[tokens[i + 1]]
        if unit in values:
            raise ExpirationError(f"cannot parse {_quote(text)}: {unit}s given more than once")
        values[unit] = int(tok)
        i += 2
        expect_component = False
    return values
