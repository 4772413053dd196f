"""Logging: JSON/console output, levels, stdlib routing, codes, and redaction of secrets."""

from __future__ import annotations

import ast
import io
import json
import logging
import re
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

import recording_storage
from recording_storage import logs
from recording_storage.config import LogConfig
from recording_storage.logs import Code, configure_logging, redact, redact_text, register_secrets

SENTINEL = "S3ntinel-Pa55word-7f3a"


@pytest.fixture(autouse=True)
def _clean_logging() -> Iterator[None]:
    logs.clear_secrets()
    yield
    logs.reset_logging()
    logs.clear_secrets()


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().split("\n") if line]


def _setup(level: str = "info", fmt: str = "json", **kw: Any) -> io.StringIO:
    stream = io.StringIO()
    configure_logging(LogConfig(level=level, format=fmt), stream=stream, **kw)
    return stream


# --- output format --------------------------------------------------------------------------

def test_json_lines_carry_timestamp_level_logger_and_int_code() -> None:
    """Each event is one JSON object with an ISO UTC timestamp and the code as a plain number."""
    out = _setup()
    structlog.get_logger("recording_storage.worker").info("job_done", code=Code.TRANSFERER_STATUS, size=3)
    structlog.get_logger("x").warning("second")
    lines = _json_lines(out)
    assert len(lines) == 2
    first = lines[0]
    assert first["event"] == "job_done"
    assert first["level"] == "info"
    assert first["logger"] == "recording_storage.worker"
    assert first["code"] == 15006 and type(first["code"]) is int
    assert first["size"] == 3
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", first["timestamp"])


def test_console_renders_code_as_number_without_colours_off_tty() -> None:
    """The console renderer shows code=15005 and no ANSI escapes when the stream is not a TTY."""
    out = _setup(fmt="console")
    structlog.get_logger("q").error("receive_failed", code=Code.SQS_ERROR)
    text = out.getvalue()
    assert "receive_failed" in text and "code=15005" in text
    assert "\x1b[" not in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


def test_auto_format_is_json_off_tty_and_console_on_tty() -> None:
    """format=auto picks JSON for pipes/files and the console renderer for terminals."""
    pipe = _setup(fmt="auto")
    structlog.get_logger().info("piped")
    assert _json_lines(pipe)[0]["event"] == "piped"

    tty = _Tty()
    configure_logging(LogConfig(format="auto"), stream=tty)
    structlog.get_logger().info("interactive")
    assert "interactive" in tty.getvalue()
    assert "\x1b[" in tty.getvalue()  # colours for humans at a terminal
    with pytest.raises(json.JSONDecodeError):
        json.loads(tty.getvalue())


def test_level_filtering_applies_to_structlog_and_stdlib() -> None:
    """Events below the configured level are dropped from both logging paths."""
    out = _setup(level="warning")
    structlog.get_logger("a").info("quiet")
    logging.getLogger("aiohttp.client").info("quiet_stdlib")
    structlog.get_logger("a").warning("loud")
    logging.getLogger("aiohttp.client").error("loud_stdlib")
    assert [line["event"] for line in _json_lines(out)] == ["loud", "loud_stdlib"]


def test_debug_level_lets_debug_through_but_botocore_stays_at_warning() -> None:
    """debug shows our debug lines; botocore's per-request chatter stays hidden."""
    out = _setup(level="debug")
    structlog.get_logger("a").debug("detail")
    logging.getLogger("botocore.endpoint").info("Sending http request")
    logging.getLogger("urllib3.connectionpool").debug("Starting new HTTPS connection")
    logging.getLogger("botocore.retries").warning("retry quota exceeded")
    assert [line["event"] for line in _json_lines(out)] == ["detail", "retry quota exceeded"]


def test_stdlib_records_get_the_same_fields_and_context() -> None:
    """A library's stdlib record is rendered like ours, with bound contextvars and %-args."""
    out = _setup()
    structlog.contextvars.bind_contextvars(job_id="j-1")
    logging.getLogger("aiohttp.access").warning("%s answered %d", "host", 503)
    (line,) = _json_lines(out)
    assert line["event"] == "host answered 503"
    assert line["logger"] == "aiohttp.access"
    assert line["level"] == "warning"
    assert line["job_id"] == "j-1"
    assert line["timestamp"].endswith("Z")


def test_configure_twice_installs_one_handler() -> None:
    """Reconfiguring replaces the handler: each event appears once, on the newest stream."""
    first = _setup()
    second = _setup()
    structlog.get_logger().info("once")
    logging.getLogger("asyncio").error("also once")
    assert first.getvalue() == ""
    assert [line["event"] for line in _json_lines(second)] == ["once", "also once"]
    ours = [h for h in logging.getLogger().handlers if isinstance(h, logs._Handler)]
    assert len(ours) == 1


def test_reset_logging_restores_library_levels() -> None:
    """reset_logging removes our handler and gives botocore its previous level back."""
    before = logging.getLogger("botocore").level
    _setup(level="error")
    assert logging.getLogger("botocore").level == logging.ERROR
    logs.reset_logging()
    assert logging.getLogger("botocore").level == before
    assert not any(isinstance(h, logs._Handler) for h in logging.getLogger().handlers)


def test_include_pii_follows_config() -> None:
    """Modules ask logs.include_pii() before logging participant names."""
    assert logs.include_pii() is False
    configure_logging(LogConfig(include_pii=True), stream=io.StringIO())
    assert logs.include_pii() is True


def test_codes_cover_the_original_table() -> None:
    """Every code 15000-15018 exists once, with the meanings other modules rely on."""
    assert sorted(int(c) for c in Code) == list(range(15000, 15019))
    named = {c.name: int(c) for c in Code}
    assert named["APP_START"] == 15000 and named["CONFIG_ERROR"] == 15018
    assert named["SHARER_ERROR"] == 15016 and named["HEALTH_CHECK_ERROR"] == 15014
    assert named["REST_CLIENT_ERROR"] == 15010 and named["INSTANCE_JOB_ERROR"] == 15013
    assert named["TRANSFERER_STATUS"] == 15006 and named["TRANSFERER_ERROR"] == 15007


# --- redaction through the whole pipeline ----------------------------------------------------

def test_registered_secret_never_reaches_the_output() -> None:
    """A registered value is masked in events, values, nested data, stdlib logs and tracebacks."""
    out = _setup(secrets=[SENTINEL])
    log = structlog.get_logger("t")
    event = f"login as bob/{SENTINEL}"
    log.info(event, detail={"nested": [f"x{SENTINEL}y", (SENTINEL,)]})
    logging.getLogger("aiohttp.client").warning("POST body password=%s", SENTINEL)
    try:
        raise RuntimeError(f"server said: bad credentials {SENTINEL}")
    except RuntimeError:
        log.exception("login_failed")
    try:
        raise ValueError(SENTINEL)
    except ValueError:
        logging.getLogger("asyncio").exception("Task exception was never retrieved")
    text = out.getvalue()
    assert SENTINEL not in text
    assert text.count("***") >= 5
    lines = _json_lines(out)
    assert "Traceback" in lines[2]["exception"] and "RuntimeError" in lines[2]["exception"]
    assert "ValueError" in lines[3]["exception"]


def test_registered_secret_masked_in_console_tracebacks() -> None:
    """The console renderer gets the traceback already redacted."""
    out = _setup(fmt="console", secrets=[SENTINEL])
    try:
        raise KeyError(SENTINEL)
    except KeyError:
        structlog.get_logger().exception("boom")
    assert "KeyError" in out.getvalue()
    assert SENTINEL not in out.getvalue()


def test_encoded_forms_of_a_secret_are_masked() -> None:
    """Form bodies and JSON carry secrets URL- or JSON-escaped; those forms are masked too."""
    secret = 'p@ss w"rd&1ü'
    register_secrets(secret)
    for text in (urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret), json.dumps(secret),
                 json.dumps(secret, ensure_ascii=False)):
        assert "ss" not in redact_text(f"body: {text}"), text


def test_short_and_empty_secrets_are_ignored() -> None:
    """Registering "abc" or "" must not mangle ordinary text."""
    register_secrets("abc", "", None)
    assert redact_text("abc abcdef") == "abc abcdef"


def test_secret_str_values_are_registered_and_masked() -> None:
    """SecretStr can be registered directly, and a SecretStr value never renders."""
    from pydantic import SecretStr

    register_secrets(SecretStr(SENTINEL))
    assert redact_text(f"x {SENTINEL}") == "x ***"
    assert redact({"value": SecretStr("zzz")}) == {"value": "***"}


@pytest.mark.parametrize(
    "key",
    ["password", "encryption_password", "client_secret", "token", "access_token", "Authorization",
     "X-Sds-Auth-Token", "private_key", "privateKey", "aws_secret_access_key", "credentials", "cookie",
     "passwd", "refresh_token"],
)
def test_secret_looking_keys_are_masked(key: str) -> None:
    """Values under secret-looking keys are replaced, at the top level and nested."""
    out = _setup()
    structlog.get_logger().info("ev", **{key: "hunter2-value"}, headers={key: "hunter2-value"})
    (line,) = _json_lines(out)
    assert line[key] == "***"
    assert line["headers"][key] == "***"
    assert "hunter2" not in out.getvalue()


def test_none_under_secret_key_is_kept_and_ordinary_keys_untouched() -> None:
    """`password=None` says "not set" without revealing anything; s3 `key` is not a secret."""
    out = _setup()
    structlog.get_logger().info("ev", password=None, key="recordings/a.mp4", count=3)
    (line,) = _json_lines(out)
    assert line["password"] is None
    assert line["key"] == "recordings/a.mp4" and line["count"] == 3


PEM = (
    "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIJrTBXBgkqhkiG9w0BBQ0wSjApBgkqhkiG9w0BBQwwHAQI\n"
    "c2VjcmV0LWtleS1ieXRlcw==\n-----END ENCRYPTED PRIVATE KEY-----"
)


@pytest.mark.parametrize(
    ("text", "leaked", "kept"),
    [
        (f"container {PEM} done", "MIIJrTBX", ["container", "done", "BEGIN ENCRYPTED PRIVATE KEY"]),
        ("-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA truncated", "MIIEow", ["BEGIN RSA PRIVATE KEY"]),
        ("PUT https://s3.eu/b/k?partNumber=3&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAXYZ%2F2024"
         "&X-Amz-Security-Token=FwoGZXIvYXdzE&X-Amz-Signature=9f8e7d6c5b4a failed",
         "AKIAXYZ|FwoGZXIvYXdzE|9f8e7d6c5b4a",
         ["partNumber=3", "X-Amz-Algorithm=AWS4-HMAC-SHA256", "failed"]),
        ("GET https://b.s3.amazonaws.com/k?AWSAccessKeyId=AKIAOLD&Expires=1700000000&Signature=abc%2Bdef",
         "AKIAOLD|abc%2Bdef", ["Expires=1700000000"]),
        ("POST https://dracoon.example.com/api/v4/uploads/f3b1c0ffee9d8a7b6c5d4e3f2a1b0c9d?x=1 -> 500",
         "f3b1c0ffee9d8a7b6c5d4e3f2a1b0c9d", ["/api/v4/uploads/***", "-> 500"]),
        ("header Authorization: Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln",
         "eyJhbGci", ["header"]),
        ("request failed: Bearer abcdef123456 rejected", "abcdef123456", ["rejected"]),
        ('dump {"login": "bob", "password": "pw-123456", "token":"t0k3nvalue"}', "pw-123456|t0k3nvalue",
         ['"login": "bob"', '"password": "***"']),
        ("grant_type=password&username=bob&password=pw%21123&client_secret=cs999", "pw%21123|cs999",
         ["grant_type=password", "username=bob"]),
        ("GET /x HTTP/1.1\r\nX-Sds-Auth-Token: abcdefgh12345\r\nHost: d", "abcdefgh12345", ["Host: d"]),
    ],
)
def test_patterns_in_text_are_masked(text: str, leaked: str, kept: list[str]) -> None:
    """Private keys, presigned URL signatures, upload tokens, bearer tokens and secret pairs go."""
    out = redact_text(text)
    assert not re.search(leaked, out), out
    for fragment in kept:
        assert fragment in out, (fragment, out)


def test_harmless_text_is_returned_unchanged() -> None:
    """Messages that merely mention secrets, and authenticated upload ids, are not mangled."""
    for text in (
        "instances[a].dracoon.password: must not be empty",
        "GET /api/v4/nodes/files/uploads/12345678 -> 200",
        "basic settings loaded",
        "key=recordings/2024/a.mp4 size=10",
    ):
        assert redact_text(text) == text


def test_redact_helper_for_exception_messages() -> None:
    """redact() turns exceptions into safe strings and walks containers without touching numbers."""
    register_secrets(SENTINEL)
    assert redact(RuntimeError(f"oops {SENTINEL}")) == "oops ***"
    assert redact({"a": [1, 2.5, True, None, f"{SENTINEL}"]}) == {"a": [1, 2.5, True, None, "***"]}
    assert redact(("x", Code.SHARER_ERROR)) == ("x", 15016)


def test_redact_processor_unit() -> None:
    """The processor works on a bare event dict (as captured by structlog.testing)."""
    register_secrets(SENTINEL)
    with structlog.testing.capture_logs() as captured:
        structlog.get_logger().info(f"e {SENTINEL}", password="p", code=Code.APP_START)
    (event,) = captured
    redacted = logs.redact_processor(None, "info", event)
    assert redacted["event"] == "e ***" and redacted["password"] == "***" and redacted["code"] == 15000


def test_redaction_is_fast_on_large_harmless_and_hostile_input() -> None:
    """Long unbroken strings (base64 bodies) and many near-matches stay linear-time."""
    blob = "QUJD" * 250_000  # 1 MB without any hint
    hostile = ("a-token-" * 20_000) + "x" * 200_000  # many secret-name hits, no '='
    started = time.perf_counter()
    assert redact_text(blob) is blob
    assert redact_text(hostile) == hostile
    assert time.perf_counter() - started < 1.0  # ~0.03 s here; the first draft took ~1 s


_SAFE = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!@#%", min_size=4,
                max_size=40)


@settings(max_examples=60, deadline=None)
@given(secret=_SAFE, before=st.text(max_size=30), after=st.text(max_size=30))
def test_property_registered_secret_never_rendered(secret: str, before: str, after: str) -> None:
    """Whatever surrounds a registered secret, the JSON line never contains it."""
    logs.clear_secrets()
    stream = io.StringIO()
    configure_logging(LogConfig(format="json"), secrets=[secret], stream=stream)
    structlog.get_logger().info(f"{before}{secret}{after}", field=[before + secret])
    (line,) = _json_lines(stream)
    assert stream.getvalue().isascii()
    # Decoded values: the raw line may contain JSON escapes such as \u0000 that look alike.
    assert secret not in line["event"]
    assert secret not in line["field"][0]


@pytest.mark.parametrize(
    "name",
    ["password", "passwd", "passphrase", "secret", "token", "authorization", "authorisation", "private_key",
     "privatekey", "access_key", "accesskey", "credential", "cookie", "api_key", "apikey", "signature",
     "AWSAccessKeyId"],
)
def test_every_secret_name_passes_the_fast_precheck(name: str) -> None:
    """The substring pre-check must never skip a string the full patterns would redact."""
    assert redact_text(f"{name}=hunter2value") == f"{name}=***"
    assert redact_text(f'{{"{name.upper()}": "hunter2value"}}') == f'{{"{name.upper()}": "***"}}'


# One name per field across all events (docs/operations.md, "Logs"): the names on the left were
# used by some events while others said the same thing with the name on the right.
_RETIRED_FIELD_NAMES = {"key": "s3_key", "size": "bytes", "object_key": "s3_key", "node_id": "file_id"}


def _log_calls(root: Path) -> list[tuple[str, int, str, list[str]]]:
    """(file, line, event, keyword names) of every ``log.<level>(...)`` call under ``root``."""
    calls = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in {"debug", "info", "warning", "error", "exception", "critical"}
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "log"
            ):
                event = node.args[0].value if node.args and isinstance(node.args[0], ast.Constant) else "?"
                names = [k.arg for k in node.keywords if k.arg]
                calls.append((str(path.relative_to(root)), node.lineno, str(event), names))
    return calls


def test_every_event_names_a_field_the_same_way() -> None:
    package = Path(recording_storage.__file__).parent
    calls = [c for c in _log_calls(package) if not c[0].startswith("emulator")]
    assert len(calls) > 100  # the scan sees the service's events
    retired = [
        f"{file}:{line} {event}: {name}= (say {_RETIRED_FIELD_NAMES[name]}=)"
        for file, line, event, names in calls
        for name in names
        if name in _RETIRED_FIELD_NAMES
    ]
    assert not retired, "\n".join(retired)
