"""The content of every object is proven against the store's own digest before any upload completes.

Real sockets throughout: the service runs against moto (through the fault proxy of
``tests/fixtures/awsproxy.py``, which plays stores that return no checksum, a wrong one, an
opaque ETag or corrupted bytes) and the DRACOON emulator. Unit tests of the digest arithmetic
use objects moto really stored (single-part, multipart, composite and full-object checksums).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import os
import zlib
from typing import Any

import pytest
import structlog

from recording_storage.config import AwsConfig, S3Config
from recording_storage.integrity import ContentDigest, Proof, StoreDigests, candidate_proofs
from recording_storage.metrics import PREFIX, Metrics
from recording_storage.s3 import S3Source
from recording_storage.targets import (
    notes_with_sha256,
    parse_content_sha256,
    parse_source_marker,
    source_marker,
)
from tests.fixtures.aws import make_s3_config
from tests.fixtures.awsproxy import AwsCall, AwsFaultProxy, via_proxy
from tests.fixtures.service import Stack, blob, job_message

pytestmark = pytest.mark.integration

KEY = "rec/call.mp4"
MIB = 1024**2
BIG_CHUNKS = pytest.mark.parametrize("stack_overrides", [{"s3": {"chunk_size": MIB}}], ids=["1MiB"])


def proxied(stack: Stack, proxy: AwsFaultProxy) -> Stack:
    return dataclasses.replace(stack, config=via_proxy(stack.config, proxy))


def with_s3(stack: Stack, **s3: Any) -> Stack:
    cfg = stack.config
    return dataclasses.replace(stack, config=cfg.model_copy(update={"s3": cfg.s3.model_copy(update=s3)}))


async def put_multipart(stack: Stack, key: str, data: bytes, part: int, **create: Any) -> None:
    """A real multipart upload (moto computes the multipart ETag and any composite checksum)."""
    async with S3Source(stack.config.aws, stack.config.s3) as s3:
        client = s3._client  # test-only: S3Source has no multipart upload of its own
        upload = await client.create_multipart_upload(Bucket=stack.bucket, Key=key, **create)
        algorithm = {k: v for k, v in create.items() if k == "ChecksumAlgorithm"}
        parts = []
        for number, start in enumerate(range(0, len(data), part), 1):
            answer = await client.upload_part(
                Bucket=stack.bucket, Key=key, UploadId=upload["UploadId"], PartNumber=number,
                Body=data[start : start + part], **algorithm,
            )
            parts.append({"PartNumber": number, "ETag": answer["ETag"]}
                         | {k: v for k, v in answer.items() if k.startswith("Checksum")})
        await client.complete_multipart_upload(
            Bucket=stack.bucket, Key=key, UploadId=upload["UploadId"], MultipartUpload={"Parts": parts}
        )


async def run(stack: Stack, data: bytes | None, key: str = KEY) -> tuple[Any, list[dict[str, Any]]]:
    """Publish ``data`` under ``key`` (None: already there, and its job already sent), then drain."""
    if data is not None:
        await stack.publish(key, data)
    with structlog.testing.capture_logs() as logs:
        stats = await stack.drain()
    return stats, [dict(entry) for entry in logs]


def events(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == name]


def live_channels(stack: Stack) -> list[str]:
    return [c.id for c in stack.dracoon.state.uploads.values() if c.status in ("transfer", "finishing")]


async def assert_landed(stack: Stack, data: bytes, logs: list[dict[str, Any]], proof: str) -> None:
    """One file, exactly ``data``; proven with ``proof``; its SHA-256 in the log and the notes."""
    (file,) = stack.files("Calls")
    assert stack.decrypt(file, stack.dracoon.service_user) == data
    sha = hashlib.sha256(data).hexdigest()
    (checked,) = events(logs, "object_integrity")
    assert (checked["integrity"], checked["sha256"]) == (proof, sha)
    (summary,) = events(logs, "job_finished")
    assert (summary["integrity"], summary["sha256"]) == ([proof], [sha])
    assert f"sha256={sha}" in (file.notes or "")
    assert parse_source_marker(file.notes) is not None  # the redelivery marker still parses
    assert live_channels(stack) == []
    assert not await stack.exists(KEY)


async def assert_kept_with_reason(stack: Stack, code: str) -> str:
    """Nothing in DRACOON, no open channel, the source still there, one DLQ message with ``code``."""
    assert not _has_room(stack) or stack.files("Calls") == []
    assert live_channels(stack) == []
    assert await stack.exists(KEY)
    assert await stack.queue_counts() == (0, 0, 1)
    (msg,) = await stack.dlq_messages()
    attrs = msg["MessageAttributes"]
    assert attrs["rs-reason-code"]["StringValue"] == code
    return str(attrs["rs-reason"]["StringValue"])


def _has_room(stack: Stack) -> bool:
    return stack.dracoon.state.find_child(stack.dracoon.parent_room_id, "Calls") is not None


# -- digests of objects moto really stored ---------------------------------------------------


@pytest.mark.parametrize("algorithm", [None, "CRC32", "CRC32C", "SHA1", "SHA256", "CRC64NVME"])
async def test_single_part_checksums_and_md5_etag_are_recomputed(
    aws_config: AwsConfig, s3_bucket: str, algorithm: str | None
) -> None:
    data = os.urandom(200_000)
    async with S3Source(aws_config, make_s3_config()) as s3:
        extra = {"ChecksumAlgorithm": algorithm} if algorithm else {}
        await s3._client.put_object(Bucket=s3_bucket, Key="k", Body=data, **extra)
        info = await s3.head(s3_bucket, "k")
    assert info.digests is not None
    proofs = candidate_proofs(info.digests)
    # botocore sends CRC32 when no algorithm is named; the MD5 ETag is always there as well.
    assert [p.name for p in proofs] == [(algorithm or "CRC32").lower(), "md5"]
    for proof in proofs:
        digest = ContentDigest(proof)
        for start in range(0, len(data), 70_001):  # chunks that match nothing in particular
            digest.update(data[start : start + 70_001])
        result = digest.finish()
        assert (result.actual, result.sha256) == (proof.expected, hashlib.sha256(data).hexdigest())


@pytest.mark.parametrize(
    ("create", "proofs"),
    [
        ({}, ["multipart-md5"]),
        ({"ChecksumAlgorithm": "CRC32", "ChecksumType": "COMPOSITE"}, ["composite-crc32", "multipart-md5"]),
        ({"ChecksumAlgorithm": "SHA256", "ChecksumType": "COMPOSITE"}, ["composite-sha256", "multipart-md5"]),
        ({"ChecksumAlgorithm": "CRC64NVME", "ChecksumType": "FULL_OBJECT"}, ["crc64nvme", "multipart-md5"]),
    ],
    ids=["etag-only", "composite-crc32", "composite-sha256", "full-crc64nvme"],
)
async def test_multipart_objects_are_proven_with_the_reported_part_layout(
    stack: Stack, create: dict[str, str], proofs: list[str]
) -> None:
    data = os.urandom(2 * 5 * MIB + 12_345)
    await put_multipart(stack, "mp", data, 5 * MIB, **create)
    async with S3Source(stack.config.aws, stack.config.s3) as s3:
        info = await s3.head(stack.bucket, "mp")
        assert info.digests is not None
        found = candidate_proofs(info.digests)
        assert [p.name for p in found] == proofs
        for proof in found:
            sizes = await s3.part_sizes(info, proof.parts) if proof.parts else ()
            assert sizes == ((5 * MIB, 5 * MIB, 12_345) if proof.parts else ())
            digest = ContentDigest(proof, sizes or ())
            for start in range(0, len(data), 3 * MIB):  # chunks straddle the part boundaries
                digest.update(data[start : start + 3 * MIB])
            assert digest.finish().actual == proof.expected


async def test_a_listed_part_layout_saves_the_per_part_heads(stack: Stack, aws_proxy: AwsFaultProxy) -> None:
    """AWS lists the parts in GetObjectAttributes (moto does not): one request instead of a
    HEAD per part. The proxy adds the listing AWS would send."""
    sizes = (5 * MIB, 5 * MIB, 12_345)
    data = os.urandom(sum(sizes))
    await put_multipart(stack, "mp", data, 5 * MIB)
    listing = "".join(f"<Part><PartNumber>{n}</PartNumber><Size>{size}</Size></Part>"
                      for n, size in enumerate(sizes, 1))
    answer = (  # what AWS answers (moto leaves ObjectParts out)
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<GetObjectAttributesOutput xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        f"<ObjectParts><TotalPartsCount>3</TotalPartsCount><IsTruncated>false</IsTruncated>{listing}"
        "</ObjectParts></GetObjectAttributesOutput>"
    ).encode()
    listed = aws_proxy.edit("s3:GetObject", when=lambda call: call.range is None, body=lambda _: answer)
    async with S3Source(via_proxy(stack.config, aws_proxy).aws, stack.config.s3) as s3:
        info = await s3.head(stack.bucket, "mp")
        assert info.digests is not None
        (proof,) = candidate_proofs(info.digests)
        assert await s3.part_sizes(info, proof.parts) == sizes
    assert listed.fired == 1
    assert aws_proxy.count("s3:HeadObject") == 1  # the pin only, no HEAD per part


def test_opaque_etags_offer_nothing_and_wrong_layouts_do_not_verify() -> None:
    md5 = hashlib.md5(b"abc").hexdigest()
    assert candidate_proofs(StoreDigests(f'"{md5}"', server_side_encryption="aws:kms")) == []
    assert candidate_proofs(StoreDigests(f'"{md5}"', sse_customer_algorithm="AES256")) == []
    assert candidate_proofs(StoreDigests('"not-an-md5"')) == []
    sse_s3 = StoreDigests(f'"{md5}"', server_side_encryption="AES256")  # SSE-S3 keeps MD5 ETags
    assert [p.name for p in candidate_proofs(sse_s3)] == ["md5"]
    multipart = f'"{md5}-3"'
    # A multipart object's checksum with neither "-N" nor a type could be either kind: unused.
    untyped = StoreDigests(multipart, {"crc32": "AAAAAA=="})
    assert [p.name for p in candidate_proofs(untyped)] == ["multipart-md5"]
    typed = StoreDigests(multipart, {"crc32": "AAAAAA=="}, checksum_type="COMPOSITE")
    assert [(p.name, p.parts) for p in candidate_proofs(typed)] == [
        ("composite-crc32", 3), ("multipart-md5", 3)
    ]
    full = StoreDigests(multipart, {"crc64nvme": "AAAAAAAAAAA="})  # CRC64NVME is always full-object
    assert [p.name for p in candidate_proofs(full)] == ["crc64nvme", "multipart-md5"]
    proof = Proof("multipart-md5", "md5", "x-2", parts=2)
    with pytest.raises(ValueError, match="needs 2 part sizes"):
        ContentDigest(proof, [3])


def test_sha256_joins_the_marker_and_old_markers_still_parse() -> None:
    marker = source_marker("bucket", "rec/call.mp4", '"abc-2"')
    old = "Meeting ID: 7.\n" + "x" * 200 + "\n" + marker  # as versions before the digest wrote it
    assert parse_source_marker(old) == marker and parse_content_sha256(old) is None
    sha = hashlib.sha256(b"content").hexdigest()
    new = notes_with_sha256(old, sha)
    assert len(new) <= 255 and new.startswith("Meeting ID: 7.")
    assert parse_source_marker(new) == marker  # redelivery recognition is unchanged
    assert parse_content_sha256(new) == sha
    assert notes_with_sha256("no marker here", sha) == "no marker here"


def test_verify_mode_per_bucket_and_the_proof_metric() -> None:
    cfg = S3Config(verify="required", buckets={"kazoo": {"verify": "off"}, "other": {"region": "x"}})
    s3 = S3Source(AwsConfig(), cfg)
    assert [s3.settings(b).verify for b in ("kazoo", "other", "unlisted")] == ["off", "required", "required"]
    metrics = Metrics()
    metrics.integrity_check("composite-crc32", True)
    metrics.integrity_check("crc64nvme", False)
    metrics.integrity_check("made-up", True)
    text = metrics.render().decode()
    assert f'{PREFIX}_integrity_checks_total{{proof="composite-crc32",result="verified"}} 1.0' in text
    assert f'{PREFIX}_integrity_checks_total{{proof="crc64nvme",result="mismatch"}} 1.0' in text
    assert f'{PREFIX}_integrity_checks_total{{proof="other",result="verified"}} 1.0' in text


# -- the service against stores that misbehave --------------------------------------------------


async def test_store_checksum_proves_the_content(stack: Stack) -> None:
    data = blob(150_000)
    stats, logs = await run(stack, data)
    assert stats.outcomes == {"success": 1}
    await assert_landed(stack, data, logs, "crc32")  # botocore's default upload checksum


async def test_a_stated_sha256_goes_into_the_notes_without_an_update(stack: Stack) -> None:
    """The store's SHA-256 is known before the stream and is proven before completion: the notes
    sent when the upload opens carry it, and no node update follows."""
    updates = stack.dracoon.emulator.faults.add(
        method="PUT", path=r"^/api/v4/nodes/files/\d+$", latency_ms=1, name="counter"
    )
    data = blob(150_000)
    async with S3Source(stack.config.aws, stack.config.s3) as s3:
        await s3._client.put_object(Bucket=stack.bucket, Key=KEY, Body=data, ChecksumAlgorithm="SHA256")
    await stack.send(job_message(stack.bucket, [KEY]))
    stats, logs = await run(stack, None)
    assert stats.outcomes == {"success": 1}
    await assert_landed(stack, data, logs, "sha256")
    assert updates.seen == 0


# The store's HEAD without checksums; OPAQUE also turns the ETag into an SSE-KMS one (no MD5).
NO_CHECKSUMS: dict[str, Any] = {"drop": ("x-amz-checksum-",)}
OPAQUE: dict[str, Any] = {**NO_CHECKSUMS, "headers": {"x-amz-server-side-encryption": "aws:kms"}}


@pytest.mark.parametrize(
    ("head", "integrity"),
    [
        pytest.param(NO_CHECKSUMS, "md5", id="no-checksums-falls-back-to-the-md5-etag"),
        pytest.param(OPAQUE, "none", id="nothing-verifiable-is-none-under-auto"),
    ],
)
async def test_without_checksums_the_best_remaining_check_is_logged(
    stack: Stack, aws_proxy: AwsFaultProxy, head: dict[str, Any], integrity: str
) -> None:
    """Under ``verify: auto`` a HEAD without checksums is checked by its MD5 ETag; with none of
    either the recording is still transferred, logged as integrity=none."""
    aws_proxy.edit("s3:HeadObject", **head)
    data = blob(150_000)
    stats, logs = await run(proxied(stack, aws_proxy), data)
    assert stats.outcomes == {"success": 1}
    await assert_landed(stack, data, logs, integrity)


async def test_a_store_refusing_checksum_mode_is_asked_without_it(
    stack: Stack, aws_proxy: AwsFaultProxy
) -> None:
    """Backblaze B2 answers 400 to ``x-amz-checksum-mode``: the HEAD is repeated without it."""
    data = blob(150_000)
    await stack.publish(KEY, data)
    # As B2 does: every HEAD carrying the header is refused, every other one answered. (botocore
    # answers a HEAD's 400 by asking HeadBucket for the region and trying once more, so with
    # s3.direct_http off the refusal fires twice before the HEAD without the header.)
    refused = aws_proxy.add("s3:HeadObject", "error", status=400, code="InvalidArgument",
                            when=lambda call: call.checksum_mode is not None)
    stats, logs = await run(proxied(stack, aws_proxy), None)
    assert stats.outcomes == {"success": 1}
    assert refused.fired >= 1
    assert [c.checksum_mode for c in aws_proxy.calls if c.op == "s3:HeadObject"][-1] is None
    assert len(events(logs, "s3_checksum_mode_refused")) == 1
    await assert_landed(stack, data, logs, "md5")  # no checksum without checksum mode


async def test_nothing_verifiable_is_dead_lettered_under_required(
    stack: Stack, aws_proxy: AwsFaultProxy
) -> None:
    aws_proxy.edit("s3:HeadObject", **OPAQUE)
    stats, _ = await run(with_s3(proxied(stack, aws_proxy), verify="required"), blob(150_000))
    assert stats.outcomes == {"permanent": 1}
    reason = await assert_kept_with_reason(stack, "integrity_unverifiable")
    assert "s3.verify is 'required'" in reason
    assert aws_proxy.count("s3:GetObject") == 0  # refused before reading a byte


async def test_verify_off_hashes_nothing(stack: Stack) -> None:
    data = blob(150_000)
    stats, logs = await run(with_s3(stack, verify="off"), data)
    assert stats.outcomes == {"success": 1}
    (file,) = stack.files("Calls")
    assert stack.decrypt(file, stack.dracoon.service_user) == data
    (summary,) = events(logs, "job_finished")
    assert summary["integrity"] == ["none"] and "sha256" not in summary
    assert "sha256=" not in (file.notes or "")


WRONG_CRC32 = {"headers": {"x-amz-checksum-crc32": "AAAAAA=="}}


async def test_a_wrong_checksum_once_is_read_again_and_lands(stack: Stack, aws_proxy: AwsFaultProxy) -> None:
    edit = aws_proxy.edit("s3:HeadObject", count=1, **WRONG_CRC32)
    data = blob(150_000)
    stats, logs = await run(proxied(stack, aws_proxy), data)
    assert stats.outcomes == {"success": 1}
    assert edit.fired == 1
    (restart,) = events(logs, "integrity_mismatch_restarting")
    assert "AAAAAA==" in restart["error"]
    await assert_landed(stack, data, logs, "crc32")


async def test_a_wrong_checksum_every_time_is_dead_lettered_with_both_digests(
    stack: Stack, aws_proxy: AwsFaultProxy
) -> None:
    aws_proxy.edit("s3:HeadObject", **WRONG_CRC32)
    channels = stack.dracoon.emulator.faults.add(
        method="POST", path=r"^/api/v4/nodes/files/uploads$", latency_ms=1, name="counter"
    )
    data = blob(150_000)
    stats, _ = await run(proxied(stack, aws_proxy), data)
    assert stats.outcomes == {"permanent": 1}
    assert channels.seen == 2  # read and uploaded twice, completed never
    reason = await assert_kept_with_reason(stack, "integrity_mismatch")
    real = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    assert "AAAAAA==" in reason and real in reason, reason
    assert hashlib.sha256(data).hexdigest() in reason


def _flip_one_byte(body: bytes) -> bytes:
    return bytes([body[0] ^ 0xFF]) + body[1:]


def second_range(call: AwsCall) -> bool:
    return (call.range or "").startswith("bytes=65536-")


@pytest.mark.parametrize(("count", "outcome"), [(1, "success"), (None, "permanent")], ids=["once", "always"])
async def test_bytes_corrupted_on_the_way_never_land(
    stack: Stack, aws_proxy: AwsFaultProxy, count: int | None, outcome: str
) -> None:
    """A store (or middlebox) that flips a byte in one range: the length is right, the content is not."""
    aws_proxy.edit("s3:GetObject", body=_flip_one_byte, when=second_range, count=count)
    data = blob(150_000)
    stats, logs = await run(proxied(stack, aws_proxy), data)
    assert stats.outcomes == {outcome: 1}
    if outcome == "success":
        await assert_landed(stack, data, logs, "crc32")
    else:
        reason = await assert_kept_with_reason(stack, "integrity_mismatch")
        assert "read twice with the same result" in reason


@BIG_CHUNKS
@pytest.mark.parametrize(
    ("create", "proof"),
    [({}, "multipart-md5"), ({"ChecksumAlgorithm": "CRC32", "ChecksumType": "COMPOSITE"}, "composite-crc32")],
    ids=["multipart-etag", "composite"],
)
async def test_multipart_source_lands_proven_per_part(
    stack: Stack, aws_proxy: AwsFaultProxy, create: dict[str, str], proof: str
) -> None:
    data = os.urandom(5 * MIB + 300_000)
    await put_multipart(stack, KEY, data, 5 * MIB, **create)
    await stack.send(job_message(stack.bucket, [KEY]))
    stats, logs = await run(proxied(stack, aws_proxy), None)
    assert stats.outcomes == {"success": 1}
    await assert_landed(stack, data, logs, proof)
    assert aws_proxy.count("s3:HeadObject") >= 3  # the pin, then one per part for the layout
