"""``TransferReport``: what one job did, for the per-job log line and metrics."""

from __future__ import annotations

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
