"""Per-instance DRACOON accounts: which DRACOON, which service user, which parent room.

Every job names its instance (``instance.domain``); the account for that domain comes from an
:class:`InstanceProvider`. Two sources exist, both wrapped in a TTL cache by
:func:`open_instance_provider`:

* ``file``: ``conf/instances.yml`` (see that file for the documented format). Values may
  reference the environment as ``${NAME}``, which is how passwords stay out of the file. The
  file is validated completely at start-up (a broken file stops the service with every problem
  listed) and re-read when it changes, at most once per cache TTL per domain.
* ``http``: the "configurator", a small HTTP service (the Go original used a private SDK whose
  protocol is unknown, so this one is ours):

  ``GET {url}/instances/{domain}`` (domain URL-encoded) answers ``200`` with one instance, the
  same shape as an entry of the YAML file, plus an optional ``"domain"`` that must match::

      {"domain": "meet.example.com", "storage": "dracoon",
       "dracoon": {"base_url": "https://dracoon.example.com", "login": "recordings-bot",
                   "password": "...", "encryption_password": "...", "parent_room_id": 12345,
                   "client_id": "...", "client_secret": "...", "verify_tls": true},
       "targets": [{"meetingTypeId": 14, "copyTo": [{"path": "$instance/Sales",
                                                     "expiration": "4 years"}]}]}

  ``404`` means the instance does not exist (the job is dead-lettered); ``5xx``, ``401``,
  ``403``, ``429`` and network failures are transient (the job is retried later); any other
  status or a body that is not such an object is a permanent configuration error.
  ``GET {url}/instances`` answers ``{"instances": ["d1", "d2"]}`` (a bare list is accepted).
  Requests carry ``Authorization: Bearer <instances.auth_token>`` when a token is configured
  and ``Accept: application/json``; redirects are not followed (they would carry the token).
  Environment references are *not* expanded in configurator answers: a remote party must not
  be able to read our environment.

Passwords are ``SecretStr`` (masked in reprs) and registered with the log redactor on load.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .cache import CachingInstanceProvider
from .file_source import FileInstanceProvider, load_instances_file
from .http_source import HttpInstanceProvider
from .model import (
    ANY_MEETING_TYPE,
    DracoonAccount,
    InstanceConfigInvalid,
    InstanceProvider,
    TargetRule,
    TargetSpec,
    UnknownInstance,
    normalise_base_url,
    normalise_domain,
    parse_instance,
)

if TYPE_CHECKING:
    from ..config import AppConfig

__all__ = [
    "ANY_MEETING_TYPE",
    "CachingInstanceProvider",
    "DracoonAccount",
    "FileInstanceProvider",
    "HttpInstanceProvider",
    "InstanceConfigInvalid",
    "InstanceProvider",
    "TargetRule",
    "TargetSpec",
    "UnknownInstance",
    "load_instances_file",
    "normalise_base_url",
    "normalise_domain",
    "open_instance_provider",
    "parse_instance",
]


def open_instance_provider(cfg: AppConfig) -> CachingInstanceProvider:
    """The configured source (``instances.source``) behind a TTL cache (``instances.cache_ttl``).

    For ``file`` this reads and validates the whole file now, raising InstanceConfigInvalid
    (a ConfigError) with every problem; for ``http`` nothing is fetched until the first look-up.
    """
    inner: InstanceProvider
    if cfg.instances.source == "http":
        assert cfg.instances.url  # enforced by InstancesConfig
        inner = HttpInstanceProvider(
            cfg.instances.url, defaults=cfg.dracoon, auth_token=cfg.instances.auth_token
        )
    else:
        inner = FileInstanceProvider(cfg.resolve(cfg.instances.file), defaults=cfg.dracoon)
    return CachingInstanceProvider(inner, cfg.instances.cache_ttl)
