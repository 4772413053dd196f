"""The node-name character classes and UTF-16 lengths equal their definitions for every input.

node_names checks characters with precompiled regexes and counts UTF-16 units with one; these
tests hold them to the plain definitions (unicodedata categories, ``ord`` per character) over
every code point, lone surrogates included, and over generated text.
"""

from __future__ import annotations

import unicodedata

from hypothesis import example, given
from hypothesis import strategies as st

from recording_storage.node_names import (
    FORBIDDEN_CHARS,
    has_bad_chars,
    name_length,
    replace_bad_chars,
    replace_control_chars,
    truncate_name,
    validate_node_name,
)

# The definition, as one character at a time.
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def is_control(c: str) -> bool:
    return c in _BIDI or unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp")


def is_bad(c: str) -> bool:
    return c in FORBIDDEN_CHARS or is_control(c)


def utf16_units(text: str) -> int:
    return sum(2 if ord(c) > 0xFFFF else 1 for c in text)


def reference_truncate(text: str, limit: int) -> str:
    """The definition: the longest prefix (whole code points) within ``limit`` UTF-16 units."""
    fitting = (text[:end] for end in range(len(text), 0, -1) if utf16_units(text[:end]) <= limit)
    return next(fitting, "")


EVERY_CODE_POINT = "".join(map(chr, range(0x110000)))
CONTROL = "".join(c for c in EVERY_CODE_POINT if is_control(c))
BAD = "".join(c for c in EVERY_CODE_POINT if is_bad(c))

# Any code point, lone surrogates too (hypothesis leaves them out by default), weighted
# towards the ones the classes are about.
chars = st.one_of(
    st.characters(),
    st.sampled_from(BAD),
    st.integers(0xD800, 0xDFFF).map(chr),
    st.integers(0x10000, 0x10FFFF).map(chr),
)
texts = st.text(chars, max_size=60)


def test_classes_match_the_categories_at_every_code_point() -> None:
    assert replace_control_chars(EVERY_CODE_POINT, "") == "".join(
        c for c in EVERY_CODE_POINT if not is_control(c)
    )
    assert replace_bad_chars(EVERY_CODE_POINT, "") == "".join(c for c in EVERY_CODE_POINT if not is_bad(c))
    assert all(has_bad_chars(c) for c in BAD)
    assert not has_bad_chars(replace_bad_chars(EVERY_CODE_POINT, ""))
    # The classes are the sizes the definitions give: 65 Cc, 2048 Cs, Zl, Zp, 9 bidi; 9 forbidden.
    assert (len(CONTROL), len(BAD)) == (65 + 2048 + 2 + 9, 65 + 2048 + 2 + 9 + 9)


@given(texts, st.sampled_from(["", "_", " ", "+"]))
def test_replacing_is_per_character(text: str, replacement: str) -> None:
    assert replace_bad_chars(text, replacement) == "".join(replacement if is_bad(c) else c for c in text)
    assert replace_control_chars(text, replacement) == "".join(
        replacement if is_control(c) else c for c in text
    )
    assert has_bad_chars(text) == any(is_bad(c) for c in text)


@given(texts, st.integers(-3, 70))
@example("ab", -1)
@example("ab", 0)
@example("ab", 2)
@example("a\U0001f600b", 1)
@example("a\U0001f600b", 2)
@example("a\U0001f600b", 3)
@example("\ud83d\ude00", 1)  # a surrogate pair as two code points: one unit each
def test_lengths_count_utf16_units_and_cuts_keep_code_points(text: str, limit: int) -> None:
    assert name_length(text) == utf16_units(text)
    assert truncate_name(text, limit) == reference_truncate(text, limit)


@given(texts)
def test_validation_lists_each_bad_character_once_in_order(text: str) -> None:
    bad = sorted({c for c in text if is_bad(c)})
    listed = [p for p in validate_node_name(text) if p.startswith("contains forbidden")]
    if bad and text != "" and text.strip() not in (".", ".."):
        assert listed == ["contains forbidden or control characters: " + " ".join(map(repr, bad[:5]))]
    else:
        assert listed == []
