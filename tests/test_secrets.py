"""Secrets never leave the process, and every client verifies TLS.

The flow test runs the real service (configurator over HTTP, moto, DRACOON emulator in proxy and
S3-direct mode) with known sentinel secrets: a job that lands, a job whose source is missing, a
job for an instance whose login fails and a job that is not a job. Then it looks for every
sentinel, and for every token and presigned URL the emulator handed out, in everything the
service let out: log lines (rendered and raw records), DLQ messages, exception texts, the health
and metrics endpoints, and reprs of config, accounts, clients and keys.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import logging
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr

from dracoon_emulator import EmulatorConfig
from recording_storage import cli, service
from recording_storage.config import (
    AppConfig,
    AwsConfig,
    DracoonConfig,
    HealthConfig,
    InstancesConfig,
    LogConfig,
    load_config,
)
from recording_storage.crypto import KeyPairVersion, unlock_key_pair
from recording_storage.dracoon import DracoonClient
from recording_storage.errors import ConfigError, RecordingStorageError
from recording_storage.instances import HttpInstanceProvider, open_instance_provider, parse_instance
from recording_storage.logs import clear_secrets, configure_logging, reset_logging
from recording_storage.s3 import S3Source
from tests.fixtures.aws import make_s3_config
from tests.fixtures.dracoon import DracoonEnv, emulator_config
from tests.fixtures.hostile import GarbageProxy, Rewrite, base_job, dlq_all
from tests.fixtures.keys import make_test_keypair
from tests.fixtures.servers import SEEN_AUTH, configurator_app, self_signed_cert, serve_app, server_ssl
from tests.fixtures.service import DOMAIN, Stack

pytestmark = pytest.mark.integration

SENTINEL_LOGIN_PW = "Sntl-Dracoon-Login-Pw-7f3a"
SENTINEL_WRONG_PW = "Sntl-Wrong-Login-Pw-77c1"
SENTINEL_ENC_PW = "Sntl-Encryption-Pw-51c2"
SENTINEL_CLIENT_ID = "sntl-oauth-client"
SENTINEL_CLIENT_SECRET = "Sntl-OAuth-Client-Secret-a9d0"
SENTINEL_AWS_SECRET = "Sntl-Aws-Secret-Access-Key-0b7e"
SENTINEL_AWS_TOKEN = "Sntl-Aws-Session-Token-4d2f"
SENTINEL_CONFIGURATOR_TOKEN = "Sntl-Configurator-Token-33e1"
STATIC_SENTINELS = [
    SENTINEL_LOGIN_PW, SENTINEL_WRONG_PW, SENTINEL_ENC_PW, SENTINEL_CLIENT_SECRET, SENTINEL_AWS_SECRET,
    SENTINEL_AWS_TOKEN, SENTINEL_CONFIGURATOR_TOKEN,
]
BAD_DOMAIN = "bad-login.example.com"


@pytest.fixture(autouse=True)
def _forget_registered_secrets() -> Iterator[None]:
    """Redaction must be earned by this test's own set-up, not by secrets registered earlier."""
    clear_secrets()
    yield
    reset_logging()
    clear_secrets()


@pytest.fixture(params=["proxy", "s3-direct"])
def dracoon_emulator_config(request: pytest.FixtureRequest) -> EmulatorConfig:
    config = emulator_config(use_s3_storage=request.param == "s3-direct", s3_min_part_size=64 * 1024)
    return config.with_client(SENTINEL_CLIENT_ID, SENTINEL_CLIENT_SECRET)


def _entry(env: DracoonEnv, base_url: str, login: str, password: str) -> dict[str, Any]:
    return {
        "storage": "dracoon",
        "dracoon": {
            "base_url": base_url, "login": login, "password": password,
            "encryption_password": SENTINEL_ENC_PW, "parent_room_id": env.parent_room_id,
            "client_id": SENTINEL_CLIENT_ID, "client_secret": SENTINEL_CLIENT_SECRET,
        },
    }


@pytest.fixture
async def dracoon_proxy(stack: Stack) -> AsyncIterator[GarbageProxy]:
    """A pass-through proxy in front of the emulator, to note every URL the service is handed."""
    async with GarbageProxy(stack.dracoon.base_url) as proxy:
        yield proxy


@pytest.fixture
async def configurator(stack: Stack, dracoon_proxy: GarbageProxy) -> AsyncIterator[str]:
    """The configurator for two instances: one that works, one whose DRACOON password is wrong
    (another login: clients are pooled per base URL and login)."""
    env = stack.dracoon
    env.add_user("svc-other")
    url = dracoon_proxy.url
    instances = {DOMAIN: _entry(env, url, env.service_user.login, SENTINEL_LOGIN_PW),
                 BAD_DOMAIN: _entry(env, url, "svc-other", SENTINEL_WRONG_PW)}
    async with serve_app(configurator_app(instances, SENTINEL_CONFIGURATOR_TOKEN)) as configurator_url:
        yield configurator_url


def _sentinel_config(stack: Stack, configurator_url: str) -> AppConfig:
    cfg = stack.config
    aws = cfg.aws.model_copy(update={
        "access_key_id": SecretStr("AKIASNTL0000000000AB"),
        "secret_access_key": SecretStr(SENTINEL_AWS_SECRET),
        "session_token": SecretStr(SENTINEL_AWS_TOKEN),
    })
    return cfg.model_copy(update={
        "aws": aws,
        "instances": InstancesConfig(source="http", url=configurator_url,
                                     auth_token=SecretStr(SENTINEL_CONFIGURATOR_TOKEN), cache_ttl=60),
        "health": HealthConfig(enabled=True, host="127.0.0.1", port=0, cache_seconds=0),
        # The failed login holds its job: a delayed copy lets the drain end instead of looping.
        "queue": cfg.queue.model_copy(update={"retry_backoff_base": 60, "retry_backoff_max": 60}),
        "dracoon": cfg.dracoon.model_copy(update={"client_id": SENTINEL_CLIENT_ID}),
    })


def _seed_sentinel_secrets(env: DracoonEnv) -> str:
    """The service user gets the sentinel login password and a key pair locked with the sentinel
    encryption password; returns a fragment of that private key's PEM to look for."""
    env.state.users[env.service_user.id].password = SENTINEL_LOGIN_PW
    keys = make_test_keypair(KeyPairVersion.RSA_4096, SENTINEL_ENC_PW)
    env.state.set_key_pair(env.service_user.id, keys.key_pair.to_json())
    pem_lines = keys.key_pair.private_key_container.private_key.splitlines()
    return pem_lines[len(pem_lines) // 2]


class _RawRecords(logging.Handler):
    """Every stdlib record as emitted, before our formatter's redaction: secrets must not even
    reach a log call (redaction is the safety net, not the mechanism)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(("werkzeug", "moto")):
            return  # the fake AWS, not the service
        self.texts.append(repr(record.msg) + repr(record.args) + (record.exc_text or ""))


def _variants(secret: str) -> set[str]:
    return {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret)}


class _Remembering(dict[Any, Any]):
    """A dict that remembers everything ever stored in it (the emulator forgets used tokens)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.ever: dict[Any, Any] = dict(self)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.ever[key] = value
        super().__setitem__(key, value)


def _remember_credentials(env: DracoonEnv, proxy: GarbageProxy) -> list[str]:
    """Keep every token and URL the emulator hands out; returns the list the proxy fills."""
    for name in ("access_tokens", "refresh_tokens"):
        setattr(env.state, name, _Remembering(getattr(env.state, name)))
    urls: list[str] = []

    def record(body: bytes) -> bytes:
        data = json.loads(body)
        urls.extend(u["url"] for u in data.get("urls", []))
        urls.extend(data[k] for k in ("uploadUrl",) if k in data)
        return body

    proxy.add(Rewrite("POST", r"/nodes/files/uploads$", record))
    proxy.add(Rewrite("POST", r"/s3_urls$", record))
    return urls


def _dynamic_secrets(env: DracoonEnv, urls: list[str]) -> dict[str, str]:
    """Every credential handed out: tokens, upload URLs (their token), presigned part URLs."""
    found: dict[str, str] = {}
    for kind in ("access_tokens", "refresh_tokens"):
        for token in getattr(env.state, kind).ever:
            found[f"{kind[:-1]} {token[:4]}..."] = token
    for url in urls:
        parts = urllib.parse.urlsplit(url)
        if parts.query:
            found[f"presigned part URL query {parts.path}"] = parts.query
            signature = urllib.parse.parse_qs(parts.query)["X-Amz-Signature"][0]
            found[f"presigned part URL signature {signature[:4]}..."] = signature
        else:
            found[f"upload URL token {parts.path[-28:-24]}..."] = parts.path.rsplit("/", 1)[-1]
    return found


async def _fetch(base: str, paths: list[str]) -> dict[str, str]:
    out = {}
    async with aiohttp.ClientSession() as session:
        for path in paths:
            async with session.get(base + path) as resp:
                out[path] = f"{resp.status} {resp.headers!r} {await resp.text()}"
    return out


async def _exception_texts(env: DracoonEnv, cfg: AppConfig, configurator_url: str) -> dict[str, str]:
    """Errors raised on purpose by clients handed secrets: wrong login, wrong key, wrong token."""
    texts: dict[str, str] = {}
    wrong = env.account(password=SecretStr(SENTINEL_WRONG_PW), client_id=SENTINEL_CLIENT_ID,
                        client_secret=SecretStr(SENTINEL_CLIENT_SECRET))
    async with DracoonClient(wrong, DracoonConfig(max_retries=0)) as client:
        try:
            await client.ping_authenticated()
        except RecordingStorageError as exc:
            texts["failed login"] = f"{exc} {exc!r} {exc.args!r}"
    pair = make_test_keypair(KeyPairVersion.RSA_4096, SENTINEL_ENC_PW).key_pair
    try:
        unlock_key_pair(pair, SENTINEL_WRONG_PW)
    except RecordingStorageError as exc:
        texts["wrong encryption password"] = f"{exc} {exc!r}"
    provider = HttpInstanceProvider(configurator_url, defaults=cfg.dracoon,
                                    auth_token=SecretStr(SENTINEL_CONFIGURATOR_TOKEN + "-stale"))
    try:
        await provider.get(DOMAIN)
    except RecordingStorageError as exc:
        texts["configurator 401"] = f"{exc} {exc!r}"
    finally:
        await provider.aclose()
    try:
        bad = {"base_url": "http://dracoon.example.com", "login": "x", "password": SENTINEL_LOGIN_PW,
               "encryption_password": 5, "parent_room_id": "x", "client_secret": [SENTINEL_CLIENT_SECRET]}
        parse_instance(DOMAIN, {"dracoon": bad}, defaults=cfg.dracoon)
    except ConfigError as exc:
        texts["bad instance entry"] = f"{exc} {exc!r}"
    return texts


async def test_no_secret_leaves_the_service(
    stack: Stack, configurator: str, dracoon_proxy: GarbageProxy
) -> None:
    """A success, a missing source, a failed login and a non-job, in proxy and S3-direct mode: no
    sentinel secret, token or presigned URL in logs, DLQ, errors, health, metrics or reprs."""
    pem_fragment = _seed_sentinel_secrets(stack.dracoon)
    urls = _remember_credentials(stack.dracoon, dracoon_proxy)
    stack.dracoon.add_user("alice")  # someone to serve the file key to
    cfg = _sentinel_config(stack, configurator)
    await stack.put("s/ok.mp4", b"x" * 300_000)
    await stack.put("s/other.mp4", b"y" * 1_000)
    for body in (
        base_job(stack.bucket, ["s/ok.mp4"]),
        base_job(stack.bucket, ["s/missing.mp4"]),
        base_job(stack.bucket, ["s/other.mp4"], instance={"domain": BAD_DOMAIN}),
        "not a job " + SENTINEL_LOGIN_PW[:3],
    ):
        await stack.send(body if isinstance(body, str) else json.dumps(body))

    rendered = io.StringIO()
    raw = _RawRecords()
    configure_logging(LogConfig(level="debug", format="json"), stream=rendered)
    logging.getLogger().addHandler(raw)
    try:
        async with service.open_runtime(cfg) as rt:
            stats = await service._serve(rt, asyncio.Event(), drain=True, max_messages=None)
            assert rt.health_url is not None
            # The pool has stopped; a live worker makes /healthcheck run every dependency probe,
            # the failing DRACOON login included (otherwise it stops at "no running workers").
            rt.health.worker_started("secrets-test")
            rt.health.worker_polled("secrets-test")
            endpoints = await _fetch(rt.health_url, ["/healthcheck", "/api/v1/healthcheck", "/livez",
                                                     "/readyz", "/metrics"])
            account = await rt.instances.get(DOMAIN)
            client = await rt.pool.client(account)
            reprs = {
                "runtime": repr(rt), "config": repr(rt.config), "config str": str(rt.config),
                "config dump": repr(rt.config.model_dump()), "config json": rt.config.model_dump_json(),
                "account": repr(account), "account str": str(account), "client": repr(client),
                "token manager": repr(client.tokens),
                "key pair": repr(await rt.pool.key_pair(account)), "pool": repr(rt.pool),
                "s3": repr(rt.s3), "queue": repr(rt.queue), "instances": repr(rt.instances),
            }
    finally:
        logging.getLogger().removeHandler(raw)

    assert stats.outcomes == {"success": 1, "permanent": 2, "transient": 1}  # the login's job is held
    assert len(stack.files("Calls")) == 1
    dead = await dlq_all(stack.config)
    assert {m["MessageAttributes"]["rs-reason-code"]["StringValue"] for m in dead} == {
        "source_missing", "invalid_message"}
    errors = await _exception_texts(stack.dracoon, cfg, configurator)
    assert set(errors) == {"failed login", "wrong encryption password", "configurator 401",
                           "bad instance entry"}
    assert "login failed" in endpoints["/healthcheck"] and "svc-other" in endpoints["/healthcheck"]
    assert "recording_storage_dracoon_requests_total{" in endpoints["/metrics"]
    places: dict[str, str] = {
        "rendered logs": rendered.getvalue(),
        "raw log records": "\n".join(raw.texts),
        "dlq attributes": json.dumps([m["MessageAttributes"] for m in dead]),
        **{f"GET {path}": body for path, body in endpoints.items()},
        **{f"repr {name}": text for name, text in reprs.items()},
        **{f"error {name}": text for name, text in errors.items()},
    }
    secrets = {s: s for s in STATIC_SENTINELS}
    secrets["private key PEM"] = pem_fragment
    handed_out = _dynamic_secrets(stack.dracoon, urls)
    assert any("access" in k for k in handed_out) and any("refresh" in k for k in handed_out)
    direct = stack.dracoon.emulator.config.use_s3_storage
    assert any(("signature" if direct else "upload URL token") in k for k in handed_out)
    secrets |= handed_out
    assert "dracoon_logged_in" in places["rendered logs"]  # the capture captured the service
    leaks = [
        f"{name} in {where}"
        for name, secret in secrets.items()
        for variant in _variants(secret)
        for where, text in places.items()
        if variant in text
    ]
    assert leaks == []


# --- TLS on by default; plain http only to loopback ---------------------------------------------


@pytest.fixture
async def tls_emulator(dracoon_emulator: DracoonEnv, tmp_path: Path) -> AsyncIterator[tuple[str, Path]]:
    """The emulator's application again, served over TLS with a self-signed certificate."""
    cert, key = self_signed_cert(tmp_path)
    async with serve_app(dracoon_emulator.emulator.make_app(), server_ssl(cert, key)) as url:
        yield url, cert


async def test_dracoon_client_verifies_tls_by_default(
    dracoon_emulator: DracoonEnv, tls_emulator: tuple[str, Path]
) -> None:
    """A self-signed server is refused by default, accepted with its CA bundle, and only with an
    explicit verify_tls=false otherwise."""
    url, cert = tls_emulator
    account = dracoon_emulator.account(base_url=url)
    async with DracoonClient(account, DracoonConfig(max_retries=0)) as client:
        with pytest.raises(RecordingStorageError) as info:
            await client.ping_authenticated()
    assert info.value.code == "tls_error"
    assert (await _ping(account, DracoonConfig(max_retries=0, ca_bundle=cert))) > 0
    assert (await _ping(account, DracoonConfig(max_retries=0, verify_tls=False))) > 0
    assert (await _ping(dracoon_emulator.account(base_url=url, verify_tls=False), DracoonConfig())) > 0


async def _ping(account: Any, settings: DracoonConfig) -> int:
    async with DracoonClient(account, settings) as client:
        return (await client.ping_authenticated()).id


async def test_configurator_and_aws_clients_verify_tls(tmp_path: Path, aws_config: AwsConfig) -> None:
    """The configurator client and aiobotocore refuse a self-signed server (no opt-out needed)."""
    cert, key = self_signed_cert(tmp_path)
    app = configurator_app({}, SENTINEL_CONFIGURATOR_TOKEN)
    async with serve_app(app, server_ssl(cert, key)) as url:
        provider = HttpInstanceProvider(url, defaults=DracoonConfig(),
                                        auth_token=SecretStr(SENTINEL_CONFIGURATOR_TOKEN))
        try:
            with pytest.raises(RecordingStorageError) as info:
                await provider.list_domains()
        finally:
            await provider.aclose()
        assert "SSL" in str(info.value) or "certificate" in str(info.value)
        assert app[SEEN_AUTH] == []  # the token never reached the unverified server

        aws = aws_config.model_copy(update={"endpoint_url": url, "max_attempts": 1})
        async with S3Source(aws, make_s3_config()) as s3:
            with pytest.raises(RecordingStorageError) as aws_info:
                await s3.head("bucket", "key")
        assert aws_info.value.code == "connection"
        assert "SSL" in str(aws_info.value) or "certificate" in str(aws_info.value)


def _load(tmp_path: Path, **sections: Any) -> AppConfig:
    empty = tmp_path / "app.yaml"
    empty.write_text("{}\n", encoding="utf-8")
    return load_config(empty, env={}, overrides=sections)


@pytest.mark.parametrize("host", ["dracoon.example.com", "10.0.0.8", "[2001:db8::1]", "127.0.0.1.nip.io"])
async def test_plain_http_is_refused_for_non_loopback_hosts(host: str, tmp_path: Path) -> None:
    """DRACOON base URL, configurator URL and AWS endpoint: http only to loopback, clear errors."""
    url = f"http://{host}"
    entry = {"login": "x", "password": "p", "encryption_password": "e", "parent_room_id": 1}
    with pytest.raises(ConfigError, match="must use https"):
        parse_instance(DOMAIN, {"dracoon": {"base_url": url, **entry}}, defaults=DracoonConfig())
    account = parse_instance(DOMAIN, {"dracoon": {"base_url": "https://d.example.com", **entry}},
                             defaults=DracoonConfig())
    with pytest.raises(RecordingStorageError, match="plain http") as info:
        DracoonClient(dataclasses.replace(account, base_url=url), DracoonConfig())
    assert info.value.code == "insecure_url"
    with pytest.raises(ConfigError, match=r"instances\.url: must be an https"):
        open_instance_provider(_load(tmp_path, instances={"source": "http", "url": url + "/config"}))
    cfg = _load(tmp_path, aws={"endpoint_url": url})
    with pytest.raises(ConfigError, match=r"aws\.endpoint_url: plain http"):
        async with S3Source(cfg.aws, cfg.s3):
            pass


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080", "http://localhost:1", "http://[::1]:9", "https://c.example"])
async def test_configurator_url_allows_https_and_loopback_http(url: str, tmp_path: Path) -> None:
    """The check refuses only what it must: https anywhere, http to loopback (tests, local stack)."""
    provider = open_instance_provider(_load(tmp_path, instances={"source": "http", "url": url}))
    await provider.aclose()


def test_config_errors_mask_secrets_inside_sections(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A section-level error echoes the section's input; secrets inside it are masked."""
    path = tmp_path / "app.yaml"
    path.write_text(
        f"instances: {{source: http, auth_token: {SENTINEL_CONFIGURATOR_TOKEN}}}\n"
        f"queue: {{visibility_timeout: 30, heartbeat_interval: 45, token: {SENTINEL_AWS_TOKEN}}}\n"
        f"dracoon: {{client_secret: [{SENTINEL_CLIENT_SECRET}]}}\n",
        encoding="utf-8",
    )
    assert cli.main(["-c", str(path), "check"]) == 2
    err = capsys.readouterr().err
    assert "instances:" in err and "queue" in err and "dracoon.client_secret" in err
    for secret in (SENTINEL_CONFIGURATOR_TOKEN, SENTINEL_AWS_TOKEN, SENTINEL_CLIENT_SECRET):
        assert secret not in err
