"""``{name}`` templates of routing rules: instance domains, room paths and file names.

Routing templates use ``{name}`` (``{{`` and ``}}`` for literal braces), not the ``$name`` of
job-message targets, on purpose: routing rules may live inline in ``conf/app.yaml``, where the
loader already expands ``${NAME}`` from the environment, and ``{name}`` reads the same as the
named captures of key globs (``{account_id}/{doc_id}``).

Path templates follow the job-message path rules (``recording_storage.targets``): segments are
split at literal ``/`` only, literal segments must already be valid node names, segments with
variables are sanitised after expansion (values are data: a ``/`` or ``..`` inside a value can
never leave the parent room), and a variable without a value is an error, never an empty name.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from ..node_names import clean_value, has_bad_chars
from ..targets import (
    MAX_DEPTH,
    MAX_NAME_LENGTH,
    name_length,
    sanitize_node_name,
    truncate_name,
    validate_node_name,
)

__all__ = [
    "NAME_RE",
    "PathTemplate",
    "Template",
    "compile_file_name",
    "compile_path",
    "parse_template",
    "render_file_name",
    "unknown_names",
]

NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)
MAX_TEMPLATE_LENGTH = 1024
_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")

Values = Mapping[str, str | None]


@dataclass(frozen=True)
class Template:
    """A parsed template: literal text and variable names, in order."""

    text: str
    parts: tuple[tuple[bool, str], ...]

    @property
    def names(self) -> tuple[str, ...]:
        """Variables used, in order of first use."""
        return tuple(dict.fromkeys(text for is_var, text in self.parts if is_var))

    @property
    def is_literal(self) -> bool:
        return not any(is_var for is_var, _ in self.parts)

    @property
    def literal_text(self) -> str:
        """The fixed text only (all of it for a literal template)."""
        return "".join(text for is_var, text in self.parts if not is_var)

    def render(self, values: Values, *, clean: bool = False) -> tuple[str, list[str]]:
        """Expand; a variable without a value (missing, ``None`` or ``""``) is a problem.

        ``clean`` makes values harmless inside one node name (see ``node_names.clean_value``).
        """
        out: list[str] = []
        problems: list[str] = []
        for is_var, text in self.parts:
            if not is_var:
                out.append(text)
                continue
            value = values.get(text)
            if not value:
                problems.append(f"{{{text}}} has no value for this object")
                continue
            out.append(clean_value(value) if clean else value)
        return "".join(out), problems


def parse_template(text: str) -> tuple[Template, list[str]]:
    """Parse ``text``; problems name stray braces and malformed variable names."""
    parts: list[tuple[bool, str]] = []
    problems: list[str] = []
    if len(text) > MAX_TEMPLATE_LENGTH:
        return Template(text, ()), [f"is too long ({len(text)} characters, at most {MAX_TEMPLATE_LENGTH})"]
    pos = 0
    for m in _TOKEN.finditer(text):
        if m.start() > pos:
            parts.append((False, text[pos:m.start()]))
        pos = m.end()
        token = m.group(0)
        if token in ("{{", "}}"):
            parts.append((False, token[0]))
        elif m.group(1) is not None:
            name = m.group(1).strip()
            if NAME_RE.fullmatch(name):
                parts.append((True, name))
            else:
                shown = name if len(name) <= 40 else name[:37] + "..."
                problems.append(f"{{{shown}}} is not a variable name (letters, digits, '_'; "
                                "write {{ and }} for literal braces)")
        else:
            problems.append(f"stray {token!r} (write {{{{ and }}}} for literal braces)")
    if pos < len(text):
        parts.append((False, text[pos:]))
    merged: list[tuple[bool, str]] = []
    for part in parts:
        if merged and not part[0] and not merged[-1][0]:
            merged[-1] = (False, merged[-1][1] + part[1])
        else:
            merged.append(part)
    return Template(text, tuple(merged)), problems


def unknown_names(template: Template, known: Collection[str]) -> list[str]:
    """Problems for variables that the rule does not define (named with what it does define)."""
    missing = [n for n in template.names if n not in known]
    if not missing:
        return []
    shown = ", ".join("{" + k + "}" for k in sorted(known))
    return [f"unknown variable {{{n}}} (known here: {shown})" for n in missing]


@dataclass(frozen=True)
class PathTemplate:
    """A room path below the parent room; ``()`` segments is the parent room itself."""

    text: str
    segments: tuple[Template, ...]

    def expand(self, values: Values) -> tuple[tuple[str, ...], list[str]]:
        """Segments relative to the parent room, and problems (segments unusable if any)."""
        out: list[str] = []
        problems: list[str] = []
        for n, segment in enumerate(self.segments, 1):
            if segment.is_literal:
                out.append(segment.literal_text)
                continue
            text, found = segment.render(values, clean=True)
            if found:
                problems.extend(f"segment {n}: {p}" for p in found)
                continue
            name = sanitize_node_name(text)
            problems.extend(f"segment {n}: {p}" for p in validate_node_name(name))
            out.append(name)
        return tuple(out), problems


def _segment_problems(template: Template) -> list[str]:
    """Problems a segment has whatever its values are (checked once, at load)."""
    if template.is_literal:
        return validate_node_name(template.literal_text)
    problems = []
    literal = template.literal_text
    if has_bad_chars(literal):
        problems.append("contains forbidden or control characters outside variables")
    if name_length(literal) > MAX_NAME_LENGTH:
        problems.append(f"its fixed text alone is longer than {MAX_NAME_LENGTH} characters")
    first_is_var, first = template.parts[0]
    last_is_var, last = template.parts[-1]
    if not first_is_var and first.startswith("-"):
        problems.append("must not start with '-'")
    if not last_is_var and last.endswith((".", " ")):
        problems.append("must not end with '.' or a space")
    return problems


def compile_path(text: str, known: Collection[str]) -> tuple[PathTemplate | None, list[str]]:
    """Parse and check a room path template (``""`` or ``"/"``: the parent room itself)."""
    raw = text.split("/")
    while raw and raw[0] == "":
        raw.pop(0)
    while raw and raw[-1] == "":
        raw.pop()
    problems: list[str] = []
    if "" in raw:
        problems.append("contains an empty segment ('//')")
    if len(raw) > MAX_DEPTH:
        problems.append(f"is too deep ({len(raw)} levels, at most {MAX_DEPTH})")
    segments: list[Template] = []
    for n, seg in enumerate(raw, 1):
        if seg == "":
            continue
        template, found = parse_template(seg)
        found = found or unknown_names(template, known) or _segment_problems(template)
        problems.extend(f"segment {n}: {p}" for p in found)
        segments.append(template)
    return (PathTemplate(text, tuple(segments)) if not problems else None), problems


def compile_file_name(text: str, known: Collection[str]) -> tuple[Template | None, list[str]]:
    """Parse and check a file name template: one node name, no '/'."""
    if "/" in text:
        return None, ["must be a single name (no '/'); rooms come from the targets"]
    if not text.strip():
        return None, ["must not be empty"]
    template, problems = parse_template(text)
    problems = problems or unknown_names(template, known) or _segment_problems(template)
    return (template if not problems else None), problems


def render_file_name(template: Template, values: Values) -> tuple[str, list[str]]:
    """The expanded, sanitised file name; when too long the stem is cut, the extension kept."""
    text, problems = template.render(values, clean=True)
    if problems:
        return "", problems
    text = unicodedata.normalize("NFC", text)
    stem, dot, ext = text.rpartition(".")
    if name_length(text) > MAX_NAME_LENGTH and dot and stem and 0 < len(ext) <= 10:
        text = f"{truncate_name(stem, MAX_NAME_LENGTH - len(ext) - 1).rstrip(' .')}.{ext}"
    name = sanitize_node_name(text)
    return name, validate_node_name(name)
