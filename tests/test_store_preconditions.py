"""S3-compatible stores that do not enforce preconditions: the service checks them itself.

The fault proxy plays three stores: AWS (honours ``If-Match`` on GET and DELETE), one that
ignores ``If-Match`` everywhere, and one that ignores it on GET and refuses a conditional DELETE
with 501 (``NotImplemented``). For each, the source is overwritten (same size, or shrunk so the
later ranges are unsatisfiable) at each point of a transfer, and the promises are checked: the
file in DRACOON is exactly one version, never a mix; no version is deleted that was not
transferred; the job ends as docs/operations.md says. Ranges are read one at a time, so "between
ranges" means the same thing on every run.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Literal

import pytest
import structlog

from recording_storage.checks import PROBE_PREFIX, run_checks
from recording_storage.config import BucketSourceConfig
from recording_storage.s3 import S3Source
from tests.fixtures.awsproxy import AwsCall, AwsFaultProxy, StoreBehaviour, running_proxy
from tests.fixtures.service import Stack, blob, dead_letters, job_message, live_channels, proxied

pytestmark = pytest.mark.integration

KEY = "rec/call.mp4"
SIZE = 150_000  # three 64 KiB ranges
OLD = blob(SIZE, 1)
NEW = {"same-size": blob(SIZE, 2), "shrunk": blob(60_000, 2)}  # shrunk: ranges 2 and 3 are 416

STORES = {
    "aws": StoreBehaviour(),
    "ignores-if-match": StoreBehaviour(if_match_get="ignore", if_match_delete="ignore"),
    "refuses-conditional-delete": StoreBehaviour(if_match_get="ignore", if_match_delete="refuse"),
}


@dataclass(frozen=True)
class Point:
    """Where in the transfer the overwrite happens: on the ``nth`` matching S3 call (0-based),
    before it reaches the store, or (``after_answer``) once the store answered it."""

    matches: Callable[[AwsCall], bool]
    nth: int
    after_answer: bool = False


def _get(call: AwsCall) -> bool:
    return call.op == "s3:GetObject"


def _head_or_delete(call: AwsCall) -> bool:
    return call.op in ("s3:HeadObject", "s3:DeleteObject")


POINTS = {
    "before-first-range": Point(_get, 0),
    "between-ranges": Point(_get, 1),
    "after-last-range": Point(_get, 2, after_answer=True),
    # The first S3 call on the key after the pinning HEAD: the delete step begins.
    "before-delete": Point(_head_or_delete, 1),
}


@pytest.fixture(params=[True, False], ids=["direct-http", "botocore-http"])
def stack_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Every scenario against both range readers: the promises must not depend on which one."""
    return {"s3": {"parallel_ranges": 1, "direct_http": request.param}}


@pytest.fixture
async def proxy(moto_server: str) -> AsyncIterator[AwsFaultProxy]:
    async with running_proxy(moto_server) as started:
        yield started


async def s3_content(stack: Stack, key: str = KEY) -> bytes | None:
    """The key's current bytes in S3 (read directly, not through the proxy), or None if gone."""
    if not await stack.exists(key):
        return None
    async with S3Source(stack.config.aws, stack.config.s3) as s3:
        info = await s3.head(stack.bucket, key)
        return b"".join([bytes(c) async for c in s3.iter_chunks(info)])


def overwrite_at(stack: Stack, proxy: AwsFaultProxy, point: Point, data: bytes) -> None:
    """Replace the source with ``data`` at ``point`` (once)."""

    async def overwrite(call: AwsCall) -> None:
        await stack.put(KEY, data)

    proxy.add("*", "hook", when=point.matches, after=point.nth, count=1, hook=overwrite,
              hook_after=point.after_answer)


def with_section(stack: Stack, section: str, **changes: Any) -> Stack:
    """The stack with some settings of one config section changed."""
    changed = getattr(stack.config, section).model_copy(update=changes)
    return dataclasses.replace(stack, config=stack.config.model_copy(update={section: changed}))


def host(n: int) -> dict[str, str]:
    """A meeting host of its own, so two jobs' files get different names."""
    return {"name": f"Host {n}", "email": f"host{n}@example.com"}


async def enable_versioning(stack: Stack) -> None:
    async with S3Source(stack.config.aws, stack.config.s3) as s3:
        await s3._client.put_bucket_versioning(  # test set-up only
            Bucket=stack.bucket, VersioningConfiguration={"Status": "Enabled"}
        )


async def versions(stack: Stack) -> list[str]:
    async with S3Source(stack.config.aws, stack.config.s3) as s3:
        resp = await s3._client.list_object_versions(Bucket=stack.bucket, Prefix=KEY)
    return [v["ETag"] for v in resp.get("Versions", [])]


def landed(stack: Stack) -> bytes:
    """The one file in the room, decrypted; there must be exactly one."""
    files = stack.files("Calls")
    assert len(files) == 1, [f.name for f in files]
    return stack.decrypt(files[0], stack.dracoon.service_user)


async def assert_promises(stack: Stack, new: bytes) -> bytes:
    """One version in DRACOON, never a mix; a source deleted only if it is what landed."""
    content = landed(stack)
    assert content in (OLD, new), "the stored file mixes two versions"
    left = await s3_content(stack)
    if left is None:
        assert content == new, "the source was deleted, but its last version never landed"
    else:
        assert left == new, "the surviving source is not the newest version"
    assert live_channels(stack) == []
    assert await stack.queue_counts() == (0, 0, 0)
    return content


@pytest.mark.parametrize("size", list(NEW))
@pytest.mark.parametrize("point", list(POINTS))
@pytest.mark.parametrize("store", list(STORES))
async def test_overwrite_at_any_point_lands_one_version(
    stack: Stack, proxy: AwsFaultProxy, store: str, point: str, size: str
) -> None:
    """Overwritten while its ranges are read: the job fails transiently (SourceChanged, from the
    store's 412, a wrong ETag in the answer or a 416) and the redelivery transfers and deletes
    the new version. Overwritten after the last range was read: the old version was read whole,
    it lands, and the pre-delete HEAD spares the new version."""
    proxy.store = STORES[store]
    svc = proxied(stack, proxy)
    new = NEW[size]
    overwrite_at(stack, proxy, POINTS[point], new)
    await stack.publish(KEY, OLD)

    stats = await svc.drain()

    content = await assert_promises(stack, new)
    if point in ("before-first-range", "between-ranges"):
        assert stats.outcomes == {"transient": 1, "success": 1}
        assert content == new and await s3_content(stack) is None
    else:
        assert stats.outcomes == {"success": 1}
        assert content == OLD and await s3_content(stack) == new


@pytest.mark.parametrize("store", ["aws", "refuses-conditional-delete"])
async def test_overwrite_between_head_and_delete_is_spared(
    stack: Stack, proxy: AwsFaultProxy, store: str
) -> None:
    """The overwrite lands after the pre-delete HEAD, on the DELETE itself: AWS refuses the
    DELETE (If-Match); a store that refuses conditional deletes makes the service HEAD again."""
    proxy.store = STORES[store]
    svc = proxied(stack, proxy)
    overwrite_at(stack, proxy, Point(lambda c: c.op == "s3:DeleteObject", 0), NEW["same-size"])
    await stack.publish(KEY, OLD)

    stats = await svc.drain()

    assert stats.outcomes == {"success": 1}
    assert await assert_promises(stack, NEW["same-size"]) == OLD
    assert await s3_content(stack) == NEW["same-size"]


async def test_store_ignoring_if_match_on_delete_needs_versioning(
    stack: Stack, proxy: AwsFaultProxy
) -> None:
    """The documented race window: a store that silently ignores If-Match on DELETE deletes a
    version written between the pre-delete HEAD and the DELETE. On a versioned bucket the service
    deletes the pinned version id, so the new version survives whatever the store ignores."""
    proxy.store = STORES["ignores-if-match"]
    svc = proxied(stack, proxy)
    on_delete = Point(lambda c: c.op == "s3:DeleteObject", 0)
    overwrite_at(stack, proxy, on_delete, NEW["same-size"])
    await stack.publish(KEY, OLD)
    assert (await svc.drain()).outcomes == {"success": 1}
    assert landed(stack) == OLD
    assert await s3_content(stack) is None  # the window: unversioned, nothing can prevent it

    stack.dracoon.state.delete_node(stack.files("Calls")[0].id)
    await enable_versioning(stack)
    overwrite_at(stack, proxy, on_delete, NEW["same-size"])
    await stack.publish(KEY, OLD)
    assert (await svc.drain()).outcomes == {"success": 1}
    assert landed(stack) == OLD
    assert await s3_content(stack) == NEW["same-size"]
    assert len(await versions(stack)) == 1  # the transferred version, and only it, is gone


@pytest.mark.parametrize("store", list(STORES))
async def test_versioned_bucket_reads_the_pinned_version_whatever_happens(
    stack: Stack, proxy: AwsFaultProxy, store: str
) -> None:
    """With versioning, every range names the pinned version id: an overwrite between ranges does
    not touch what is read, the old version lands whole, and only that version is deleted."""
    await enable_versioning(stack)
    proxy.store = STORES[store]
    svc = proxied(stack, proxy)
    overwrite_at(stack, proxy, POINTS["between-ranges"], NEW["same-size"])
    await stack.publish(KEY, OLD)

    stats = await svc.drain()

    assert stats.outcomes == {"success": 1}
    assert await assert_promises(stack, NEW["same-size"]) == OLD
    assert len(await versions(stack)) == 1
    deletes = [c for c in proxy.calls if c.op == "s3:DeleteObject"]
    assert len(deletes) == 1 and "versionId=" in deletes[0].query


@pytest.mark.parametrize("status", [501, 400])
async def test_refused_conditional_delete_is_learned_once_per_bucket(
    stack: Stack, proxy: AwsFaultProxy, status: Literal[501, 400]
) -> None:
    """501, or 400 naming the header, to DELETE with If-Match: one warning naming the race window,
    and from then on the bucket is deleted with HEAD-compare-DELETE (the second job sends no
    conditional DELETE)."""
    proxy.store = dataclasses.replace(STORES["refuses-conditional-delete"], refusal_status=status)
    svc = proxied(stack, proxy)
    svc = with_section(svc, "workers", count=1)  # jobs in turn: the first learns, the second knows
    for key, seed in (("a/one.mp4", 3), ("a/two.mp4", 4)):
        await stack.publish(key, blob(20_000, seed), user=host(seed))

    with structlog.testing.capture_logs() as logs:
        stats = await svc.drain()

    assert stats.outcomes == {"success": 2}
    warnings = [e for e in logs if e["event"] == "s3_conditional_delete_unsupported"]
    assert len(warnings) == 1 and "HEAD" in warnings[0]["race_window"]
    conditional = [c for c in proxy.calls if c.op == "s3:DeleteObject" and c.if_match]
    assert len(conditional) == 1
    assert not await stack.exists("a/one.mp4") and not await stack.exists("a/two.mp4")
    assert len(stack.files("Calls")) == 2


@pytest.mark.parametrize("per_bucket", [False, True], ids=["global", "per-bucket"])
async def test_required_conditional_delete_keeps_sources_with_a_reason(
    stack: Stack, proxy: AwsFaultProxy, per_bucket: bool
) -> None:
    """``conditional_delete: required`` on a store that refuses it: the first job's source stays
    and its message reaches the DLQ with the reason; the next job of that bucket stops before
    uploading anything."""
    proxy.store = STORES["refuses-conditional-delete"]
    svc = proxied(stack, proxy)
    if per_bucket:
        own = BucketSourceConfig(conditional_delete="required")
        svc = with_section(svc, "s3", buckets={stack.bucket: own})
    else:
        svc = with_section(svc, "s3", conditional_delete="required")
    await stack.publish("a/one.mp4", blob(20_000, 3), user=host(3))
    await stack.put("a/two.mp4", blob(20_000, 4))

    async def second_job(call: AwsCall) -> None:
        await stack.send(job_message(stack.bucket, ["a/two.mp4"], user=host(4)))

    proxy.add("s3:DeleteObject", "hook", hook=second_job, count=1)
    stats = await svc.drain(max_messages=2)

    assert stats.outcomes == {"permanent": 2}
    assert await stack.queue_counts() == (0, 0, 2)
    reasons = await dead_letters(stack)
    assert {code for code, _ in reasons} == {"conditional_delete_unsupported"}
    assert all("conditional_delete" in text and stack.bucket in text for _, text in reasons)
    assert await stack.exists("a/one.mp4") and await stack.exists("a/two.mp4")
    assert len(stack.files("Calls")) == 1  # the first job's file; the second uploaded nothing


async def test_required_conditional_delete_binds_jobs_already_running(
    stack: Stack, proxy: AwsFaultProxy
) -> None:
    """``required``: a job that passed its pre-upload check before another job learned that the
    store refuses conditional deletes keeps its source too; learning the refusal must not turn
    its delete into a HEAD-compare-DELETE. The proxy orders the two jobs: one's conditional
    DELETE waits until the other has pinned its source, and that one's delete step waits until
    the first was dead-lettered."""
    proxy.store = STORES["refuses-conditional-delete"]
    svc = with_section(with_section(proxied(stack, proxy), "s3", conditional_delete="required"),
                       "workers", count=2)
    first, second = "a/one.mp4", "a/two.mp4"
    for key, seed in ((first, 3), (second, 4)):
        await stack.put(key, blob(20_000, seed))
        await stack.send(job_message(stack.bucket, [key], user=host(seed)))

    async def after_second_pinned(call: AwsCall) -> None:
        await proxy.wait_for(lambda: any(c.op == "s3:HeadObject" and c.key == second for c in proxy.calls))

    async def after_first_dead_lettered(call: AwsCall) -> None:
        await proxy.wait_for(lambda: proxy.count("sqs:SendMessage") >= 1)

    proxy.add("s3:DeleteObject", "hook", when=lambda c: c.key == first, count=1, hook=after_second_pinned)
    # The second HEAD of the second key is its delete step's (the first one pinned it).
    proxy.add("s3:HeadObject", "hook", when=lambda c: c.key == second, after=1, count=1,
              hook=after_first_dead_lettered)
    stats = await svc.drain(max_messages=2)

    assert stats.outcomes == {"permanent": 2}
    assert await stack.exists(first) and await stack.exists(second)
    assert [c.if_match is not None for c in proxy.calls if c.op == "s3:DeleteObject"] == [True]
    assert {code for code, _ in await dead_letters(stack)} == {"conditional_delete_unsupported"}


async def test_conditional_delete_off_sends_no_if_match(stack: Stack, proxy: AwsFaultProxy) -> None:
    """``off``: the operator acknowledges HEAD-compare-DELETE; no If-Match, no warning."""
    proxy.store = STORES["refuses-conditional-delete"]
    svc = proxied(stack, proxy)
    svc = with_section(svc, "s3", conditional_delete="off")
    await stack.publish(KEY, OLD)

    with structlog.testing.capture_logs() as logs:
        stats = await svc.drain()

    assert stats.outcomes == {"success": 1}
    assert not [e for e in logs if e["event"] == "s3_conditional_delete_unsupported"]
    assert [c.if_match for c in proxy.calls if c.op == "s3:DeleteObject"] == [None]
    assert landed(stack) == OLD and not await stack.exists(KEY)


async def test_shrunk_object_is_never_a_permanent_invalid_range(stack: Stack, proxy: AwsFaultProxy) -> None:
    """The 416 a store answers for a range past a shrunk object is SourceChanged (transient)."""
    proxy.store = STORES["ignores-if-match"]
    svc = proxied(stack, proxy)
    overwrite_at(stack, proxy, POINTS["between-ranges"], NEW["shrunk"])
    await stack.publish(KEY, OLD)

    with structlog.testing.capture_logs() as logs:
        stats = await svc.drain()

    assert stats.outcomes == {"transient": 1, "success": 1}
    assert [e["error_code"] for e in logs if e["event"] == "job_failed_transient"] == ["source_changed"]
    assert any(c.op == "s3:GetObject" and c.range == "bytes=65536-131071" for c in proxy.calls)
    assert await dead_letters(stack) == []
    assert landed(stack) == NEW["shrunk"]



@pytest.mark.parametrize(
    ("store", "versioned", "mode", "expected"),
    [
        ("aws", False, "auto",
         {"if-match get": ("PASS", "honoured"), "if-match delete": ("PASS", "honoured")}),
        ("ignores-if-match", False, "auto",
         {"if-match get": ("PASS", "ignored"), "if-match delete": ("PASS", "ignored")}),
        ("ignores-if-match", False, "required", {"if-match delete": ("FAIL", "ignored")}),
        ("refuses-conditional-delete", False, "auto", {"if-match delete": ("PASS", "refused")}),
        ("refuses-conditional-delete", False, "required", {"if-match delete": ("FAIL", "refused")}),
        ("refuses-conditional-delete", True, "required",
         {"if-match delete": ("PASS", "refused"), "versioning": ("PASS", "enabled")}),
    ],
    ids=["aws", "ignores", "ignores-required", "refuses", "refuses-required", "refuses-versioned-required"],
)
async def test_check_write_probe_reports_each_capability(
    stack: Stack, proxy: AwsFaultProxy, store: str, versioned: bool, mode: str,
    expected: dict[str, tuple[str, str]],
) -> None:
    """``check --write-probe`` proves per bucket, on an object it writes and removes, what the store
    honours: one line per capability; ``required`` fails a bucket whose store cannot delete
    conditionally (unless versioning makes the condition unnecessary)."""
    if versioned:
        await enable_versioning(stack)
    proxy.store = STORES[store]
    svc = with_section(proxied(stack, proxy), "s3", probe_buckets=(stack.bucket,), conditional_delete=mode)

    out = io.StringIO()
    code = await run_checks(svc.config, write_probe=True, out=out)

    lines = {}
    for line in out.getvalue().splitlines():
        status, _, rest = line.partition(" ")
        name, _, detail = rest.partition(": ")
        lines[name] = (status, detail)
    prefix = f"s3 {stack.bucket}"
    assert lines[f"{prefix} write probe"][0] == "PASS", lines
    assert lines[f"{prefix} range"][0] == "PASS" and "honoured" in lines[f"{prefix} range"][1]
    assert lines[f"{prefix} checksums"] == ("PASS", "HEAD with checksum mode returns CRC32")
    for name, (status, starts) in expected.items():
        got = lines[f"{prefix} {name}"]
        assert got[0] == status and got[1].startswith(starts), (name, got)
    assert (code == 1) == any(status == "FAIL" for status, _ in expected.values())
    assert [c for c in proxy.calls if PROBE_PREFIX in c.path and c.op == "s3:PutObject"]
    async with S3Source(stack.config.aws, stack.config.s3) as s3:
        resp = await s3._client.list_object_versions(Bucket=stack.bucket, Prefix=PROBE_PREFIX)
    assert not resp.get("Versions") and not resp.get("DeleteMarkers"), "the probe left something behind"
