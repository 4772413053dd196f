"""Compiled routing rules and the matcher: which rule claims a created object, with what values.

Matching, in this order, first match wins:

1. the bucket's ``key_prefix`` (``s3.buckets``): a key outside it matches nothing; rules see
   the key *below* the prefix (Kazoo's ``folder_base_path``);
2. per rule, in configuration order: the bucket (exact name or glob), then the key pattern
   (glob with ``{name}`` captures, or a regex with named groups; always the whole key);
3. the rule's ``vars``: a lookup (``map``) whose value is not listed and that has no
   ``default`` makes the rule not match, so a later rule (or nobody) gets the object.

Values are the built-ins (``bucket``, ``key``, ``dirname``, ``basename``, ``stem``, ``ext``
and ``year``/``month``/``day``/``hour``/``minute`` of the event time in the rule's time zone),
then the captures (a capture that matched text replaces a built-in of the same name, so Kazoo's
MODB suffix can supply ``year`` and ``month``), then ``vars`` in order, then ``instance``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from fnmatch import fnmatchcase
from urllib.parse import unquote

from ..errors import PermanentError
from ..expiration import Expiration
from ..instances import normalise_domain
from .records import ObjectRecord
from .templates import PathTemplate, Template

__all__ = [
    "BUILTIN_VARIABLES",
    "DOMAIN_RE",
    "InvalidRoute",
    "RouteMatch",
    "Routes",
    "Rule",
    "TargetRoute",
    "VarSpec",
    "builtin_values",
]

BUILTIN_VARIABLES = ("bucket", "key", "dirname", "basename", "stem", "ext",
                     "year", "month", "day", "hour", "minute")
DOMAIN_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_-]|\.(?!\.)){0,252}", re.ASCII)
GLOB_CHARS = frozenset("*?[")

Values = dict[str, str | None]


class InvalidRoute(PermanentError):
    """A rule matched but cannot produce a usable instance, room or file name for this object."""

    code = "invalid_route"


@dataclass(frozen=True)
class TargetRoute:
    """One target of a rule: a room path template and its retention."""

    path: PathTemplate
    expiration: Expiration | None = None
    expiration_text: str | None = None


@dataclass(frozen=True)
class VarSpec:
    """A derived value: a template, optionally URL-decoded, optionally looked up in a map."""

    name: str
    source: Template
    mapping: Mapping[str, str] | None = None
    default: Template | None = None
    url_decode: bool = False


@dataclass(frozen=True)
class Rule:
    """One compiled routing rule; ``where`` names it in errors (``rule 'x' (routing.rules[0])``)."""

    name: str
    where: str
    bucket: str
    instance: Template
    targets: tuple[TargetRoute, ...]
    file_name: Template
    timezone: tzinfo
    key_pattern: re.Pattern[str] | None = None
    key_text: str = ""
    vars: tuple[VarSpec, ...] = ()

    @property
    def exact_bucket(self) -> str | None:
        """The bucket name when it is not a glob (for checks and docs)."""
        return None if GLOB_CHARS & set(self.bucket) else self.bucket

    def bucket_matches(self, bucket: str) -> bool:
        exact = self.exact_bucket
        return bucket == exact if exact is not None else fnmatchcase(bucket, self.bucket)

    def values(self, record: ObjectRecord, key: str) -> Values | None:
        """Template values for ``key`` (relative to the bucket's prefix), or ``None``: no match."""
        values = builtin_values(record.bucket, key, record.event_time, self.timezone)
        if self.key_pattern is not None:
            m = self.key_pattern.fullmatch(key)
            if m is None:
                return None
            for name, value in m.groupdict().items():
                if value:
                    values[name] = value
                else:
                    values.setdefault(name, None)
        for var in self.vars:
            text, problems = var.source.render(values)
            if var.url_decode and not problems:
                text = unquote(text, errors="strict") if _decodes(text) else text
            if var.mapping is None:
                values[var.name] = None if problems else text
                continue
            if not problems and text in var.mapping:
                values[var.name] = var.mapping[text]
            elif var.default is not None:
                value, missing = var.default.render(values)
                values[var.name] = None if missing else value
            else:
                return None  # an unlisted value without a default: not this rule's object
        return values


def _decodes(text: str) -> bool:
    try:
        unquote(text, errors="strict")
    except UnicodeDecodeError:
        return False
    return True


def builtin_values(bucket: str, key: str, when: datetime | None, tz: tzinfo) -> Values:
    """The built-in variables; date parts are ``None`` when the event carried no time."""
    dirname, _, basename = key.rpartition("/")
    stem, dot, ext = basename.rpartition(".")
    if not dot or not stem:
        stem, ext = basename, ""
    values: Values = {
        "bucket": bucket, "key": key, "dirname": dirname or None, "basename": basename or None,
        "stem": stem or None, "ext": ext.lower() or None,
    }
    local = when.astimezone(tz) if when is not None else None
    for name, fmt in (("year", "%Y"), ("month", "%m"), ("day", "%d"), ("hour", "%H"), ("minute", "%M")):
        values[name] = local.strftime(fmt) if local is not None else None
    return values


@dataclass(frozen=True)
class RouteMatch:
    """The rule that claimed an object, its values (``instance`` included) and the domain."""

    rule: Rule
    values: Mapping[str, str | None]
    instance_domain: str


@dataclass(frozen=True)
class Routes:
    """Every rule, in evaluation order, and the per-bucket key prefixes."""

    rules: tuple[Rule, ...] = ()
    prefixes: Mapping[str, str] = field(default_factory=dict)

    @property
    def buckets(self) -> list[str]:
        """Exact bucket names named by rules (globs cannot be listed)."""
        return list(dict.fromkeys(b for b in (r.exact_bucket for r in self.rules) if b is not None))

    def route(self, record: ObjectRecord) -> RouteMatch | None:
        """The first rule claiming ``record``; raises ``InvalidRoute`` if its instance is unusable."""
        prefix = self.prefixes.get(record.bucket, "")
        if not record.key.startswith(prefix):
            return None
        key = record.key[len(prefix):]
        for rule in self.rules:
            if not rule.bucket_matches(record.bucket):
                continue
            values = rule.values(record, key)
            if values is None:
                continue
            text, problems = rule.instance.render(values)
            domain = normalise_domain(text)
            if not problems and not DOMAIN_RE.fullmatch(domain):
                problems = ["is not a host name (letters, digits, '-', '_' and single dots)"]
            if problems:
                raise InvalidRoute(f"{rule.where}: instance: " + "; ".join(problems))
            values["instance"] = domain
            return RouteMatch(rule, values, domain)
        return None
