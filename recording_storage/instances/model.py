"""The account data model, the provider protocol, and validation of one instance entry.

Both sources (YAML file, HTTP configurator) deliver the same shape, so both go through
:func:`parse_instance`, which reports every problem with the instance and key path.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Literal, Protocol

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)

from ..errors import ConfigError, ConfigProblem, PermanentError
from ..expiration import parse_expiration
from ..logs import is_secret_key, register_secrets
from ..node_names import check_path_template

if TYPE_CHECKING:
    from ..config import DracoonConfig

ANY_MEETING_TYPE = "*any*"


@dataclass(frozen=True)
class TargetSpec:
    """One destination room path (relative to the parent room) and its optional expiration."""

    path: str
    expiration: str | None = None


@dataclass(frozen=True)
class TargetRule:
    """Instance-configured targets for one meeting type id, or for every type (``*any*``)."""

    meeting_type_id: str
    copy_to: tuple[TargetSpec, ...]


@dataclass(frozen=True)
class DracoonAccount:
    """Everything needed to act as one instance's DRACOON service account."""

    domain: str
    base_url: str
    login: str
    password: SecretStr = field(repr=False)
    encryption_password: SecretStr = field(repr=False)
    parent_room_id: int
    client_id: str = "dracoon_legacy_scripting"
    client_secret: SecretStr = field(default=SecretStr(""), repr=False)
    storage: str = "dracoon"
    targets: tuple[TargetRule, ...] = ()
    verify_tls: bool | None = None

    @property
    def account_key(self) -> str:
        """Identity for sharing one client (session, token, unlocked key) between instances.

        A digest of the credentials is part of it, so a password rotated in the instance
        configuration gets a fresh client instead of the stale one (the digest never leaves
        the process and is not reversible)."""
        secrets = "\0".join(
            s.get_secret_value() for s in (self.password, self.encryption_password, self.client_secret)
        )
        digest = hashlib.sha256(secrets.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        return f"{self.base_url}|{self.login}|{self.client_id}|{digest}"


class UnknownInstance(PermanentError):
    """No account is configured for the job's instance domain; retrying cannot change that."""

    code = "unknown_instance"

    def __init__(self, domain: str) -> None:
        super().__init__(f"no DRACOON account is configured for instance {domain!r}")
        self.domain = domain


class InstanceConfigInvalid(ConfigError):
    """An instance's configuration is unusable; ``problems`` name the instance and key paths.

    A ConfigError, so a broken file at start-up stops the service like a broken app config.
    """

    code = "instance_config_invalid"


class InstanceProvider(Protocol):
    """Where DRACOON accounts come from; implementations are safe for concurrent use."""

    async def get(self, domain: str) -> DracoonAccount:
        """The account for ``domain``; UnknownInstance, InstanceConfigInvalid or TransientError."""
        ...

    async def list_domains(self) -> list[str]:
        """Every configured domain (normalised), for the periodic sharer."""
        ...

    async def aclose(self) -> None:
        """Release connections; the provider is unusable afterwards."""
        ...


def normalise_domain(domain: str) -> str:
    """``"Meet.Example.com."`` and ``"meet.example.com"`` are one instance."""
    return domain.strip().rstrip(".").lower()


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def normalise_base_url(raw: str) -> str:
    """``https://host[:port][/prefix]`` without ``/api/v4`` or trailing slashes; ValueError if unsafe.

    Plain http would send the service account's password in clear, so it is only accepted for
    loopback hosts (the local emulator).
    """
    parts = urllib.parse.urlsplit(raw.strip())
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http") or not parts.netloc:
        raise ValueError("must be an absolute https:// URL, e.g. https://dracoon.example.com")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        raise ValueError("has an invalid port") from None
    if not host:
        raise ValueError("has no host name")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not contain credentials; use login and password")
    if parts.query or parts.fragment:
        raise ValueError("must not have a query string or fragment")
    if scheme == "http" and not _is_loopback(host):
        raise ValueError("must use https (plain http is allowed only for 127.0.0.0/8, ::1 and localhost)")
    path = parts.path.rstrip("/")
    if path.lower().endswith("/api/v4"):
        path = path[: -len("/api/v4")].rstrip("/")
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != {"https": 443, "http": 80}[scheme]:
        netloc += f":{port}"
    return f"{scheme}://{netloc}{path}"


def _not_bool(value: Any) -> Any:
    # pydantic's lax mode would turn `parent_room_id: true` into room 1.
    if isinstance(value, bool):
        raise ValueError("must be a number, not true/false")
    return value


def _meeting_type(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("must be a meeting type id or '*any*'")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    raise ValueError("must be a meeting type id or '*any*'")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class _TargetSpecIn(_Model):
    path: str = Field(min_length=1)
    expiration: str | None = None

    @field_validator("path")
    @classmethod
    def _path_parses(cls, value: str) -> str:
        # Like the expiration: a typo'd $variable fails at start-up and in ``check``, instead of
        # dead-lettering every job that uses the rule.
        problems = check_path_template(value)
        if problems:
            raise ValueError("; ".join(problems))
        return value

    @field_validator("expiration")
    @classmethod
    def _expiration_parses(cls, value: str | None) -> str | None:
        # Checked now so a typo fails at start-up, not on the first recording months later.
        parse_expiration(value)
        return value


class _TargetRuleIn(_Model):
    meeting_type_id: Annotated[str, BeforeValidator(_meeting_type)] = Field(alias="meetingTypeId")
    copy_to: list[_TargetSpecIn] = Field(alias="copyTo", min_length=1)


class _DracoonIn(_Model):
    base_url: str
    login: str = Field(min_length=1)
    password: SecretStr
    encryption_password: SecretStr
    parent_room_id: Annotated[int, BeforeValidator(_not_bool)] = Field(gt=0)
    client_id: str | None = Field(default=None, min_length=1)
    client_secret: SecretStr | None = None
    verify_tls: bool | None = None

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        return normalise_base_url(value)

    @field_validator("login")
    @classmethod
    def _login(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value.strip()

    @field_validator("password", "encryption_password")
    @classmethod
    def _secret_set(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value():
            raise ValueError("must not be empty (is the environment variable it references set?)")
        return value


class _InstanceIn(_Model):
    storage: Literal["dracoon"] = "dracoon"
    dracoon: _DracoonIn
    targets: list[_TargetRuleIn] = Field(default_factory=list)


_VALUE_ERROR = re.compile(r"^(?:Value|Assertion) error, ")


def _problems(exc: ValidationError, where: str, source: str) -> list[ConfigProblem]:
    problems = []
    for err in exc.errors(include_url=False):
        loc = err["loc"]
        path = where + "".join(f".{p}" if isinstance(p, str) else f"[{p}]" for p in loc)
        kind, msg = err["type"], _VALUE_ERROR.sub("", err["msg"])
        if kind == "extra_forbidden":
            msg = "unknown key (see conf/instances.yml for the allowed keys)"
        elif kind == "missing":
            msg = "required key is missing"
        elif kind == "literal_error" and loc == ("storage",):
            msg = "unsupported storage (only 'dracoon' is supported)"
        elif "input" in err and not any(is_secret_key(p) for p in loc):
            shown = repr(err["input"])
            msg = f"{msg} (got {shown if len(shown) <= 80 else shown[:77] + '...'})"
        problems.append(ConfigProblem(path, msg, source))
    return problems


def parse_instance(
    domain: str, data: Any, *, defaults: DracoonConfig, source: str = "", where: str | None = None
) -> DracoonAccount:
    """Validate one instance entry into an account; InstanceConfigInvalid lists every problem.

    ``where`` prefixes the key paths (default ``instances[<domain>]``); ``defaults`` supplies
    the OAuth client when the instance names none. The secrets are registered for redaction.
    """
    where = f"instances[{domain}]" if where is None else where
    if not isinstance(data, Mapping):
        problem = ConfigProblem(where, "must be a mapping with a 'dracoon' section", source)
        raise InstanceConfigInvalid([problem])
    try:
        model = _InstanceIn.model_validate(data)
    except ValidationError as exc:
        raise InstanceConfigInvalid(_problems(exc, where, source)) from None
    d = model.dracoon
    client_secret = d.client_secret if d.client_secret is not None else defaults.client_secret
    register_secrets(d.password, d.encryption_password, client_secret)
    return DracoonAccount(
        domain=domain,
        base_url=d.base_url,
        login=d.login,
        password=d.password,
        encryption_password=d.encryption_password,
        parent_room_id=d.parent_room_id,
        client_id=d.client_id or defaults.client_id,
        client_secret=client_secret,
        storage=model.storage,
        targets=tuple(
            TargetRule(r.meeting_type_id, tuple(TargetSpec(s.path, s.expiration) for s in r.copy_to))
            for r in model.targets
        ),
        verify_tls=d.verify_tls,
    )
