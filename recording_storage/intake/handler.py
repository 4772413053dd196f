"""The SQS adapter: one queue message -> its jobs -> ``Transferer.run`` -> a ``JobResult``.

The worker pool knows queue messages and outcomes, the pipeline knows jobs; this is the one
place that joins them: it decodes the body (``decode``), binds each job's log context, runs the
jobs in order and turns an account failure into ``InstanceHeld`` (the account's fault, not the
job's, so the worker holds the message instead of dead-lettering it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import structlog

from ..crypto import WrongPassword
from ..dracoon import AuthenticationFailed
from ..errors import InstanceHeld
from ..logs import Code
from ..sqs import QueueMessage
from ..transfer import Transferer
from .decode import Decoder

__all__ = ["JobResult", "MessageHandler"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class JobResult:
    """What a handler reports on success: the byte count for the job's log line, and the
    instances whose jobs it ran (a success proves that an instance's account works again)."""

    bytes_transferred: int = 0
    instances: tuple[str, ...] = ()
    # Extra fields for the job's summary log line (per-object sha256 and integrity proofs).
    summary: Mapping[str, object] = field(default_factory=dict)


class MessageHandler:
    """The worker pool's handler: ``await handler(msg)`` runs every job the message asks for."""

    def __init__(self, transferer: Transferer, decode: Decoder) -> None:
        self._transferer = transferer
        self._decode = decode

    async def __call__(self, msg: QueueMessage) -> JobResult:
        """Decode the message into jobs, bind their log context, run them."""
        total, instances = 0, set[str]()
        s3_keys: list[str] = []
        node_ids: list[int] = []
        sha256: list[str] = []
        integrity: list[str] = []
        try:
            for job in self._decode(msg.body):
                structlog.contextvars.bind_contextvars(**job.describe())
                s3_keys.extend(job.keys)
                log.info("job_started", s3_keys=list(job.keys), code=Code.TRANSFERER_STATUS)
                try:
                    report = await self._transferer.run(job, files=node_ids)
                except (AuthenticationFailed, WrongPassword) as exc:  # the account's, not the job's
                    raise InstanceHeld(job.instance_domain, exc) from exc
                total += report.bytes_read
                sha256 += report.sha256
                integrity += report.integrity
                instances.add(job.instance_domain)
        finally:
            # For the lines after the job (job_failed_*, the worker's job_finished), whatever
            # the outcome: which sources it was about and which DRACOON files hold them so far.
            structlog.contextvars.bind_contextvars(s3_keys=s3_keys, node_ids=node_ids)
        summary: dict[str, object] = {"integrity": integrity} if integrity else {}
        if sha256:
            summary["sha256"] = sha256
        return JobResult(bytes_transferred=total, instances=tuple(sorted(instances)), summary=summary)
