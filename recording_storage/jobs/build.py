"""The job message written out: the inverse of ``parse_job_message``, for producers we own.

Tests, the benchmarks and ``local-stack`` all send jobs in the original service's wire format
(original-service.md §1.1). The nesting (``storage.extra["aws.s3"]``, ``storage.extra.dracoon``)
is easy to get subtly wrong by hand, so it is written once, here, next to the parser that reads
it. Values pass through unchecked on purpose: tests build odd and hostile messages with this too,
and the parser is what judges them.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["job_message_body"]


def job_message_body(
    bucket: Any,
    keys: Sequence[Any],
    *,
    domain: Any,
    meeting: Mapping[str, Any],
    targets: Sequence[Any] | None = None,
    alias: str | None = None,
    customer_id: Any = None,
    storage_type: Any = "dracoon",
) -> dict[str, Any]:
    """A job message as a JSON-ready dict (fresh, so callers may change it in place);
    ``json.dumps`` of it is the SQS message body.

    ``meeting`` is the wire ``meeting`` object as is (``id``, ``date``, ``timezone``, ``type``,
    ``user``, ...). ``targets=None`` leaves ``storage.extra.dracoon`` out, so the instance's
    configured targets apply; ``alias`` and ``customer_id`` are written only when given.
    """
    extra: dict[str, Any] = {"aws.s3": {"bucket": bucket, "keys": list(keys)}}
    if targets is not None:
        extra["dracoon"] = {"targets": [dict(t) if isinstance(t, Mapping) else t for t in targets]}
    instance: dict[str, Any] = {"domain": domain}
    if alias is not None:
        instance["alias"] = alias
    body: dict[str, Any] = {
        "storage": {"type": storage_type, "extra": extra},
        "meeting": copy.deepcopy(dict(meeting)),
        "instance": instance,
    }
    if customer_id is not None:
        body["extra"] = {"customerId": customer_id}
    return body

