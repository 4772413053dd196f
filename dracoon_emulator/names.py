"""DRACOON's node naming rules and its case-insensitive name comparison.

Rules (all node-creating calls, 400 ``-40755``): at most 150 characters; not a reserved device
name (``CON``, ``PRN``, ``AUX``, ``NUL``, ``COM1``-``COM9``, ``LPT1``-``LPT9``, also with an
extension); none of ``\\ < > : " | ? * /``; no leading ``-``; no trailing ``.``. Control
characters and blank names are rejected too **[inferred]**. Names in one parent are unique
ignoring case, so ``Foo`` and ``foo`` clash (no Unicode normalisation, see ``fold``).
"""

from __future__ import annotations

from .errors import bad_name

MAX_NAME_LENGTH = 150
_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"{dev}{i}" for dev in ("COM", "LPT") for i in range(1, 10))}
_FORBIDDEN = set('\\<>:"|?*/')


def check_name(name: str) -> None:
    """Raise the 400 ``-40755`` :class:`ApiError` if DRACOON would reject ``name``."""
    if not name.strip():
        raise bad_name("name is empty")
    if len(name) > MAX_NAME_LENGTH:
        raise bad_name(f"longer than {MAX_NAME_LENGTH} characters")
    bad = sorted(set(name) & _FORBIDDEN)
    if bad:
        raise bad_name(f"forbidden character(s) {''.join(bad)!r}")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise bad_name("control character")
    if name.startswith("-"):
        raise bad_name("leading '-'")
    if name.endswith("."):
        raise bad_name("trailing '.'")
    if name.split(".", 1)[0].strip().upper() in _RESERVED:
        raise bad_name("reserved name")


def fold(name: str) -> str:
    """The key two names clash on: DRACOON compares names ignoring case, character by character
    (its Java backend's ``equalsIgnoreCase``: ``Straße`` and ``STRASSE`` differ), and does not
    normalise Unicode (its own CLI sends NFC for that reason), so ``Café`` in NFC and NFD are two
    names here. Written apart from the service's ``node_name_key`` on purpose: this is the server.
    """
    return "".join(_fold_char(c) for c in name)


def _fold_char(c: str) -> str:
    upper = c.upper()
    if len(upper) != 1:
        upper = c
    lower = upper.lower()
    return lower if len(lower) == 1 else upper


def split_extension(name: str) -> tuple[str, str]:
    """``"a.mp4"`` -> ``("a", ".mp4")``; a leading dot is not an extension (``".env"``)."""
    dot = name.rfind(".")
    if dot <= 0:
        return name, ""
    return name[:dot], name[dot:]


def autorename(name: str, taken: set[str]) -> str:
    """The first free ``"name (n).ext"`` (n = 1, 2, ...) given the folded names in ``taken``."""
    stem, ext = split_extension(name)
    n = 1
    while True:
        candidate = f"{stem} ({n}){ext}"
        if fold(candidate) not in taken:
            return candidate
        n += 1
