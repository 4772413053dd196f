"""Per-instance DRACOON accounts (stub: the data model; providers are being added)."""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import SecretStr

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
        """Stable identity for sharing one client (session, token) between instances."""
        return f"{self.base_url}|{self.login}|{self.client_id}"
