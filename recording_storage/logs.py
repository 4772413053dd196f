"""Logging set-up: structlog everywhere, the original's description codes, and redaction.

Every line, whether it comes from our structlog loggers or from a library's stdlib logger
(aiohttp, botocore, asyncio), goes through one stdlib handler whose ``ProcessorFormatter`` runs
the same chain: context variables, level, logger name, ISO UTC timestamp, exception text, then
the redaction processor, then the renderer. Redaction sits right before the renderer so that
nothing added earlier (tracebacks included) escapes it. The Go original logged passwords,
auth tokens and whole request dumps (its bugs 28-30); this module is where that stops.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sys
import threading
import urllib.parse
from collections.abc import Iterable, Mapping
from enum import IntEnum
from typing import IO, Any, overload

import structlog
from pydantic import SecretStr
from structlog.types import EventDict, Processor, WrappedLogger

from .config import LogConfig

__all__ = [
    "MASK",
    "Code",
    "clear_secrets",
    "configure_logging",
    "event_keys_processor",
    "include_pii",
    "is_secret_key",
    "key_digest",
    "redact",
    "redact_processor",
    "redact_text",
    "register_secrets",
    "reset_logging",
]

MASK = "***"
_MIN_SECRET_LEN = 4
# Libraries that log every request at INFO/DEBUG; their warnings still come through.
_NOISY_LOGGERS = ("botocore", "aiobotocore", "boto3", "s3transfer", "urllib3")


class Code(IntEnum):
    """The original's description/error codes (README table, range 15000-15999).

    Dashboards and alerts built for the Go service key on these numbers, so events that have a
    counterpart carry ``code=Code.X``; the renderer emits the plain integer.
    """

    APP_START = 15000
    CLI_START = 15001  # defined by the original, never emitted
    WORKER_CONFIG = 15002
    AWS_SESSION = 15003
    AWS_CONFIG = 15004  # defined by the original, never emitted
    SQS_ERROR = 15005
    TRANSFERER_STATUS = 15006
    TRANSFERER_ERROR = 15007
    TRANSFER_SUMMARY = 15008
    INIT_ERROR = 15009
    REST_CLIENT_ERROR = 15010
    STORAGE_ERROR = 15011  # defined by the original, never emitted
    STORAGE_STATUS = 15012
    INSTANCE_JOB_ERROR = 15013
    HEALTH_CHECK_ERROR = 15014
    WORKER_ERROR = 15015  # defined by the original, never emitted
    SHARER_ERROR = 15016
    SHARER_STATUS = 15017
    CONFIG_ERROR = 15018


# --- redaction ---------------------------------------------------------------------------------

# Key names whose values are secret wherever they appear (dict keys, JSON, form fields, headers).
_SECRET_NAME = (
    r"pass(?:word|wd|phrase)|secret|token|authori[sz]ation|private_?key|privatekey|access_?key"
    r"|credential|cookie|api_?key|signature|awsaccesskeyid"
)
_SECRET_KEY_RE = re.compile(_SECRET_NAME, re.IGNORECASE)
# A field name is tried only where a run of name characters starts, and the secret word is
# found by lookahead: matching stays linear on long runs such as "a-token-a-token-...".
_NAME = rf"(?<![\w.-])(?=[\w.-]{{0,48}}?(?:{_SECRET_NAME}))[\w.-]{{1,96}}"

# One pass over a string finds every kind of secret; _replace picks the replacement.
_TEXT_RE = re.compile(
    "|".join(
        [
            # PEM private keys (PKCS#1, PKCS#8, encrypted), also when truncated before END.
            r"(?P<pem>-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----)"
            r"(?:.*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----|.*\Z)",
            # Authorization values in free text; case-sensitive, or "basic settings" would go.
            r"(?-i:(?P<auth>\b(?:Bearer|Basic)\s+)[A-Za-z0-9\-._~+/]{6,}=*)",
            # Header lines of a request dump: "X-Sds-Auth-Token: abc".
            r"(?m:^(?P<hdr>[ \t]*(?:x-sds-auth-token|authorization|proxy-authorization|cookie|set-cookie"
            r"|x-amz-security-token)[ \t]*:[ \t]*)[^\r\n]+)",
            # JSON / Python-repr pairs: "password": "x", 'token': 'y', "privateKey": "...".
            rf"(?P<q>[\"'](?:{_NAME})[\"']\s*:\s*)(?P<qv>\"(?:[^\"\\]|\\.)*\"|'[^']*'|[^\s,}}\]]+)",
            # Query strings, form bodies, reprs: X-Amz-Signature=..., password=..., token='...'.
            rf"(?P<kv>{_NAME}=)(?:(?:Bearer|Basic|Token)\s+)?(?P<kvv>\"[^\"]*\"|'[^']*'|[^\s&,;'\")\]}}]+)",
            # DRACOON upload-channel URLs are bearer credentials: /api/v4/uploads/<token>.
            r"(?P<upl>(?<!files/)\buploads/)[A-Za-z0-9_\-.~%]{8,}",
        ]
    ),
    re.DOTALL | re.IGNORECASE,
)
# Cheap pre-check on the lower-cased text: every alternative of _TEXT_RE (and of _SECRET_NAME)
# contains one of these, so a string with none of them is returned untouched.
_HINT_WORDS = (
    "private key", "bearer", "basic", "uploads/", "passw", "passphrase", "secret", "token", "authori",
    "privatekey", "private_key", "accesskey", "access_key", "credential", "cookie", "apikey", "api_key",
    "signature",
)

_secrets_lock = threading.Lock()
_secret_values: set[str] = set()
_secret_re: re.Pattern[str] | None = None
_include_pii = False


def _replace(m: re.Match[str]) -> str:
    kind = m.lastgroup
    if kind in ("qv", "kvv"):  # keep the quoting, so JSON-ish text stays readable
        prefix, value = m.group("q" if kind == "qv" else "kv"), m.group(kind)
        quote = value[0] if value[:1] in ("'", '"') else ""
        return f"{prefix}{quote}{MASK}{quote}"
    return f"{m.group(kind)}{MASK}" if kind else MASK


def register_secrets(*values: str | SecretStr | None) -> None:
    """Mask these exact values wherever they appear in a log line.

    Key-name rules cannot catch a password that ends up inside an error message or a URL, so
    every secret the service loads is registered here as well. Values shorter than four
    characters are ignored: masking "abc" everywhere would mangle ordinary text.
    """
    global _secret_re
    fresh: set[str] = set()
    for value in values:
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        if not raw or len(raw) < _MIN_SECRET_LEN:
            continue
        # The same secret also leaks URL-encoded (form bodies, query strings) or JSON-escaped.
        fresh.update((raw, urllib.parse.quote(raw, safe=""), urllib.parse.quote_plus(raw),
                      json.dumps(raw)[1:-1], json.dumps(raw, ensure_ascii=False)[1:-1]))
    with _secrets_lock:
        if fresh <= _secret_values:
            return
        _secret_values.update(fresh)
        ordered = sorted(_secret_values, key=len, reverse=True)  # longest first: no partial masks
        _secret_re = re.compile("|".join(re.escape(v) for v in ordered))


def clear_secrets() -> None:
    """Forget every registered secret (tests; a process normally keeps them for life)."""
    global _secret_re
    with _secrets_lock:
        _secret_values.clear()
        _secret_re = None


def redact_text(text: str) -> str:
    """Mask registered secrets, private keys, tokens and URL signatures in one string."""
    pattern = _secret_re
    if pattern is not None:
        text = pattern.sub(MASK, text)
    lowered = text.lower()
    if not any(word in lowered for word in _HINT_WORDS):
        return text
    return _TEXT_RE.sub(_replace, text)


def is_secret_key(key: object) -> bool:
    """Whether a field named ``key`` holds a secret (password, token, private key, ...)."""
    return isinstance(key, str) and _SECRET_KEY_RE.search(key) is not None


@overload
def redact(value: str) -> str: ...
@overload
def redact(value: BaseException) -> str: ...
@overload
def redact(value: Mapping[Any, Any]) -> dict[Any, Any]: ...
@overload
def redact(value: object) -> Any: ...
def redact(value: object) -> Any:
    """A copy of ``value`` safe to log or to put into an exception message.

    Strings are scanned; mappings, lists, tuples and sets are walked, with values under a
    secret-looking key replaced wholesale; exceptions and other objects become their redacted
    ``str()``, because a renderer would otherwise call ``str``/``repr`` on them unredacted.
    Numbers, booleans and None pass through.
    """
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, IntEnum):  # Code.X renders as its number
        return int(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, Mapping):
        return {k: (_mask_value(v) if is_secret_key(k) else redact(v)) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact(v) for v in value] if not isinstance(value, tuple) else tuple(redact(v) for v in value)
    if isinstance(value, SecretStr):
        return MASK
    if isinstance(value, bytes | bytearray):
        return redact_text(repr(bytes(value)))
    return redact_text(str(value))


def _mask_value(value: object) -> object:
    # None and booleans say "is it set?", which is useful and reveals nothing.
    return value if value is None or isinstance(value, bool) else MASK


def key_digest(bucket: str, key: str) -> str:
    """16 hex of sha256("bucket/key"): the ``src=`` part of the upload marker, safe to log."""
    return hashlib.sha256(f"{bucket}/{key}".encode()).hexdigest()[:16]


# Bound by an S3 event notification's job (events.EventJob.describe): its keys are paths a PBX
# chose and may name callers, so they are logged as digests unless log.include_pii is on.
_HASHED_KEY_SOURCE = "s3_event"


def event_keys_processor(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: inside an S3 event's job, ``s3_key``/``s3_keys`` become digests and
    the raw keys are cut out of every other text value (error messages name the object)."""
    bucket = event_dict.get("bucket")
    if _include_pii or event_dict.get("source") != _HASHED_KEY_SOURCE or not isinstance(bucket, str):
        return event_dict
    raw = event_dict.get("s3_keys")
    keys = [k for k in (raw if isinstance(raw, list | tuple) else []) if isinstance(k, str)]
    if isinstance(event_dict.get("s3_key"), str):
        keys.append(event_dict["s3_key"])
    if not keys:
        return event_dict
    digests = {key: key_digest(bucket, key) for key in keys}
    out: EventDict = {}
    for name, value in event_dict.items():
        if name == "s3_key" and isinstance(value, str):
            out[name] = digests[value]
        elif name == "s3_keys" and isinstance(value, list | tuple):
            out[name] = [digests.get(v, v) if isinstance(v, str) else v for v in value]
        elif isinstance(value, str) and name != "event":
            for key in sorted(digests, key=len, reverse=True):  # longest first: no partial cut
                value = value.replace(key, f"<key {digests[key]}>")
            out[name] = value
        else:
            out[name] = value
    return out


def redact_processor(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: redact every key and value of the event (run right before rendering)."""
    return {
        key: _mask_value(value) if key != "event" and is_secret_key(key) else redact(value)
        for key, value in event_dict.items()
    }


# --- configuration -----------------------------------------------------------------------------

class _Handler(logging.StreamHandler[IO[str]]):
    """Marks the handler we installed, so a second configure_logging replaces it, not adds one."""


_saved_levels: dict[str, int] = {}


def include_pii() -> bool:
    """Whether events may carry participant names and e-mail addresses (``log.include_pii``)."""
    return _include_pii


def _wants_json(fmt: str, stream: IO[str]) -> bool:
    if fmt != "auto":
        return fmt == "json"
    isatty = getattr(stream, "isatty", None)
    return not (callable(isatty) and isatty())


def configure_logging(
    cfg: LogConfig, *, secrets: Iterable[str | SecretStr | None] = (), stream: IO[str] | None = None
) -> None:
    """Route structlog and stdlib logging through one redacting renderer on ``stream`` (stderr).

    Safe to call again: the previous handler is replaced and structlog reconfigured, so tests
    and the CLI (which reconfigures once the config file is read) see exactly one output.
    """
    global _include_pii
    register_secrets(*secrets)
    _include_pii = cfg.include_pii
    out = sys.stderr if stream is None else stream
    level = logging.getLevelNamesMapping()[cfg.level.upper()]
    as_json = _wants_json(cfg.format, out)

    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.PositionalArgumentsFormatter(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: Processor
    if as_json:
        # ASCII-only: U+2028/U+0085 in a value would split the line for some log shippers.
        renderer = structlog.processors.JSONRenderer(default=str)
    else:
        isatty = getattr(out, "isatty", None)
        renderer = structlog.dev.ConsoleRenderer(
            colors=bool(callable(isatty) and isatty()), exception_formatter=structlog.dev.plain_traceback
        )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            event_keys_processor,
            redact_processor,
            renderer,
        ],
    )
    structlog.configure(
        processors=[
            shared[0],
            structlog.stdlib.filter_by_level,
            *shared[1:],
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Modules create their loggers at import time, possibly before this runs; caching would
        # pin them to whatever configuration was active at their first call.
        cache_logger_on_first_use=False,
    )

    root = logging.getLogger()
    _remove_handlers(root)
    handler = _Handler(out)
    handler.setFormatter(formatter)
    root.addHandler(handler)
    _set_level(root, level)
    for name in _NOISY_LOGGERS:
        _set_level(logging.getLogger(name), max(logging.WARNING, level))


def _set_level(logger: logging.Logger, level: int) -> None:
    _saved_levels.setdefault(logger.name, logger.level)
    logger.setLevel(level)


def _remove_handlers(root: logging.Logger) -> None:
    for h in list(root.handlers):
        if isinstance(h, _Handler):
            root.removeHandler(h)


def reset_logging() -> None:
    """Undo configure_logging: remove our handler, restore levels, reset structlog (tests)."""
    global _include_pii
    _remove_handlers(logging.getLogger())
    for name, lvl in _saved_levels.items():
        logging.getLogger(None if name == "root" else name).setLevel(lvl)
    _saved_levels.clear()
    _include_pii = False
    structlog.reset_defaults()
