"""Knobs of the emulated server: OAuth clients, token lifetimes, storage mode, quotas, faults."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from .contract import enabled_by_environment
from .faults import FaultRule

MIB = 1024 * 1024
S3_PART_ETAGS = ("md5", "opaque")
DEFAULT_CLIENTS: Mapping[str, str] = {"dracoon_legacy_scripting": ""}


@dataclass(frozen=True)
class EmulatorConfig:
    """Server-wide settings; everything tenant-specific (users, rooms) lives in the state.

    ``public_url`` is the base used for absolute ``uploadUrl``/``downloadUrl``/S3 part URLs; when
    unset the origin the client used (its ``Host`` header) is taken, which is right for tests.
    ``s3_finishing_polls`` is how many status polls report ``finishing`` after an S3 completion
    before the emulator finalises it, so clients must really poll.
    ``discard_content`` keeps only the size and (for proxy uploads, whose chunks arrive in order)
    the SHA-256 of uploaded files instead of their bytes, so benchmarks can move GiBs through one
    emulator; such files cannot be downloaded.
    ``s3_part_etags`` is what a part PUT answers as ETag: ``"md5"``, the part's MD5 as S3 gives it
    for unencrypted and SSE-S3 buckets, or ``"opaque"``, a fresh random value per PUT as S3 gives
    it under SSE-KMS or SSE-C (and some S3-compatible stores do): clients must carry ETags, never
    recompute them. ``"opaque"`` also spares the emulator hashing each part, which matters where
    it shares a small machine with the client it is measuring (see bench/pipeline_bench.py).
    ``response_contract`` checks every answer against DRACOON's description (``contract.py``); it
    costs a schema validation per answer, so it defaults to off unless the environment variable
    ``DRACOON_EMULATOR_RESPONSE_CONTRACT=1`` is set (the test suite sets it).
    """

    clients: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_CLIENTS), repr=False)
    access_token_ttl: float = 3600.0
    refresh_token_ttl: float = 30 * 86400.0
    use_s3_storage: bool = False
    s3_enforce_direct_upload: bool = False
    crypto_enabled: bool = True
    customer_quota: int | None = None
    s3_min_part_size: int = 5 * MIB
    s3_max_part_size: int = 5 * 1024 * MIB
    s3_max_parts: int = 10_000
    s3_finishing_polls: int = 1
    public_url: str | None = None
    preferred_key_pair_version: str = "RSA-4096"
    fault_seed: int = 0
    faults: tuple[FaultRule, ...] = ()
    control_api: bool = True
    discard_content: bool = False
    s3_part_etags: str = "md5"
    response_contract: bool = field(default_factory=enabled_by_environment)

    def __post_init__(self) -> None:
        if self.s3_part_etags not in S3_PART_ETAGS:
            raise ValueError(f"s3_part_etags must be one of {S3_PART_ETAGS}, not {self.s3_part_etags!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EmulatorConfig:
        """Build from YAML/JSON (snake_case keys; ``faults`` as a list of rule objects)."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown emulator config key(s): {sorted(unknown)}")
        values = dict(data)
        if "faults" in values:
            values["faults"] = tuple(FaultRule.from_dict(dict(r)) for r in values["faults"])
        if "clients" in values:
            values["clients"] = {str(k): str(v or "") for k, v in dict(values["clients"]).items()}
        return cls(**values)

    def with_client(self, client_id: str, secret: str) -> EmulatorConfig:
        """A copy that also accepts this OAuth client."""
        return replace(self, clients={**self.clients, client_id: secret})
