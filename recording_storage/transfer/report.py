"""``TransferReport``: what one job did, for the per-job log line and metrics."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["TransferReport"]


@dataclass
class TransferReport:
    """Summary of one job, for the per-job log line and metrics."""

    keys: int = 0
    targets: int = 0
    bytes_read: int = 0
    uploaded: int = 0
    already_present: int = 0
    deleted_sources: int = 0
    files: list[int] = field(default_factory=list)
    # Per transferred object, in job order: the plaintext SHA-256 (absent with s3.verify off)
    # and the proof its content was checked with.
    sha256: list[str] = field(default_factory=list)
    integrity: list[str] = field(default_factory=list)

    def add_files(self, node_ids: Iterable[int]) -> None:
        """List each file once: a restarted stream meets the files its failed attempt already
        completed (and listed) again, as ours, and would list them a second time."""
        for node_id in node_ids:
            if node_id not in self.files:
                self.files.append(node_id)
