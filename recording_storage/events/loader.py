"""Routing rules from configuration: ``routing.rules`` (inline) then ``routing.file``.

Everything that can be checked without an object is checked here, once, at start-up, and every
problem is reported at once with its key path and the rule's name: unknown keys, bad globs and
regexes, templates naming variables the rule does not define, literal room names DRACOON would
refuse, expirations that do not parse. The routing file has one top-level key, ``rules``, plus
any ``x-*`` keys (YAML anchors to share, e.g. an account map); ``${NAME}`` environment
references are expanded in it as in ``conf/app.yaml``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Mapping
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..config import AppConfig, expand_env, load_yaml_file
from ..errors import ConfigError, ConfigProblem
from ..expiration import Expiration, ExpirationError, parse_expiration
from .rules import BUILTIN_VARIABLES, DOMAIN_RE, Routes, Rule, TargetRoute, VarSpec
from .templates import NAME_RE, Template, compile_file_name, compile_path, parse_template, unknown_names

__all__ = ["DEFAULT_FILE_NAME", "MAX_RULES", "MAX_TARGETS", "compile_rules", "glob_to_regex", "load_routes"]

DEFAULT_FILE_NAME = "{basename}"
MAX_RULES = 500
MAX_TARGETS = 50
_RULE_KEYS = ("name", "description", "bucket", "key", "key_regex", "timezone", "vars", "instance",
              "expiration", "targets", "file_name")
_VAR_KEYS = ("from", "map", "default", "url_decode")
_RULE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", re.ASCII)
_BUCKET_GLOB = re.compile(r"[A-Za-z0-9._*?\[\]!-]{1,255}", re.ASCII)
_MAX_PATTERN = 2000


def glob_to_regex(glob: str) -> str:
    """A key glob as a regex: ``*`` within one path segment, ``**`` across segments (``a/**/b``
    also matches ``a/b``), ``?`` one character but ``/``, ``{name}`` captures a non-empty run
    without ``/`` (greedy), ``{{``/``}}`` literal braces; everything else is literal."""
    out: list[str] = []
    i = 0
    while i < len(glob):
        if glob.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif glob.startswith("**", i):
            out.append(".*")
            i += 2
        elif glob[i] == "*":
            out.append("[^/]*")
            i += 1
        elif glob[i] == "?":
            out.append("[^/]")
            i += 1
        elif glob.startswith(("{{", "}}"), i):
            out.append(re.escape(glob[i]))
            i += 2
        elif glob[i] == "{":
            end = glob.find("}", i)
            name = glob[i + 1:end] if end > i else ""
            if not NAME_RE.fullmatch(name):
                raise ValueError(f"{{{name[:40]}}} is not a capture name (letters, digits, '_')" if end > i
                                 else "has an unclosed '{'")
            out.append(f"(?P<{name}>[^/]+)")
            i = end + 1
        elif glob[i] == "}":
            raise ValueError("has a stray '}' (write }} for a literal brace)")
        else:
            out.append(re.escape(glob[i]))
            i += 1
    return "".join(out)


class _Rule:
    """Problem collector for one rule; messages carry the rule's name once it is known."""

    def __init__(self, path: str, source: str, problems: list[ConfigProblem]) -> None:
        self.path = path
        self.source = source
        self.problems = problems
        self.name = ""
        self.count = 0

    def add(self, key: str, message: str) -> None:
        label = f"rule {self.name!r}: " if self.name else ""
        where = f"{self.path}.{key}" if key else self.path
        self.problems.append(ConfigProblem(where, label + message, self.source))
        self.count += 1

    def text(self, raw: Mapping[str, Any], key: str, *, required: bool = False) -> str | None:
        value = raw.get(key)
        if value is None or value == "":
            if required:
                self.add(key, "is required")
            return None
        if not isinstance(value, str):
            self.add(key, f"must be a string, got {type(value).__name__}")
            return None
        return value


def compile_rules(raw: object, *, path: str, source: str = "", names: set[str] | None = None
                  ) -> tuple[list[Rule], list[ConfigProblem]]:
    """Compile a YAML list of rules; ``names`` collects rule names across lists (unique)."""
    problems: list[ConfigProblem] = []
    seen = names if names is not None else set()
    if raw is None:
        return [], problems
    if not isinstance(raw, list | tuple):
        return [], [ConfigProblem(path, "must be a list of rules", source)]
    if len(raw) > MAX_RULES:
        return [], [ConfigProblem(path, f"has too many rules ({len(raw)}, at most {MAX_RULES})", source)]
    rules = []
    for i, item in enumerate(raw):
        c = _Rule(f"{path}[{i}]", source, problems)
        rule = _compile_rule(c, item, seen)
        if rule is not None:
            rules.append(rule)
    return rules, problems


def _compile_rule(c: _Rule, item: object, seen: set[str]) -> Rule | None:
    if not isinstance(item, dict):
        c.add("", "must be a mapping with name, bucket, key or key_regex, instance and targets")
        return None
    name = c.text(item, "name", required=True)
    if name is not None:
        if not _RULE_NAME.fullmatch(name):
            c.add("name", "must be 1-64 letters, digits, '.', '-' or '_'")
        elif name in seen:
            c.add("name", f"rule name {name!r} is used twice; names must be unique")
        seen.add(name)
        c.name = name
    for key in item:
        if key not in _RULE_KEYS:
            c.add(str(key), f"unknown key (allowed: {', '.join(_RULE_KEYS)})")
    bucket = c.text(item, "bucket") or "*"
    if not _BUCKET_GLOB.fullmatch(bucket):
        c.add("bucket", "must be a bucket name or a glob of one (letters, digits, '.', '-', '_', '*', '?')")
    pattern = _key_pattern(c, item)
    groups = list(pattern.groupindex) if pattern is not None else []
    if "instance" in groups:
        c.add("key_regex" if "key_regex" in item else "key", "{instance} cannot be a capture name")
    tz = _timezone(c, item)
    known = [*BUILTIN_VARIABLES, *groups]
    variables = _vars(c, item.get("vars"), known)
    instance = _instance(c, item, known)
    known_all = [*known, "instance"]
    default_exp = _expiration(c, item.get("expiration"), "expiration")
    targets = _targets(c, item.get("targets"), known_all, default_exp)
    file_name, found = compile_file_name(c.text(item, "file_name") or DEFAULT_FILE_NAME, known_all)
    for problem in found:
        c.add("file_name", problem)
    if c.count or name is None or instance is None or file_name is None or tz is None:
        return None
    where = f"rule {name!r} ({c.source + ': ' if c.source else ''}{c.path})"
    return Rule(name, where, bucket, instance, tuple(targets), file_name, tz, pattern,
                str(item.get("key_regex") or item.get("key") or ""), tuple(variables))


def _key_pattern(c: _Rule, item: dict[str, Any]) -> re.Pattern[str] | None:
    if "key" in item and "key_regex" in item:
        c.add("key_regex", "give either key (a glob) or key_regex, not both")
        return None
    field = "key_regex" if "key_regex" in item else "key"
    text = c.text(item, field)
    if text is None:
        return None
    if len(text) > _MAX_PATTERN:
        c.add(field, f"is too long ({len(text)} characters, at most {_MAX_PATTERN})")
        return None
    try:
        regex = text if field == "key_regex" else glob_to_regex(text)
        return re.compile(regex)
    except (ValueError, re.error) as exc:  # re.error is a ValueError on 3.13+, not on 3.11
        c.add(field, f"is not a valid {'regular expression' if field == 'key_regex' else 'glob'}: {exc}")
        return None


def _timezone(c: _Rule, item: dict[str, Any]) -> ZoneInfo | None:
    name = c.text(item, "timezone") or "UTC"
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        c.add("timezone", 'must be an IANA time zone name, e.g. "Europe/Berlin"')
        return None


def _check(c: _Rule, key: str, text: str, known: Collection[str]) -> Template | None:
    template, problems = parse_template(text)
    problems = problems or unknown_names(template, known)
    for problem in problems:
        c.add(key, problem)
    return None if problems else template


def _vars(c: _Rule, raw: object, known: list[str]) -> list[VarSpec]:
    if raw is None:
        return []
    if not isinstance(raw, dict):
        c.add("vars", "must be a mapping of variable name to a template or {from, map, default}")
        return []
    specs = []
    for name, spec in raw.items():
        key = f"vars.{name}"
        if not isinstance(name, str) or not NAME_RE.fullmatch(name) or name == "instance":
            c.add(key, "variable names are letters, digits and '_' ({instance} is reserved)")
            continue
        if name in known[len(BUILTIN_VARIABLES):]:
            c.add(key, f"{{{name}}} is already defined by the key pattern or an earlier variable")
            continue
        if isinstance(spec, str):
            source = _check(c, key, spec, known)
            if source is not None:
                specs.append(VarSpec(name, source))
            known.append(name)
            continue
        var = _lookup(c, key, spec, name, known)
        if var is not None:
            specs.append(var)
        known.append(name)
    return specs


def _lookup(c: _Rule, key: str, spec: object, name: str, known: list[str]) -> VarSpec | None:
    if not isinstance(spec, dict):
        c.add(key, "must be a template string or a mapping with from, map, default, url_decode")
        return None
    for extra in spec:
        if extra not in _VAR_KEYS:
            c.add(f"{key}.{extra}", f"unknown key (allowed: {', '.join(_VAR_KEYS)})")
    text = c.text(spec, "from")
    if text is None:
        c.add(f"{key}.from", "is required")
        return None
    source = _check(c, f"{key}.from", text, known)
    mapping: dict[str, str] | None = None
    if spec.get("map") is not None:
        mapping = _mapping(c, f"{key}.map", spec["map"])
    default = None
    if spec.get("default") is not None:
        default = _check(c, f"{key}.default", str(spec["default"]), known)
    url_decode = spec.get("url_decode", False)
    if not isinstance(url_decode, bool):
        c.add(f"{key}.url_decode", "must be true or false")
    if source is None:
        return None
    return VarSpec(name, source, mapping, default, bool(url_decode))


def _mapping(c: _Rule, key: str, raw: object) -> dict[str, str] | None:
    if not isinstance(raw, dict):
        c.add(key, "must be a mapping of value to replacement")
        return None
    out: dict[str, str] = {}
    for k, v in raw.items():
        if not all(isinstance(x, str | int) and not isinstance(x, bool) for x in (k, v)):
            c.add(key, "keys and values must be strings")
            return None
        out[str(k)] = str(v)
    return out


def _instance(c: _Rule, item: dict[str, Any], known: Collection[str]) -> Template | None:
    text = c.text(item, "instance", required=True)
    if text is None:
        return None
    template = _check(c, "instance", text, known)
    if template is not None and template.is_literal and not DOMAIN_RE.fullmatch(text.strip().rstrip(".")):
        c.add("instance", "must be a host name (letters, digits, '-', '_' and single dots) or a template")
        return None
    return template


def _expiration(c: _Rule, raw: object, key: str) -> tuple[Expiration | None, str | None]:
    if raw is None or raw == "":
        return None, None
    if not isinstance(raw, str):
        c.add(key, 'must be a string such as "1 year 6 months"')
        return None, None
    try:
        return parse_expiration(raw), raw.strip() or None
    except ExpirationError as exc:
        c.add(key, str(exc))
        return None, None


def _targets(
    c: _Rule, raw: object, known: Collection[str], default: tuple[Expiration | None, str | None]
) -> list[TargetRoute]:
    if not isinstance(raw, list) or not raw:
        c.add("targets", 'must be a non-empty list of {path, expiration} (path "/" is the parent room)')
        return []
    if len(raw) > MAX_TARGETS:
        c.add("targets", f"has too many targets ({len(raw)}, at most {MAX_TARGETS})")
        return []
    targets = []
    for i, item in enumerate(raw):
        key = f"targets[{i}]"
        spec = {"path": item} if isinstance(item, str) else item
        if not isinstance(spec, dict):
            c.add(key, "must be a path string or a mapping with path and expiration")
            continue
        for extra in spec:
            if extra not in ("path", "expiration"):
                c.add(f"{key}.{extra}", "unknown key (allowed: path, expiration)")
        text = spec.get("path")
        if not isinstance(text, str):
            c.add(f"{key}.path", 'is required ("/" for the parent room)')
            continue
        path, problems = compile_path(text, known)
        for problem in problems:
            c.add(f"{key}.path", problem)
        exp, exp_text = (_expiration(c, spec["expiration"], f"{key}.expiration") if "expiration" in spec
                         else default)
        if path is not None:
            targets.append(TargetRoute(path, exp, exp_text))
    return targets


def load_routes(cfg: AppConfig, *, env: Mapping[str, str] | None = None) -> Routes:
    """All rules (inline, then the file's) and the buckets' key prefixes; raises ``ConfigError``."""
    env = os.environ if env is None else env
    names: set[str] = set()
    rules, problems = compile_rules(list(cfg.routing.rules), path="routing.rules", names=names)
    if cfg.routing.file is not None:
        path = cfg.resolve(cfg.routing.file)
        data = load_yaml_file(path, what="routing file")
        source = str(path)
        if data is None:
            data = {}
        if not isinstance(data, dict):
            problems.append(ConfigProblem("", "top level must be a mapping with a 'rules' list", source))
        else:
            for key in data:
                if key != "rules" and not str(key).startswith("x-"):
                    message = "unknown top-level key (only 'rules' and x-* keys for shared anchors)"
                    problems.append(ConfigProblem(str(key), message, source))
            env_problems: list[ConfigProblem] = []
            expanded = expand_env(data.get("rules"), env, "rules", env_problems)
            problems.extend(ConfigProblem(p.path, p.message, source) for p in env_problems)
            more, found = compile_rules(expanded, path="rules", source=source, names=names)
            rules.extend(more)
            problems.extend(found)
    if problems:
        raise ConfigError(problems)
    prefixes = {bucket: src.prefix for bucket, src in cfg.s3.buckets.items() if src.prefix}
    return Routes(tuple(rules), prefixes)
