"""Instance providers: YAML file, HTTP configurator over a real socket, and the TTL cache."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import SecretStr

from recording_storage import logs
from recording_storage.config import AppConfig, DracoonConfig, InstancesConfig
from recording_storage.errors import ConfigError, PermanentError, TransientError
from recording_storage.instances import (
    CachingInstanceProvider,
    DracoonAccount,
    FileInstanceProvider,
    HttpInstanceProvider,
    InstanceConfigInvalid,
    TargetRule,
    TargetSpec,
    UnknownInstance,
    normalise_base_url,
    open_instance_provider,
)
from tests.fixtures.clock import FakeClock
from tests.fixtures.servers import ScriptedConfigurator, serve_app

DEFAULTS = DracoonConfig(client_id="global-client", client_secret=SecretStr("global-client-secret"))
PASSWORD = "Pw-for-the-bot-1"
ENC_PASSWORD = "Enc-pass-phrase-2"
ENV = {"DRACOON_PASSWORD": PASSWORD, "DRACOON_ENCRYPTION_PASSWORD": ENC_PASSWORD}

GOOD: dict[str, Any] = {
    "storage": "dracoon",
    "dracoon": {
        "base_url": "https://Dracoon.Example.com/api/v4/",
        "login": "recordings-bot",
        "password": "${DRACOON_PASSWORD}",
        "encryption_password": "${DRACOON_ENCRYPTION_PASSWORD}",
        "parent_room_id": 12345,
    },
    "targets": [
        {"meetingTypeId": 14, "copyTo": [{"path": "$instance/Sales", "expiration": "4 years"}]},
        {"meetingTypeId": "*any*", "copyTo": [{"path": "All recordings/$year"}]},
    ],
}


@pytest.fixture(autouse=True)
def _forget_secrets() -> Iterator[None]:
    logs.clear_secrets()
    yield
    logs.clear_secrets()


def _write(path: Path, instances: Any, **top: Any) -> Path:
    path.write_text(yaml.safe_dump({"instances": instances, **top}), encoding="utf-8")
    return path


def _entry(**dracoon: Any) -> dict[str, Any]:
    entry = copy.deepcopy(GOOD)
    for key, value in dracoon.items():
        if value is _DROP:
            entry["dracoon"].pop(key)
        else:
            entry["dracoon"][key] = value
    return entry


_DROP = object()


# --- file provider ----------------------------------------------------------------------------

async def test_file_provider_loads_a_good_file(tmp_path: Path) -> None:
    """A valid entry becomes a DracoonAccount with normalised URL, env secrets, targets and defaults."""
    path = _write(tmp_path / "instances.yml", {"Meet.Example.com": GOOD})
    provider = FileInstanceProvider(path, defaults=DEFAULTS, env=ENV)
    account = await provider.get("meet.example.COM.")
    assert account == DracoonAccount(
        domain="meet.example.com",
        base_url="https://dracoon.example.com",
        login="recordings-bot",
        password=SecretStr(PASSWORD),
        encryption_password=SecretStr(ENC_PASSWORD),
        parent_room_id=12345,
        client_id="global-client",
        client_secret=SecretStr("global-client-secret"),
        targets=(
            TargetRule("14", (TargetSpec("$instance/Sales", "4 years"),)),
            TargetRule("*any*", (TargetSpec("All recordings/$year"),)),
        ),
    )
    assert account.password.get_secret_value() == PASSWORD
    assert await provider.list_domains() == ["meet.example.com"]
    await provider.aclose()


async def test_account_repr_and_logs_never_show_passwords(tmp_path: Path) -> None:
    """The repr masks secrets, and loading registers them with the log redactor."""
    path = _write(tmp_path / "i.yml", {"a.example": GOOD})
    account = await FileInstanceProvider(path, defaults=DEFAULTS, env=ENV).get("a.example")
    assert PASSWORD not in repr(account) and ENC_PASSWORD not in repr(account)
    assert logs.redact_text(f"login failed for {PASSWORD}") == "login failed for ***"
    assert logs.redact_text(f"x {ENC_PASSWORD}") == "x ***"


async def test_instance_overrides_client_and_tls(tmp_path: Path) -> None:
    """client_id, client_secret and verify_tls in the entry win over the global defaults."""
    entry = _entry(client_id="own-client", client_secret="own-secret", verify_tls=False)
    path = _write(tmp_path / "i.yml", {"a.example": entry})
    account = await FileInstanceProvider(path, defaults=DEFAULTS, env=ENV).get("a.example")
    assert account.client_id == "own-client"
    assert account.client_secret.get_secret_value() == "own-secret"
    assert account.verify_tls is False
    assert account.account_key.startswith("https://dracoon.example.com|recordings-bot|own-client|")
    rotated = dataclasses.replace(account, password=SecretStr("a-new-password"))
    assert rotated.account_key != account.account_key  # a rotated password gets a fresh client


async def test_unknown_domain_is_permanent(tmp_path: Path) -> None:
    """A domain missing from the file raises UnknownInstance, a PermanentError."""
    path = _write(tmp_path / "i.yml", {"a.example": GOOD})
    provider = FileInstanceProvider(path, defaults=DEFAULTS, env=ENV)
    with pytest.raises(UnknownInstance) as info:
        await provider.get("b.example")
    assert isinstance(info.value, PermanentError)
    assert info.value.code == "unknown_instance"
    assert "b.example" in str(info.value)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://dracoon.example.com", "https://dracoon.example.com"),
        ("https://dracoon.example.com/", "https://dracoon.example.com"),
        ("https://dracoon.example.com/api/v4", "https://dracoon.example.com"),
        ("HTTPS://DRACOON.example.com:443/api/v4///", "https://dracoon.example.com"),
        ("https://host:8443/prefix/api/v4/", "https://host:8443/prefix"),
        ("http://127.0.0.1:8080/api/v4", "http://127.0.0.1:8080"),
        ("http://127.5.0.1", "http://127.5.0.1"),
        ("http://[::1]:9000/", "http://[::1]:9000"),
        ("http://localhost:1234", "http://localhost:1234"),
    ],
)
def test_base_url_normalisation(raw: str, expected: str) -> None:
    """Base URLs lose /api/v4, trailing slashes and default ports; loopback may use http."""
    assert normalise_base_url(raw) == expected


@pytest.mark.parametrize(
    ("dracoon", "path", "message"),
    [
        ({"login": ""}, "dracoon.login", "at least 1 character"),
        ({"login": "   "}, "dracoon.login", "must not be empty"),
        ({"password": ""}, "dracoon.password", "must not be empty"),
        ({"encryption_password": ""}, "dracoon.encryption_password", "must not be empty"),
        ({"password": _DROP}, "dracoon.password", "required key is missing"),
        ({"parent_room_id": 0}, "dracoon.parent_room_id", "greater than 0"),
        ({"parent_room_id": -5}, "dracoon.parent_room_id", "greater than 0"),
        ({"parent_room_id": True}, "dracoon.parent_room_id", "not true/false"),
        ({"parent_room_id": "abc"}, "dracoon.parent_room_id", "valid integer"),
        ({"base_url": "http://dracoon.example.com"}, "dracoon.base_url", "must use https"),
        ({"base_url": "ftp://dracoon.example.com"}, "dracoon.base_url", "absolute https:// URL"),
        ({"base_url": "dracoon.example.com"}, "dracoon.base_url", "absolute https:// URL"),
        ({"base_url": "https://bob:pw@dracoon.example.com"}, "dracoon.base_url", "contain credentials"),
        ({"base_url": "https://dracoon.example.com/?x=1"}, "dracoon.base_url", "query string"),
        ({"base_url": "https://dracoon.example.com:99999"}, "dracoon.base_url", "invalid port"),
        ({"logn": "typo"}, "dracoon.logn", "unknown key"),
    ],
)
async def test_file_validation_errors_name_instance_and_key(
    tmp_path: Path, dracoon: dict[str, Any], path: str, message: str
) -> None:
    """Each invalid dracoon field stops loading with the instance, key path and reason."""
    file = _write(tmp_path / "i.yml", {"meet.example.com": _entry(**dracoon)})
    with pytest.raises(InstanceConfigInvalid) as info:
        FileInstanceProvider(file, defaults=DEFAULTS, env=ENV)
    problems = [str(p) for p in info.value.problems]
    assert any(f"instances[meet.example.com].{path}: " in p and message in p for p in problems), problems
    assert isinstance(info.value, ConfigError) and info.value.code == "instance_config_invalid"
    assert PASSWORD not in str(info.value) and ENC_PASSWORD not in str(info.value)


@pytest.mark.parametrize(
    ("entry", "path", "message"),
    [
        ({**GOOD, "storage": "s3"}, "storage", "only 'dracoon'"),
        ({**GOOD, "color": "red"}, "color", "unknown key"),
        ({k: v for k, v in GOOD.items() if k != "dracoon"}, "dracoon", "required key is missing"),
        ({**GOOD, "targets": [{"meetingTypeId": 1, "copyTo": []}]}, "targets[0].copyTo", "at least 1"),
        ({**GOOD, "targets": [{"meetingTypeId": True, "copyTo": [{"path": "x"}]}]},
         "targets[0].meetingTypeId", "meeting type id"),
        ({**GOOD, "targets": [{"meetingTypeId": 1, "copyTo": [{"path": "x", "expiration": "forever"}]}]},
         "targets[0].copyTo[0].expiration", "forever"),
        ({**GOOD, "targets": [{"meetingTypeId": 1, "copyTo": [{"path": "$meetingTyp/$year"}]}]},
         "targets[0].copyTo[0].path", "segment 1: unknown variable $meetingTyp"),
        ({**GOOD, "targets": [{"meetingTypeId": 1, "copyTo": [{"path": "Rec/../x"}]}]},
         "targets[0].copyTo[0].path", "segment 2"),
        ({**GOOD, "targets": [{"meetingTypeId": 1, "copyTo": [{"path": "x", "keep": 1}]}]},
         "targets[0].copyTo[0].keep", "unknown key"),
        ("just a string", "", "must be a mapping"),
    ],
)
async def test_file_validation_errors_outside_dracoon_section(
    tmp_path: Path, entry: Any, path: str, message: str
) -> None:
    """Storage type, unknown keys, targets and entry shape are validated with key paths."""
    file = _write(tmp_path / "i.yml", {"meet.example.com": entry})
    with pytest.raises(InstanceConfigInvalid) as info:
        FileInstanceProvider(file, defaults=DEFAULTS, env=ENV)
    where = "instances[meet.example.com]" + (f".{path}" if path else "")
    assert any(p.path == where and message in p.message for p in info.value.problems), info.value.problems


async def test_every_problem_of_every_instance_is_reported(tmp_path: Path) -> None:
    """Two broken instances and an unset variable: all three problems in one error."""
    file = _write(
        tmp_path / "i.yml",
        {"a.example": _entry(login=""), "b.example": _entry(parent_room_id=0), "c.example": GOOD},
    )
    with pytest.raises(InstanceConfigInvalid) as info:
        FileInstanceProvider(file, defaults=DEFAULTS, env={"DRACOON_ENCRYPTION_PASSWORD": "x" * 8})
    paths = sorted(p.path for p in info.value.problems)
    assert "instances[a.example].dracoon.login" in paths
    assert "instances[b.example].dracoon.parent_room_id" in paths
    assert "instances[c.example].dracoon.password" in paths
    unset = [p for p in info.value.problems if p.path == "instances[c.example].dracoon.password"]
    assert len(unset) == 1 and "DRACOON_PASSWORD" in unset[0].message  # said once, not twice
    assert all(p.source == str(file) for p in info.value.problems)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("instances: [a, b]\n", "mapping of domain"),
        ("- 1\n", "top level must be a mapping"),
        ("instances: {}\nextra: 1\n", "unknown key"),
        ("instances: {a: [\n", "not valid YAML"),
        ("instances:\n  A.example: {}\n  a.example: {}\n", "configured twice"),
    ],
)
def test_file_level_errors(tmp_path: Path, text: str, message: str) -> None:
    """A file that is not a mapping of domains fails as a whole, with a readable reason."""
    file = tmp_path / "i.yml"
    file.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        FileInstanceProvider(file, defaults=DEFAULTS, env=ENV)
    assert message in str(info.value)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    """source=file with no file stops start-up rather than failing every job later."""
    with pytest.raises(ConfigError, match="instances file not found"):
        FileInstanceProvider(tmp_path / "absent.yml", defaults=DEFAULTS)


def _touch(path: Path, data: Any, step: int) -> None:
    _write(path, data)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + step * 1_000_000_000))


async def test_file_edits_are_picked_up(tmp_path: Path) -> None:
    """A changed file is re-read on the next look-up: new values, new and removed domains."""
    file = _write(tmp_path / "i.yml", {"a.example": GOOD})
    provider = FileInstanceProvider(file, defaults=DEFAULTS, env=ENV)
    assert (await provider.get("a.example")).parent_room_id == 12345
    _touch(file, {"a.example": _entry(parent_room_id=777), "b.example": GOOD}, 1)
    assert (await provider.get("a.example")).parent_room_id == 777
    assert await provider.list_domains() == ["a.example", "b.example"]
    _touch(file, {"b.example": GOOD}, 2)
    with pytest.raises(UnknownInstance):
        await provider.get("a.example")


async def test_broken_edit_keeps_last_good_accounts(tmp_path: Path) -> None:
    """Unparsable edits are logged and ignored; an instance made invalid keeps its last good
    entry, one added invalid fails alone."""
    file = _write(tmp_path / "i.yml", {"a.example": GOOD, "b.example": GOOD})
    provider = FileInstanceProvider(file, defaults=DEFAULTS, env=ENV)
    file.write_text("instances: {oops: [\n", encoding="utf-8")
    st = file.stat()
    os.utime(file, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert (await provider.get("a.example")).login == "recordings-bot"

    bad_rule = {**GOOD, "targets": [{"meetingTypeId": 1, "copyTo": [{"path": "$yaer"}]}]}
    with structlog.testing.capture_logs() as logs:
        _touch(file, {"a.example": GOOD, "b.example": bad_rule, "c.example": _entry(login="")}, 2)
        assert (await provider.get("a.example")).login == "recordings-bot"
        kept = await provider.get("b.example")  # the last good entry, not the typo
        assert [spec.path for rule in kept.targets for spec in rule.copy_to][0] == "$instance/Sales"
        with pytest.raises(InstanceConfigInvalid) as info:
            await provider.get("c.example")
    assert info.value.problems[0].path == "instances[c.example].dracoon.login"
    assert await provider.list_domains() == ["a.example", "b.example", "c.example"]
    (invalid,) = [e for e in logs if e["event"] == "instances_invalid"]
    assert invalid["domains"] == ["b.example", "c.example"] and invalid["kept_previous"] == ["b.example"]

    _touch(file, {"a.example": GOOD, "b.example": _entry(login="fixed-bot")}, 3)
    assert (await provider.get("b.example")).login == "fixed-bot"  # a fixed entry takes over


# --- HTTP configurator ------------------------------------------------------------------------

@pytest.fixture
async def configurator() -> AsyncIterator[ScriptedConfigurator]:
    conf = ScriptedConfigurator()
    async with serve_app(conf.app("/cfg")) as url:
        conf.url = url + "/cfg"
        yield conf


def _http_entry(**dracoon: Any) -> dict[str, Any]:
    entry = _entry(**{"password": PASSWORD, "encryption_password": ENC_PASSWORD, **dracoon})
    return {"domain": "meet.example.com", **entry}


@pytest.fixture
async def http(configurator: ScriptedConfigurator) -> AsyncIterator[HttpInstanceProvider]:
    provider = HttpInstanceProvider(configurator.url + "/", defaults=DEFAULTS,
                                    auth_token=SecretStr("cfg-token-123"))
    try:
        yield provider
    finally:
        await provider.aclose()


async def test_http_success_and_auth_header(
    configurator: ScriptedConfigurator, http: HttpInstanceProvider
) -> None:
    """A 200 answer becomes an account; the request carries the bearer token and Accept."""
    configurator.answers["meet.example.com"] = (200, _http_entry())
    account = await http.get("Meet.Example.com")
    assert account.domain == "meet.example.com"
    assert account.base_url == "https://dracoon.example.com"
    assert account.password.get_secret_value() == PASSWORD
    assert account.targets[0] == TargetRule("14", (TargetSpec("$instance/Sales", "4 years"),))
    path, headers = configurator.requests[0]
    assert path == "/cfg/instances/meet.example.com"
    assert headers["Authorization"] == "Bearer cfg-token-123"
    assert headers["Accept"] == "application/json"
    assert logs.redact_text("token cfg-token-123") == "token ***"


async def test_http_does_not_expand_environment(
    configurator: ScriptedConfigurator, http: HttpInstanceProvider
) -> None:
    """A remote answer cannot pull our environment variables in through ${...}."""
    configurator.answers["meet.example.com"] = (200, _http_entry(password="${HOME}"))
    account = await http.get("meet.example.com")
    assert account.password.get_secret_value() == "${HOME}"


@pytest.mark.parametrize(
    ("status", "error", "code"),
    [
        (404, UnknownInstance, "unknown_instance"),
        (500, TransientError, "configurator_unavailable"),
        (503, TransientError, "configurator_unavailable"),
        (401, TransientError, "configurator_unavailable"),
        (429, TransientError, "configurator_unavailable"),
        (400, PermanentError, "configurator_rejected"),
        (302, PermanentError, "configurator_rejected"),
    ],
)
async def test_http_status_mapping(
    configurator: ScriptedConfigurator,
    http: HttpInstanceProvider,
    status: int,
    error: type[Exception],
    code: str,
) -> None:
    """404 is an unknown instance, 5xx/401/429 transient, other statuses (and redirects) permanent."""
    body: Any = {"error": "x"}
    if status == 302:
        body = web.Response(status=302, headers={"Location": configurator.url + "/instances/other"})
    configurator.answers["meet.example.com"] = (status, body)
    with pytest.raises(error) as info:
        await http.get("meet.example.com")
    assert getattr(info.value, "code", None) == code
    assert len(configurator.requests) == 1  # the redirect was not followed


async def test_http_retry_after_is_passed_on(
    configurator: ScriptedConfigurator, http: HttpInstanceProvider
) -> None:
    """A 503 with Retry-After tells the worker how long to back off."""
    configurator.answers["meet.example.com"] = (503, web.Response(status=503, headers={"Retry-After": "42"}))
    with pytest.raises(TransientError) as info:
        await http.get("meet.example.com")
    assert info.value.retry_after == 42.0


@pytest.mark.parametrize(
    ("body", "path", "message"),
    [
        (b"{not json", "instances[meet.example.com]", "invalid JSON"),
        (b"[1, 2]", "instances[meet.example.com]", "JSON object"),
        ({**_http_entry(), "domain": "other.example"}, "instances[meet.example.com].domain",
         "different domain"),
        (_http_entry(login=""), "instances[meet.example.com].dracoon.login", "at least 1 character"),
        ({**_http_entry(), "surprise": 1}, "instances[meet.example.com].surprise", "unknown key"),
    ],
)
async def test_http_malformed_answers_are_config_errors(
    configurator: ScriptedConfigurator, http: HttpInstanceProvider, body: Any, path: str, message: str
) -> None:
    """Bad JSON or an invalid instance from the configurator is InstanceConfigInvalid with the path."""
    configurator.answers["meet.example.com"] = (200, body)
    with pytest.raises(InstanceConfigInvalid) as info:
        await http.get("meet.example.com")
    assert any(p.path == path and message in p.message for p in info.value.problems), info.value.problems
    assert PASSWORD not in str(info.value)


async def test_http_oversized_answer_is_rejected(
    configurator: ScriptedConfigurator, http: HttpInstanceProvider
) -> None:
    """A configurator streaming megabytes is cut off instead of filling memory."""
    configurator.answers["meet.example.com"] = (200, b" " * (2 * 1024 * 1024))
    with pytest.raises(PermanentError, match="exceeds"):
        await http.get("meet.example.com")


@pytest.mark.parametrize("listing", [{"instances": ["B.example", "a.example"]}, ["a.example", "b.example."]])
async def test_http_list_domains(
    configurator: ScriptedConfigurator, http: HttpInstanceProvider, listing: Any
) -> None:
    """Both the wrapped and the bare list are accepted; domains come back normalised and sorted."""
    configurator.listing = (200, listing)
    assert await http.list_domains() == ["a.example", "b.example"]
    assert configurator.requests[0][0] == "/cfg/instances"


@pytest.mark.parametrize("listing", [{"instances": "a"}, {"items": []}, [1, 2], ["ok", ""]])
async def test_http_list_domains_malformed(
    configurator: ScriptedConfigurator, http: HttpInstanceProvider, listing: Any
) -> None:
    """A listing of the wrong shape is a configuration error, not a crash."""
    configurator.listing = (200, listing)
    with pytest.raises(InstanceConfigInvalid):
        await http.list_domains()


async def test_http_unreachable_is_transient() -> None:
    """Nothing listening on the port: TransientError, so the job is retried later."""
    server = TestServer(web.Application(), host="127.0.0.1", port=0)
    await server.start_server()
    url = str(server.make_url("/"))
    await server.close()
    provider = HttpInstanceProvider(url, defaults=DEFAULTS, timeout=5)
    try:
        with pytest.raises(TransientError) as info:
            await provider.get("meet.example.com")
        assert info.value.code == "configurator_unavailable"
    finally:
        await provider.aclose()


# --- cache ------------------------------------------------------------------------------------

class FakeInner:
    """An InstanceProvider double: counts calls, can be gated and made to fail."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.list_calls = 0
        self.gates: dict[str, asyncio.Event] = {}
        self.failures: list[Exception] = []
        self.closed = False

    async def get(self, domain: str) -> DracoonAccount:
        self.calls.append(domain)
        if domain in self.gates:
            await self.gates[domain].wait()
        if self.failures:
            raise self.failures.pop(0)
        return DracoonAccount(domain=domain, base_url="https://d", login=f"bot-{len(self.calls)}",
                              password=SecretStr("p"), encryption_password=SecretStr("e"), parent_room_id=1)

    async def list_domains(self) -> list[str]:
        self.list_calls += 1
        return ["a.example", f"n{self.list_calls}.example"]

    async def aclose(self) -> None:
        self.closed = True


async def test_cache_serves_until_ttl_expires() -> None:
    """Within the TTL the inner provider is asked once; after it, once more."""
    inner, clock = FakeInner(), FakeClock()
    cache = CachingInstanceProvider(inner, 300, clock=clock)
    first = await cache.get("a.example")
    clock.now += 299.9
    assert await cache.get("A.example") is first
    assert inner.calls == ["a.example"]
    clock.now += 0.2
    second = await cache.get("a.example")
    assert second is not first and second.login == "bot-2"
    assert inner.calls == ["a.example", "a.example"]


async def test_cache_lists_domains_with_ttl() -> None:
    """list_domains is cached for the TTL too, and callers get their own copy."""
    inner, clock = FakeInner(), FakeClock()
    cache = CachingInstanceProvider(inner, 60, clock=clock)
    listed = await cache.list_domains()
    listed.append("mutated")
    assert await cache.list_domains() == ["a.example", "n1.example"]
    clock.now += 61
    assert await cache.list_domains() == ["a.example", "n2.example"]
    assert inner.list_calls == 2


async def test_single_flight_ten_concurrent_gets_one_call() -> None:
    """Ten concurrent look-ups of one domain share one inner call and one result."""
    inner = FakeInner()
    inner.gates["a.example"] = asyncio.Event()
    cache = CachingInstanceProvider(inner, 300)
    tasks = [asyncio.create_task(cache.get("a.example")) for _ in range(10)]
    await asyncio.sleep(0)  # let all ten reach the shared flight (no timing involved)
    inner.gates["a.example"].set()
    results = await asyncio.gather(*tasks)
    assert inner.calls == ["a.example"]
    assert all(r is results[0] for r in results)


async def test_single_flight_over_http_makes_one_request(configurator: ScriptedConfigurator) -> None:
    """Against the real configurator, ten concurrent gets produce one HTTP request."""
    configurator.answers["meet.example.com"] = (200, _http_entry())
    cache = CachingInstanceProvider(HttpInstanceProvider(configurator.url, defaults=DEFAULTS), 300)
    try:
        results = await asyncio.gather(*(cache.get("meet.example.com") for _ in range(10)))
    finally:
        await cache.aclose()
    assert len(configurator.requests) == 1
    assert {r.login for r in results} == {"recordings-bot"}


async def test_slow_domain_does_not_block_other_domains() -> None:
    """No global lock: while one domain's fetch hangs, another domain is answered."""
    inner = FakeInner()
    inner.gates["slow.example"] = asyncio.Event()
    cache = CachingInstanceProvider(inner, 300)
    slow = asyncio.create_task(cache.get("slow.example"))
    fast = await asyncio.wait_for(cache.get("fast.example"), timeout=5)
    assert fast.domain == "fast.example" and not slow.done()
    inner.gates["slow.example"].set()
    assert (await slow).domain == "slow.example"


async def test_errors_are_not_cached() -> None:
    """A failed look-up reaches every waiter, then the next call asks the inner provider again."""
    inner = FakeInner()
    inner.gates["a.example"] = asyncio.Event()
    inner.failures.append(TransientError("configurator down"))
    cache = CachingInstanceProvider(inner, 300)
    waiters = [asyncio.create_task(cache.get("a.example")) for _ in range(3)]
    await asyncio.sleep(0)
    inner.gates["a.example"].set()
    outcomes = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(o, TransientError) for o in outcomes)
    assert len(inner.calls) == 1
    account = await cache.get("a.example")
    assert account.domain == "a.example" and len(inner.calls) == 2


async def test_unknown_instance_is_not_cached() -> None:
    """An instance added to the configurator after a miss is found on the next look-up."""
    inner = FakeInner()
    inner.failures.append(UnknownInstance("new.example"))
    cache = CachingInstanceProvider(inner, 300)
    with pytest.raises(UnknownInstance):
        await cache.get("new.example")
    assert (await cache.get("new.example")).domain == "new.example"


async def test_cancelled_waiter_does_not_cancel_the_shared_fetch() -> None:
    """One job giving up (timeout) leaves the look-up running for the others."""
    inner = FakeInner()
    inner.gates["a.example"] = asyncio.Event()
    cache = CachingInstanceProvider(inner, 300)
    quitter = asyncio.create_task(cache.get("a.example"))
    stayer = asyncio.create_task(cache.get("a.example"))
    await asyncio.sleep(0)
    quitter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await quitter
    inner.gates["a.example"].set()
    assert (await stayer).domain == "a.example"
    assert inner.calls == ["a.example"]


async def test_invalidate_and_zero_ttl() -> None:
    """invalidate() forces a fresh look-up; ttl=0 never caches."""
    inner = FakeInner()
    cache = CachingInstanceProvider(inner, 300)
    await cache.get("a.example")
    cache.invalidate("a.example")
    await cache.get("a.example")
    assert len(inner.calls) == 2
    uncached = CachingInstanceProvider(inner, 0)
    await uncached.get("a.example")
    await uncached.get("a.example")
    assert len(inner.calls) == 4


async def test_aclose_cancels_flights_and_closes_inner() -> None:
    """Closing the cache stops pending look-ups and closes the inner provider."""
    inner = FakeInner()
    inner.gates["a.example"] = asyncio.Event()
    cache = CachingInstanceProvider(inner, 300)
    pending = asyncio.create_task(cache.get("a.example"))
    await asyncio.sleep(0)
    await cache.aclose()
    assert inner.closed
    with pytest.raises(asyncio.CancelledError):
        await pending


# --- open_instance_provider -------------------------------------------------------------------

async def test_open_file_provider_resolves_relative_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """source=file reads instances.file relative to the config's base_dir, behind the cache."""
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "conf").mkdir()
    _write(tmp_path / "conf" / "instances.yml", {"meet.example.com": GOOD})
    cfg = AppConfig(base_dir=tmp_path, instances=InstancesConfig(cache_ttl=60))
    provider = open_instance_provider(cfg)
    try:
        assert isinstance(provider, CachingInstanceProvider)
        assert isinstance(provider.inner, FileInstanceProvider)
        assert (await provider.get("meet.example.com")).password.get_secret_value() == PASSWORD
    finally:
        await provider.aclose()


async def test_open_http_provider(configurator: ScriptedConfigurator) -> None:
    """source=http talks to instances.url with instances.auth_token."""
    configurator.answers["meet.example.com"] = (200, _http_entry())
    cfg = AppConfig(instances=InstancesConfig(source="http", url=configurator.url,
                                              auth_token=SecretStr("tok-abcdef")))
    provider = open_instance_provider(cfg)
    try:
        assert isinstance(provider.inner, HttpInstanceProvider)
        assert (await provider.get("meet.example.com")).parent_room_id == 12345
    finally:
        await provider.aclose()
    assert configurator.requests[0][1]["Authorization"] == "Bearer tok-abcdef"


EXAMPLE = Path(__file__).resolve().parent.parent / "conf" / "instances.yml"


async def test_example_file_in_conf_is_valid() -> None:
    """The documented conf/instances.yml loads once its environment variables are set."""
    example = EXAMPLE
    provider = FileInstanceProvider(example, defaults=DEFAULTS, env=ENV)
    account = await provider.get("meet.example.com")
    assert account.parent_room_id == 12345 and len(account.targets) == 2
