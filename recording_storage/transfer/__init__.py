"""The transfer pipeline: one job from S3 into every target room in DRACOON.

Split by concept, each module's docstring says why it decides what it does:

* ``pipeline``: ``Transferer.run``, the per-job state machine (pin sources, per object: place,
  stream, serve keys; then delete the transferred versions).
* ``placement``: where each file goes in each room and whether it is there already.
* ``streaming``: read once, encrypt once, fan out to the uploads, prove, complete.
* ``dryrun``: ``plan_job``, what ``run`` would do, by the same rules, reading only.
* ``report``: ``TransferReport``, what one job did.

The pipeline takes a ``targets.TransferJob`` and knows neither the queue nor message formats.
"""

from __future__ import annotations

from .dryrun import JobPlan, KeyPlan, TargetPlan, plan_job
from .pipeline import Transferer
from .placement import clash_name
from .report import TransferReport
from .streaming import hash_threads

__all__ = [
    "JobPlan", "KeyPlan", "TargetPlan", "TransferReport", "Transferer", "clash_name", "hash_threads",
    "plan_job",
]
