"""DRACOON node-name rules, path normalisation and ``$variable`` path templates.

Every room path we create is a tuple of segments *relative to the instance's parent room*,
and the DRACOON client creates rooms by (parent id, name). A path therefore cannot escape the
parent room as long as no segment is ``.``/``..`` and none contains ``/``; those checks live
here, in one place, for message targets and instance-configured targets alike.

Lengths are counted in UTF-16 code units, because DRACOON's 150-character limit is enforced
by a Java backend (``String.length()``); for names without emoji this equals characters.
Truncation always cuts between code points.

Node identity (``node_name_key``) lives here too, the one comparison used for target dedup, room
lookup and file naming. DRACOON keeps names unique per parent *ignoring case* (a second ``r2``
beside ``R2`` is a 409), without Unicode normalisation of its own: DRACOON's own CLI (dccmd-rs,
"handle unicode paths (macos nfd) correctly") turns names into NFC before creating or looking them
up. So every name we send is NFC, and two spellings are one node when their NFC forms are equal
ignoring case. Case is folded character by character (Java's ``equalsIgnoreCase``, the backend's
language; not Python's full ``casefold``, which would make ``Straße`` equal ``STRASSE``): a
merged pair DRACOON keeps apart would silently leave one room without its recording, while the
opposite error only costs a duplicate upload check.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping

__all__ = [
    "FORBIDDEN_CHARS",
    "MAX_DEPTH",
    "MAX_NAME_LENGTH",
    "MAX_TEMPLATE_LENGTH",
    "TEMPLATE_VARIABLES",
    "check_path_template",
    "clean_value",
    "expand_path_template",
    "has_bad_chars",
    "name_length",
    "node_name_key",
    "replace_bad_chars",
    "replace_control_chars",
    "sanitize_node_name",
    "truncate_name",
    "validate_node_name",
]

MAX_NAME_LENGTH = 150
MAX_DEPTH = 10
MAX_TEMPLATE_LENGTH = 1024
FORBIDDEN_CHARS = frozenset('\\<>:"|?*/')
TEMPLATE_VARIABLES = ("instance", "meetingType", "meetingId", "year", "month", "day")

_RESERVED = frozenset(
    ["CON", "PRN", "AUX", "NUL"] + [f"COM{i}" for i in range(1, 10)] + [f"LPT{i}" for i in range(1, 10)]
)
# Control characters: general categories Cc (U+0000-001F, U+007F-009F), Cs (lone surrogates),
# Zl (U+2028) and Zp (U+2029), plus the bidi overrides and isolates, which make a name display
# differently from what it is ("gpj.exe" tricks). One regex instead of a unicodedata lookup per
# character: names are checked and cleaned several times per job. tests/test_node_name_chars.py
# compares both classes with unicodedata.category over every code point.
_CONTROL_CLASS = r"\x00-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029\u202a-\u202e\u2066-\u2069"
_CONTROL = re.compile(f"[{_CONTROL_CLASS}]")
_BAD = re.compile(f"[{_CONTROL_CLASS}{''.join(map(re.escape, sorted(FORBIDDEN_CHARS)))}]")
# Characters outside the BMP: two UTF-16 code units each.
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")
_PLACEHOLDER = re.compile(r"\$(?:(\$)|([A-Za-z_][A-Za-z0-9_]*)|\{([A-Za-z_][A-Za-z0-9_]*)\})?")
_TRAILING = re.compile(r"[\s.]+\Z")
_KNOWN = ", ".join("$" + v for v in TEMPLATE_VARIABLES)


def name_length(name: str) -> int:
    """Length as DRACOON counts it (UTF-16 code units)."""
    return len(name) + len(_ASTRAL.findall(name))


def _fold_char(c: str) -> str:
    """Java's per-character case folding: upper, then lower, keeping one-to-one mappings only."""
    upper = c.upper()
    if len(upper) != 1:
        upper = c
    lower = upper.lower()
    return lower if len(lower) == 1 else upper


def node_name_key(name: str) -> str:
    """What two node names in one parent are compared by: NFC, then case folded (module docstring)."""
    if name.isascii():
        # NFC leaves ASCII as it is and the fold of an ASCII character is its lower case: the same
        # key at C speed (every child of a listed room is keyed, once per job and file).
        return name.lower()
    return "".join(_fold_char(c) for c in unicodedata.normalize("NFC", name))


def truncate_name(name: str, limit: int) -> str:
    """The longest prefix of ``name`` within ``limit`` UTF-16 units, never splitting a code point."""
    if _ASTRAL.search(name) is None:
        return name[: max(limit, 0)]  # one unit per character
    used = 0
    for i, c in enumerate(name):
        used += 2 if ord(c) > 0xFFFF else 1
        if used > limit:
            return name[:i]
    return name


def replace_control_chars(text: str, replacement: str) -> str:
    """``text`` with each control character, line separator, lone surrogate and bidi override
    replaced by ``replacement``."""
    return _CONTROL.sub(replacement, text)


def replace_bad_chars(text: str, replacement: str) -> str:
    """``text`` with each character DRACOON forbids in names, and each control character
    (``replace_control_chars``), replaced by ``replacement``."""
    return _BAD.sub(replacement, text)


def has_bad_chars(text: str) -> bool:
    """Whether ``replace_bad_chars`` would change ``text``."""
    return _BAD.search(text) is not None


def _is_reserved(name: str) -> bool:
    return name.split(".", 1)[0].strip(" ").upper() in _RESERVED


def validate_node_name(name: str) -> list[str]:
    """Every reason DRACOON (or a Windows client syncing the room) would refuse ``name``.

    Messages describe the problem without echoing the name, which may carry personal data.
    """
    if name == "":
        return ["is empty"]
    # The DRACOON client trims each room segment (str.strip: every Unicode space) before sending
    # it, so judge the trimmed form as well: "\u2003..\u2003" must not pass here and go out as "..".
    core = name.strip()
    if core in (".", ".."):
        return [f"must not be {core!r}"]
    problems = []
    length = name_length(name)
    if length > MAX_NAME_LENGTH:
        problems.append(f"is too long ({length} characters, at most {MAX_NAME_LENGTH})")
    bad = sorted(set(_BAD.findall(name)))
    if bad:
        shown = " ".join(repr(c) for c in bad[:5])
        problems.append(f"contains forbidden or control characters: {shown}")
    if core.startswith("-"):
        problems.append("must not start with '-'")
    if name.endswith((".", " ")) or not core or core.endswith("."):
        problems.append("must not end with '.' or a space")
    if _is_reserved(core):
        problems.append("is a reserved name (CON, PRN, AUX, NUL, COM1-9, LPT1-9)")
    return problems


def sanitize_node_name(name: str) -> str:
    """A valid node name as close to ``name`` as possible; never empty, deterministic.

    Used for values that come from data (meeting type names, e-mails, S3 key stems), which the
    operator cannot fix; literal path segments are validated instead, so mistakes surface.
    """
    s = clean_value(name)
    if s.startswith("-"):
        s = "_" + s[1:]
    if _is_reserved(s):
        s = "_" + s
    s = _TRAILING.sub("", truncate_name(s, MAX_NAME_LENGTH))
    return s or "_"


def _split(template: str) -> tuple[list[str], list[str]]:
    """Segments with leading/trailing empties dropped ("/a/b/" -> a, b); problems for the rest."""
    segments = template.split("/")
    while segments and segments[0] == "":
        segments.pop(0)
    while segments and segments[-1] == "":
        segments.pop()
    problems = []
    if "" in segments:
        problems.append("contains an empty segment ('//')")
    if len(segments) > MAX_DEPTH:
        problems.append(f"is too deep ({len(segments)} levels, at most {MAX_DEPTH})")
    return segments, problems


def _parse_segment(segment: str) -> tuple[list[tuple[bool, str]], list[str]]:
    """(is_variable, text) parts of one segment, and problems with its placeholders."""
    parts: list[tuple[bool, str]] = []
    problems: list[str] = []
    pos = 0
    for m in _PLACEHOLDER.finditer(segment):
        if m.start() > pos:
            parts.append((False, segment[pos : m.start()]))
        pos = m.end()
        escaped, bare, braced = m.groups()
        if escaped:
            parts.append((False, "$"))
        elif bare or braced:
            var = bare or braced
            if var not in TEMPLATE_VARIABLES:
                shown = var if len(var) <= 40 else var[:37] + "..."
                problems.append(f"unknown variable ${shown} (known: {_KNOWN}; write $$ for a literal '$')")
            parts.append((True, var))
        else:
            problems.append("stray '$' (use $name or ${name}; write $$ for a literal '$')")
    if pos < len(segment):
        parts.append((False, segment[pos:]))
    return parts, problems


def check_path_template(template: str) -> list[str]:
    """Problems a template has whatever the variables' values are (for early, precise errors)."""
    if len(template) > MAX_TEMPLATE_LENGTH:
        return [f"is too long ({len(template)} characters, at most {MAX_TEMPLATE_LENGTH})"]
    segments, problems = _split(template)
    for n, segment in enumerate(segments, 1):
        if segment == "":
            continue  # reported once by _split
        parts, found = _parse_segment(segment)
        found = found or _literal_problems(parts)
        problems.extend(f"segment {n}: {p}" for p in found)
    return problems


def _literal_problems(parts: list[tuple[bool, str]]) -> list[str]:
    if not any(is_var for is_var, _ in parts):
        return validate_node_name("".join(text for _, text in parts))
    problems = []
    literal = "".join(text for is_var, text in parts if not is_var)
    if has_bad_chars(literal):
        problems.append("contains forbidden or control characters outside variables")
    if name_length(literal) > MAX_NAME_LENGTH:
        problems.append(f"its fixed text alone is longer than {MAX_NAME_LENGTH} characters")
    first_is_var, first = parts[0]
    last_is_var, last = parts[-1]
    if not first_is_var and first.startswith("-"):
        problems.append("must not start with '-'")
    if not last_is_var and last.endswith((".", " ")):
        problems.append("must not end with '.' or a space")
    return problems


def clean_value(value: str) -> str:
    """A variable's value made harmless inside one node name: NFC, no '/', forbidden or control
    chars (each becomes '_')."""
    return replace_bad_chars(unicodedata.normalize("NFC", value).strip(), "_")


def expand_path_template(
    template: str, variables: Mapping[str, str | None]
) -> tuple[tuple[str, ...], list[str]]:
    """Expand and normalise a path template into segments relative to the parent room.

    Returns ``(segments, problems)``; segments are meaningful only when problems is empty.
    ``""`` and ``"/"`` give ``()``: the parent room itself. A variable whose value is ``None``
    (e.g. no meeting type name) is a problem, not an empty string, so no room is silently
    named after nothing. A segment containing variables is sanitised after expansion (values
    are data); a purely literal segment must already be valid.
    """
    problems = check_path_template(template)
    if problems:
        return (), problems
    segments, _ = _split(template)
    out = []
    for n, segment in enumerate(segments, 1):
        parts, _ = _parse_segment(segment)
        if not any(is_var for is_var, _ in parts):
            out.append("".join(text for _, text in parts))
            continue
        texts = []
        for is_var, text in parts:
            if not is_var:
                texts.append(text)
            elif variables.get(text) is None:
                problems.append(f"segment {n}: ${text} has no value for this meeting")
            else:
                texts.append(clean_value(variables[text] or ""))
        expanded = sanitize_node_name("".join(texts))
        problems.extend(f"segment {n}: {p}" for p in validate_node_name(expanded))
        out.append(expanded)
    return tuple(out), problems
