"""One small error hierarchy, so that every failure is classified once.

Client modules translate library exceptions (aiohttp, botocore) into these at their edge;
the worker decides a message's fate from the class alone: transient -> release and retry
later, permanent -> dead-letter queue with the reason. Messages never carry secrets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

__all__ = [
    "ConfigError",
    "ConfigProblem",
    "CryptoError",
    "ExitCode",
    "InstanceHeld",
    "InvalidJobMessage",
    "JobProblem",
    "PermanentError",
    "RecordingStorageError",
    "StartupError",
    "TransientError",
]


class RecordingStorageError(Exception):
    """Base of every error this service raises on purpose.

    ``code`` is a short machine-readable reason (it goes into DLQ message attributes and
    metrics labels); ``str(error)`` is the human explanation.
    """

    code: str = "error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class TransientError(RecordingStorageError):
    """Worth retrying later: network trouble, 5xx, throttling, a lock held elsewhere."""

    code = "transient"

    def __init__(self, message: str, *, code: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class PermanentError(RecordingStorageError):
    """Retrying cannot help: bad input, missing object, 4xx, quota. Goes to the DLQ."""

    code = "permanent"


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong in the configuration: where (dotted key path), what, and what is allowed."""

    path: str
    message: str
    source: str = ""

    def __str__(self) -> str:
        where = f"{self.source}: " if self.source else ""
        return f"{where}{self.path or '<root>'}: {self.message}"


class ConfigError(PermanentError):
    """The configuration is unusable; carries every problem found, not just the first."""

    code = "config_error"

    def __init__(self, problems: Sequence[ConfigProblem] | str) -> None:
        if isinstance(problems, str):
            problems = [ConfigProblem("", problems)]
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid configuration ({len(self.problems)} problem(s)):\n{lines}")


@dataclass(frozen=True)
class JobProblem:
    """One thing wrong in a job message: the JSON field path and the reason."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path or '<message>'}: {self.message}"


class InvalidJobMessage(PermanentError):
    """A job message that can never succeed as written; lists every problem found."""

    code = "invalid_message"

    def __init__(self, problems: Sequence[JobProblem] | str) -> None:
        if isinstance(problems, str):
            problems = [JobProblem("", problems)]
        self.problems = list(problems)
        super().__init__("invalid job message: " + "; ".join(str(p) for p in self.problems))


class InstanceHeld(TransientError):
    """An account-wide problem of one instance (its service account's login is refused, its
    encryption password does not unlock the key pair): every job of that instance fails alike
    until an operator fixes the credentials, and no job is at fault. The worker holds such jobs
    (puts them back with backoff and a fresh receive count) instead of dead-lettering them."""

    code = "instance_held"

    def __init__(self, instance: str, cause: RecordingStorageError) -> None:
        super().__init__(f"instance {instance}: {cause}", code=cause.code)
        self.instance = instance


class CryptoError(PermanentError):
    """Base of the crypto module's errors (wrong password, bad container, bad tag, ...)."""

    code = "crypto_error"


class StartupError(RecordingStorageError):
    """The service cannot start: a port, queue, bucket or permission it needs is unavailable.

    Its own class so the command line can give it its own exit status (a crash-looping
    container's restarts then say "cannot start" rather than "a job failed"). The message is
    one line: what failed, where, and what to do.
    """

    code = "startup_failed"


class ExitCode(IntEnum):
    """The process exit statuses of every command, documented in docs/operations.md.

    Distinct values let a batch Job, a CronJob or a script tell "all done" from "done, but some
    jobs failed for good" from "stopped before done" without reading logs.
    """

    OK = 0
    FAILED = 1  # a check failed, an instance failed to share, a runtime error
    CONFIG = 2  # invalid configuration or usage
    CANNOT_START = 3  # a port, queue, bucket, permission or the config source is unavailable
    JOBS_DEAD_LETTERED = 4  # bounded run: finished, some jobs failed permanently (in the DLQ)
    JOBS_LEFT_FOR_RETRY = 5  # bounded run: finished, some jobs failed transiently and wait in the queue
    INTERRUPTED = 130  # stopped by a signal before done (bounded run), or forced by a second signal
