"""Instances from a YAML file (``instances.file``, default ``conf/instances.yml``).

The file is validated completely when the provider is created, so a typo stops the service at
start-up with every problem listed. Afterwards it is re-read when its modification time, size
or inode changes (checked on each look-up, which the cache makes rare). A reload that cannot
be parsed at all is logged and the previous accounts stay in use. So does an instance whose
entry became invalid: its last good entry serves its jobs (an error is logged) until the entry is
fixed, so a typo in one edit does not dead-letter the instance's recordings. An instance that
was never valid answers InstanceConfigInvalid.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from ..config import expand_env, load_yaml_file
from ..errors import ConfigError, ConfigProblem
from ..logs import Code
from .model import DracoonAccount, InstanceConfigInvalid, UnknownInstance, normalise_domain, parse_instance

if TYPE_CHECKING:
    from ..config import DracoonConfig

log = structlog.get_logger(__name__)

_TOP_LEVEL_KEYS = {"instances"}


@dataclass(frozen=True)
class _Snapshot:
    """One successful read of the file, swapped in whole so readers never see half a reload."""

    signature: tuple[int, int, int] | None = None
    accounts: Mapping[str, DracoonAccount] = field(default_factory=dict)
    invalid: Mapping[str, list[ConfigProblem]] = field(default_factory=dict)


def _signature(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def load_instances_file(
    path: Path, *, defaults: DracoonConfig, env: Mapping[str, str] | None = None
) -> tuple[dict[str, DracoonAccount], dict[str, list[ConfigProblem]]]:
    """Parse the file into valid accounts and, per invalid domain, its problems.

    Raises ConfigError only for file-level problems (missing, not YAML, wrong top level).
    """
    env = os.environ if env is None else env
    source = str(path)
    data = load_yaml_file(path, what="instances file")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([ConfigProblem("", "top level must be a mapping with an 'instances' key", source)])
    unknown = sorted(str(k) for k in data if k not in _TOP_LEVEL_KEYS)
    if unknown:
        raise ConfigError([ConfigProblem(k, "unknown key (only 'instances' is allowed here)", source)
                           for k in unknown])
    entries: Any = data.get("instances") or {}
    if not isinstance(entries, dict):
        raise ConfigError([ConfigProblem("instances", "must be a mapping of domain -> instance", source)])
    accounts: dict[str, DracoonAccount] = {}
    invalid: dict[str, list[ConfigProblem]] = {}
    for raw_domain, entry in entries.items():
        where = f"instances[{raw_domain}]"
        if not isinstance(raw_domain, str) or not normalise_domain(raw_domain):
            invalid[str(raw_domain)] = [ConfigProblem(where, "the domain must be a non-empty string", source)]
            continue
        domain = normalise_domain(raw_domain)
        if domain in accounts or domain in invalid:
            invalid[domain] = [ConfigProblem(where, f"{domain!r} is configured twice", source)]
            accounts.pop(domain, None)
            continue
        problems: list[ConfigProblem] = []
        expanded = expand_env(entry, env, where, problems)
        problems = [ConfigProblem(p.path, p.message, source) for p in problems]
        try:
            account = parse_instance(domain, expanded, defaults=defaults, source=source, where=where)
        except InstanceConfigInvalid as exc:
            # An unset ${VAR} already explains why that key is empty; say it once.
            reported = {p.path for p in problems}
            problems.extend(p for p in exc.problems if p.path not in reported)
        if problems:
            invalid[domain] = problems
        else:
            accounts[domain] = account
    return accounts, invalid


class FileInstanceProvider:
    """InstanceProvider over a YAML file; see the module docstring for reload semantics."""

    def __init__(self, path: Path, *, defaults: DracoonConfig, env: Mapping[str, str] | None = None) -> None:
        self._path = path
        self._defaults = defaults
        self._env = env
        self._lock = threading.Lock()  # reloads run in a worker thread
        signature = _signature(path) if path.exists() else None
        accounts, invalid = load_instances_file(path, defaults=defaults, env=env)
        if invalid:
            raise InstanceConfigInvalid([p for ps in invalid.values() for p in ps])
        self._snapshot = _Snapshot(signature, accounts, {})
        log.info("instances_loaded", source=str(path), count=len(accounts))

    def _refresh(self) -> _Snapshot:
        with self._lock:
            current = self._snapshot
            try:
                signature = _signature(self._path)
            except OSError as exc:
                log.warning("instances_file_unreadable", code=Code.CONFIG_ERROR, source=str(self._path),
                            error=exc.strerror)
                return current
            if signature == current.signature:
                return current
            try:
                accounts, invalid = load_instances_file(self._path, defaults=self._defaults, env=self._env)
            except ConfigError as exc:
                # Keep serving the last good accounts; remember the signature to log this once.
                log.error("instances_reload_failed", code=Code.CONFIG_ERROR, source=str(self._path),
                          problems=[str(p) for p in exc.problems])
                self._snapshot = _Snapshot(signature, current.accounts, current.invalid)
                return self._snapshot
            kept = {d: current.accounts[d] for d in invalid if d in current.accounts}
            if invalid:
                log.error("instances_invalid", code=Code.CONFIG_ERROR, source=str(self._path),
                          domains=sorted(invalid), kept_previous=sorted(kept),
                          problems=[str(p) for ps in invalid.values() for p in ps])
            accounts = {**accounts, **kept}
            invalid = {d: ps for d, ps in invalid.items() if d not in kept}
            log.info("instances_reloaded", source=str(self._path), count=len(accounts))
            self._snapshot = _Snapshot(signature, accounts, invalid)
            return self._snapshot

    async def get(self, domain: str) -> DracoonAccount:
        """The account for ``domain`` as the file says now."""
        snapshot = await asyncio.to_thread(self._refresh)
        key = normalise_domain(domain)
        account = snapshot.accounts.get(key)
        if account is not None:
            return account
        if key in snapshot.invalid:
            raise InstanceConfigInvalid(snapshot.invalid[key])
        raise UnknownInstance(domain)

    async def list_domains(self) -> list[str]:
        """Every domain in the file, including those whose entry is currently invalid."""
        snapshot = await asyncio.to_thread(self._refresh)
        return sorted({*snapshot.accounts, *snapshot.invalid})

    async def aclose(self) -> None:
        """Nothing to release; present for the protocol."""
