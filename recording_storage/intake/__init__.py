"""Intake: queue messages into jobs, and jobs' results back to the worker pool.

* ``decode``: a message body -> the jobs it asks for (job messages and S3 event notifications,
  also SNS-wrapped); ``make_decoder(cfg)`` loads the routing rules once.
* ``handler``: ``MessageHandler``, the worker's handler: decode, run each job through
  ``Transferer.run``, report a ``JobResult``.

The layer between the worker pool (above) and the transfer pipeline (below); nothing below
imports it.
"""

from __future__ import annotations

from .decode import Decoder, decode_message, make_decoder
from .handler import JobResult, MessageHandler

__all__ = ["Decoder", "JobResult", "MessageHandler", "decode_message", "make_decoder"]
