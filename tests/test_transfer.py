"""The transfer pipeline's decisions on their own, against in-memory S3 and DRACOON doubles.

What ``Transferer.run`` decides is what keeps a recording from being lost or duplicated: which
sources it pins before uploading anything, what it counts as already transferred, when it may
delete a source and which version, what a changed or corrupt source does to the open uploads,
how a name clash is resolved, and what a half-failed fan-out still finishes. The doubles in
``tests.fixtures.memory`` keep every upload, key and delete, so each test asserts on what
happened, not on what was called. The crypto is the real one: uploaded ciphertext is decrypted
and compared with the source bytes. The same paths over real HTTP are in test_pipeline_e2e.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from typing import Any, cast

import pytest

from bench._stack import StaticInstances
from recording_storage.config import DracoonConfig, S3Config, SharerConfig, WorkersConfig
from recording_storage.crypto import KeyPairVersion
from recording_storage.errors import PermanentError, TransientError
from recording_storage.jobs import parse_job_message
from recording_storage.pool import DracoonPool
from recording_storage.s3 import S3Source, SourceChanged, SourceMissing
from recording_storage.targets import (
    MessageJob,
    TransferJob,
    parse_content_sha256,
    parse_source_marker,
    source_marker,
)
from recording_storage.transfer import Transferer, TransferReport, clash_name
from recording_storage.transfer.placement import NameClashPolicy
from recording_storage.transfer.streaming import STREAM_ATTEMPTS
from tests.fixtures.accounts import offline_account
from tests.fixtures.keys import make_test_keypair
from tests.fixtures.memory import MemoryDracoon, MemoryPool, MemoryS3, MemoryUpload, shared_hash_threads
from tests.fixtures.service import blob, job_dict

BUCKET = "recordings"
PARENT = 1
MEMBER = 7  # a room member without the file key until the pipeline serves it
OURS = make_test_keypair(KeyPairVersion.A)
THEIRS = make_test_keypair(KeyPairVersion.A, index=1)
ONE_ROOM = [{"path": "Calls", "expiration": ""}]
CUT_OFF = TransientError("completion cut off", code="network")
TWO_ROOMS = [{"path": "Calls", "expiration": ""}, {"path": "Archive", "expiration": ""}]
# s3.chunk_size of a rig whose objects of STREAMED bytes take the chunk by chunk path; objects
# that fit in one chunk are read and proven before their uploads open.
SMALL_CHUNK = 64 * 1024
STREAMED = SMALL_CHUNK + 5000


def make_job(keys: Sequence[str], targets: list[dict[str, Any]] | None = None) -> TransferJob:
    return MessageJob(parse_job_message(json.dumps(job_dict(BUCKET, list(keys), targets or ONE_ROOM))))


class Rig:
    """A Transferer over the memory doubles, with the settings a test varies."""

    def __init__(
        self, *, name_clash: NameClashPolicy = "keep_both", delete: bool = True, chunk_size: int = SMALL_CHUNK
    ) -> None:
        self.s3 = MemoryS3(S3Config(delete_after_transfer=delete, chunk_size=chunk_size))
        self.dracoon = MemoryDracoon(PARENT, members=[(MEMBER, THEIRS.key_pair.public_key_container)])
        self.transferer = Transferer(
            # The doubles have the methods the pipeline calls, not the clients' connection set-up.
            cast(S3Source, self.s3),
            cast(DracoonPool, MemoryPool(self.dracoon, OURS.unlocked)),
            StaticInstances(offline_account(parent_room_id=PARENT)),
            hash_threads=shared_hash_threads(),
            s3_cfg=self.s3.config,
            dracoon_cfg=DracoonConfig(name_clash=name_clash),
            workers_cfg=WorkersConfig(),
            sharer_cfg=SharerConfig(),
        )

    async def run(self, job: TransferJob, files: list[int] | None = None) -> TransferReport:
        return await self.transferer.run(job, files=files)

    def room(self, name: str = "Calls") -> int:
        return self.dracoon.room(PARENT, name).id

    def marker(self, key: str) -> str:
        return source_marker(BUCKET, key, self.s3.etag(BUCKET, key))

    def files_in(self, room: str = "Calls") -> dict[str, int]:
        room_id = self.room(room)
        return {n.name: n.id for n in self.dracoon.nodes.values() if n.parent_id == room_id}


@pytest.fixture
def rig() -> Rig:
    return Rig()


async def test_each_target_gets_the_source_bytes_and_members_get_the_key(rig: Rig) -> None:
    body = blob(5000)
    rig.s3.put(BUCKET, "a.mp4", body)
    marker = rig.marker("a.mp4")
    report = await rig.run(make_job(["a.mp4"], TWO_ROOMS))

    assert report.uploaded == 2 and report.already_present == 0
    assert len(rig.s3.reads) == 1, "read once, fanned out to both rooms"
    for room in ("Calls", "Archive"):
        [file_id] = rig.files_in(room).values()
        assert rig.dracoon.decrypt(file_id, OURS.unlocked) == body
        assert rig.dracoon.decrypt(file_id, THEIRS.unlocked, user_id=MEMBER) == body
        assert parse_source_marker(rig.dracoon.nodes[file_id].notes) == marker
        assert file_id in report.files
    assert [d.key for d in rig.s3.deleted] == ["a.mp4"]


async def test_a_missing_second_source_uploads_nothing(rig: Rig) -> None:
    rig.s3.put(BUCKET, "a.mp4", blob(3000))
    with pytest.raises(SourceMissing):
        await rig.run(make_job(["a.mp4", "b.mp4"]))
    assert rig.dracoon.opened() == [], "every source is pinned before the first upload"
    assert rig.s3.reads == [] and rig.s3.deleted == []
    assert (BUCKET, "a.mp4") in rig.s3.objects


async def test_a_source_every_target_holds_is_not_uploaded_again(rig: Rig) -> None:
    body = blob(2000)
    rig.s3.put(BUCKET, "a.mp4", body)
    job = make_job(["a.mp4"], TWO_ROOMS)
    first = await rig.run(job)
    rig.s3.put(BUCKET, "a.mp4", body)  # the redelivery after a crash before the delete
    second = await rig.run(job)

    assert first.uploaded == 2
    assert second.uploaded == 0 and second.already_present == 2
    assert len(rig.dracoon.opened()) == 2 and len(rig.s3.reads) == 1
    assert sorted(second.files) == sorted(first.files)
    assert len(rig.s3.deleted) == 2, "the version held by every target is deleted"


async def test_a_file_of_the_same_name_but_another_version_is_not_taken_as_done() -> None:
    rig = Rig(name_clash="keep_both")
    rig.s3.put(BUCKET, "a.mp4", blob(2000, seed=1))
    job = make_job(["a.mp4"])
    await rig.run(job)
    rig.s3.put(BUCKET, "a.mp4", blob(2000, seed=2))  # same key, new content: a new version
    report = await rig.run(job)

    assert report.uploaded == 1 and report.already_present == 0
    assert len(rig.files_in()) == 2


async def test_a_source_gone_but_landed_earlier_succeeds_and_deletes_nothing(rig: Rig) -> None:
    rig.s3.put(BUCKET, "a.mp4", blob(2000))
    job = make_job(["a.mp4"], TWO_ROOMS)
    first = await rig.run(job)
    assert (BUCKET, "a.mp4") not in rig.s3.objects  # deleted; the ack is lost, SQS redelivers
    deleted = len(rig.s3.deleted)

    again = await rig.run(job)
    assert sorted(again.files) == sorted(first.files)
    assert again.already_present == 2 and again.uploaded == 0 and again.deleted_sources == 0
    assert len(rig.s3.deleted) == deleted and len(rig.dracoon.opened()) == 2


async def test_a_source_gone_and_landed_in_only_one_target_is_missing(rig: Rig) -> None:
    rig.s3.put(BUCKET, "a.mp4", blob(2000))
    job = make_job(["a.mp4"], TWO_ROOMS)
    await rig.run(job)
    rig.dracoon.remove(next(iter(rig.files_in("Archive").values())))
    with pytest.raises(SourceMissing):
        await rig.run(job)


async def test_no_delete_unless_every_target_holds_the_file(rig: Rig) -> None:
    rig.s3.put(BUCKET, "a.mp4", blob(2000))
    rig.s3.put(BUCKET, "b.mp4", blob(2000, seed=3))
    await rig.dracoon.ensure_room_path(PARENT, ["Archive"])
    rig.dracoon.fail_completion[rig.room("Archive")] = [CUT_OFF] * STREAM_ATTEMPTS
    with pytest.raises(TransientError):
        await rig.run(make_job(["a.mp4", "b.mp4"], TWO_ROOMS))
    assert rig.s3.deleted == [] and len(rig.s3.objects) == 2


async def test_delete_pins_the_transferred_version_and_spares_a_newer_one(rig: Rig) -> None:
    rig.s3.put(BUCKET, "a.mp4", blob(2000))
    pinned = rig.s3.etag(BUCKET, "a.mp4")
    original = rig.dracoon.set_file_keys

    async def overwrite_source_then_serve(items: Any) -> None:
        # A new recording under the same key lands after the upload, before the delete.
        rig.s3.put(BUCKET, "a.mp4", blob(2000, seed=9))
        await original(items)

    rig.dracoon.set_file_keys = overwrite_source_then_serve  # type: ignore[method-assign]
    report = await rig.run(make_job(["a.mp4"]))

    assert report.uploaded == 1 and report.deleted_sources == 0
    assert rig.s3.objects[(BUCKET, "a.mp4")] == blob(2000, seed=9), "the new version survives"
    [file_id] = rig.files_in().values()
    assert parse_source_marker(rig.dracoon.nodes[file_id].notes) == source_marker(BUCKET, "a.mp4", pinned)


async def test_sources_stay_when_delete_after_transfer_is_off() -> None:
    rig = Rig(delete=False)
    rig.s3.put(BUCKET, "a.mp4", blob(2000))
    report = await rig.run(make_job(["a.mp4"]))
    assert report.uploaded == 1 and report.deleted_sources == 0
    assert (BUCKET, "a.mp4") in rig.s3.objects


async def test_a_source_changed_mid_stream_cancels_every_upload(rig: Rig) -> None:
    rig.s3.put(BUCKET, "a.mp4", blob(STREAMED))
    rig.s3.replace_during_read["a.mp4"] = blob(STREAMED, seed=4)
    with pytest.raises(SourceChanged):
        await rig.run(make_job(["a.mp4"], TWO_ROOMS))

    uploads = rig.dracoon.opened()
    assert len(uploads) == 2 and all(u.state == "cancelled" for u in uploads)
    assert rig.dracoon.files == {} and rig.s3.deleted == []


@pytest.mark.parametrize("size", [5000, STREAMED], ids=["one-chunk", "streamed"])
async def test_a_source_removed_mid_stream_that_no_target_holds_is_missing(rig: Rig, size: int) -> None:
    rig.s3.put(BUCKET, "a.mp4", blob(size))
    rig.s3.remove_during_read.add("a.mp4")
    with pytest.raises(SourceMissing):
        await rig.run(make_job(["a.mp4"], TWO_ROOMS))
    opened = rig.dracoon.opened()
    assert len(opened) == (2 if size == STREAMED else 0), "a one-chunk object is read before any upload opens"
    assert all(u.state == "cancelled" for u in opened) and rig.dracoon.files == {}


@pytest.mark.parametrize("size", [3000, STREAMED], ids=["one-chunk", "streamed"])
async def test_the_same_mismatch_twice_is_permanent_and_completes_nothing(rig: Rig, size: int) -> None:
    rig.s3.put(BUCKET, "a.mp4", blob(size))
    rig.s3.corrupt.add("a.mp4")
    with pytest.raises(PermanentError) as caught:
        await rig.run(make_job(["a.mp4"], TWO_ROOMS))

    assert caught.value.code == "integrity_mismatch"
    assert rig.s3.reads == ["a.mp4", "a.mp4"], "read once more from a fresh HEAD before giving up"
    assert rig.dracoon.completed() == [] and rig.dracoon.files == {}
    opened = rig.dracoon.opened()
    # A one-chunk object is proven before its uploads open: a mismatch opens none.
    assert len(opened) == (4 if size == STREAMED else 0)
    assert all(u.state == "cancelled" for u in opened)
    assert (BUCKET, "a.mp4") in rig.s3.objects and rig.s3.deleted == []


async def test_a_mismatch_that_reads_right_the_second_time_transfers(rig: Rig) -> None:
    body = blob(3000)
    rig.s3.put(BUCKET, "a.mp4", body)
    rig.s3.corrupt.add("a.mp4")
    original = rig.s3.head

    async def heal_on_second_head(bucket: str, key: str) -> Any:
        if rig.s3.reads:  # the restart's HEAD: the corruption was on the way, not in the store
            rig.s3.corrupt.discard(key)
        return await original(bucket, key)

    rig.s3.head = heal_on_second_head  # type: ignore[method-assign]
    report = await rig.run(make_job(["a.mp4"]))
    assert report.uploaded == 1 and report.integrity == ["md5"]
    [file_id] = rig.files_in().values()
    assert rig.dracoon.decrypt(file_id, OURS.unlocked) == body


async def _stranger_in_calls(rig: Rig, name: str) -> int:
    room = await rig.dracoon.ensure_room_path(PARENT, ["Calls"])
    return rig.dracoon.add_file(room.id, name, b"someone else's", "no marker").id


async def test_name_clash_fail_is_permanent_and_uploads_nothing() -> None:
    rig = Rig(name_clash="fail")
    rig.s3.put(BUCKET, "a.mp4", blob(2000))
    job = make_job(["a.mp4"])
    stranger = await _stranger_in_calls(rig, job.file_name("a.mp4", "video/mp4"))
    with pytest.raises(PermanentError) as caught:
        await rig.run(job)
    assert caught.value.code == "name_clash"
    assert rig.dracoon.opened() == [] and stranger in rig.dracoon.nodes
    assert rig.s3.deleted == []


async def test_name_clash_overwrite_replaces_the_other_file() -> None:
    rig = Rig(name_clash="overwrite")
    body = blob(2000)
    rig.s3.put(BUCKET, "a.mp4", body)
    job = make_job(["a.mp4"])
    name = job.file_name("a.mp4", "video/mp4")
    stranger = await _stranger_in_calls(rig, name)
    await rig.run(job)

    [upload] = rig.dracoon.completed()
    assert upload.resolution == "overwrite" and stranger not in rig.dracoon.nodes
    assert list(rig.files_in()) == [name]
    assert rig.dracoon.decrypt(rig.files_in()[name], OURS.unlocked) == body


async def test_name_clash_keep_both_uploads_under_the_clash_name() -> None:
    rig = Rig(name_clash="keep_both")
    body = blob(2000)
    rig.s3.put(BUCKET, "a.mp4", body)
    job = make_job(["a.mp4"])
    name = job.file_name("a.mp4", "video/mp4")
    stranger = await _stranger_in_calls(rig, name)
    alt = clash_name(name, rig.marker("a.mp4"))
    await rig.run(job)

    assert alt != name and set(rig.files_in()) == {name, alt}
    assert rig.files_in()[name] == stranger
    assert rig.dracoon.decrypt(rig.files_in()[alt], OURS.unlocked) == body

    rig.s3.put(BUCKET, "a.mp4", body)  # redelivered: the file under the clash name is ours
    again = await rig.run(job)
    assert again.uploaded == 0 and again.already_present == 1


async def test_name_clash_keep_both_with_both_names_taken_is_permanent() -> None:
    rig = Rig(name_clash="keep_both")
    rig.s3.put(BUCKET, "a.mp4", blob(2000))
    job = make_job(["a.mp4"])
    name = job.file_name("a.mp4", "video/mp4")
    await _stranger_in_calls(rig, name)
    await _stranger_in_calls(rig, clash_name(name, rig.marker("a.mp4")))
    with pytest.raises(PermanentError) as caught:
        await rig.run(job)
    assert caught.value.code == "name_clash" and rig.dracoon.opened() == []


async def test_a_failed_target_still_serves_keys_to_the_completed_files(rig: Rig) -> None:
    body = blob(2000)
    rig.s3.put(BUCKET, "a.mp4", body)
    await rig.dracoon.ensure_room_path(PARENT, ["Archive"])
    rig.dracoon.fail_completion[rig.room("Archive")] = [CUT_OFF] * STREAM_ATTEMPTS
    files: list[int] = []
    with pytest.raises(TransientError) as caught:
        await rig.run(make_job(["a.mp4"], TWO_ROOMS), files=files)

    assert caught.value.code == "network", "the target's own failure is raised"
    [landed] = rig.files_in("Calls").values()
    assert rig.files_in("Archive") == {}
    assert files == [landed], "the caller still learns the file that did land"
    assert rig.dracoon.decrypt(landed, THEIRS.unlocked, user_id=MEMBER) == body
    assert rig.s3.deleted == []


async def test_a_completion_cut_off_once_is_restarted_and_each_file_listed_once(rig: Rig) -> None:
    body = blob(2000)
    rig.s3.put(BUCKET, "a.mp4", body)
    await rig.dracoon.ensure_room_path(PARENT, ["Archive"])
    rig.dracoon.fail_completion[rig.room("Archive")] = [CUT_OFF]
    report = await rig.run(make_job(["a.mp4"], TWO_ROOMS))

    landed = [*rig.files_in("Calls").values(), *rig.files_in("Archive").values()]
    assert len(landed) == 2 and sorted(report.files) == sorted(landed)
    assert all(rig.dracoon.decrypt(f, OURS.unlocked) == body for f in landed)
    assert [d.key for d in rig.s3.deleted] == ["a.mp4"]


async def test_a_restarted_object_is_reported_once_with_its_proof(rig: Rig) -> None:
    """The summary line lists one proof and one SHA-256 per object, however often it restarted."""
    body = blob(2000)
    rig.s3.put(BUCKET, "a.mp4", body)
    await rig.dracoon.ensure_room_path(PARENT, ["Archive"])
    rig.dracoon.fail_completion[rig.room("Archive")] = [CUT_OFF]
    report = await rig.run(make_job(["a.mp4"], TWO_ROOMS))

    assert report.sha256 == [hashlib.sha256(body).hexdigest()]
    assert len(report.integrity) == 1


@pytest.mark.parametrize("size", [0, 3000, SMALL_CHUNK, SMALL_CHUNK + 1],
                         ids=["empty", "one-chunk", "one-full-chunk", "streamed"])
async def test_the_proven_sha256_is_recorded_in_every_new_files_notes(rig: Rig, size: int) -> None:
    """An object that fits in one chunk is proven before its uploads open, so they open with its
    SHA-256 and need no notes update; a larger one gets the SHA-256 by an update after completion."""
    body = blob(size)
    rig.s3.put(BUCKET, "a.mp4", body)
    marker = rig.marker("a.mp4")
    report = await rig.run(make_job(["a.mp4"], TWO_ROOMS))

    digest = hashlib.sha256(body).hexdigest()
    assert report.sha256 == [digest]
    assert len(report.files) == 2
    for file_id in report.files:
        notes = rig.dracoon.nodes[file_id].notes
        assert parse_content_sha256(notes) == digest
        assert parse_source_marker(notes) == marker, "the marker still parses"
        assert rig.dracoon.decrypt(file_id, OURS.unlocked) == body
    one_chunk = size <= SMALL_CHUNK
    opened_with = [parse_content_sha256(u.notes) for u in rig.dracoon.opened()]
    assert opened_with == [digest if one_chunk else None] * 2
    assert sorted(rig.dracoon.notes_updates) == ([] if one_chunk else sorted(report.files))


async def test_an_overlapping_delivery_that_completed_first_is_taken_as_ours(rig: Rig) -> None:
    body = blob(2000)
    rig.s3.put(BUCKET, "a.mp4", body)
    job = make_job(["a.mp4"])
    name, marker = job.file_name("a.mp4", "video/mp4"), rig.marker("a.mp4")

    def other_worker_finishes_first(upload: MemoryUpload) -> None:
        rig.dracoon.add_file(upload.parent_id, name, b"", f"another worker's\n{marker}", size=upload.size)

    rig.dracoon.after_open = other_worker_finishes_first
    report = await rig.run(job)

    [ours] = rig.files_in().values()
    assert report.files == [ours] and rig.dracoon.completed() == []
    assert [u.state for u in rig.dracoon.opened()] == ["cancelled"]
    assert [d.key for d in rig.s3.deleted] == ["a.mp4"]


async def test_a_stranger_taking_the_name_during_the_upload_is_a_transient_race(rig: Rig) -> None:
    rig.s3.put(BUCKET, "a.mp4", blob(2000))
    job = make_job(["a.mp4"])
    name = job.file_name("a.mp4", "video/mp4")

    def stranger_takes_the_name(upload: MemoryUpload) -> None:
        rig.dracoon.add_file(upload.parent_id, name, b"other", "no marker")

    rig.dracoon.after_open = stranger_takes_the_name
    with pytest.raises(TransientError) as caught:
        await rig.run(job)
    assert caught.value.code == "name_race"
    assert rig.dracoon.completed() == [] and rig.s3.deleted == []


async def test_an_unencrypted_target_room_is_refused_before_any_read(rig: Rig) -> None:
    rig.s3.put(BUCKET, "a.mp4", blob(2000))
    room = await rig.dracoon.ensure_room_path(PARENT, ["Calls"])
    rig.dracoon.nodes[room.id] = dataclasses.replace(room, is_encrypted=False)
    with pytest.raises(PermanentError) as caught:
        await rig.run(make_job(["a.mp4"]))
    assert caught.value.code == "room_not_encrypted"
    assert rig.s3.heads == [] and rig.dracoon.opened() == []


async def test_with_verify_off_the_content_is_neither_proven_nor_hashed() -> None:
    rig = Rig()
    rig.s3.config = S3Config(verify="off")
    body = blob(2000)
    rig.s3.put(BUCKET, "a.mp4", body)
    rig.s3.corrupt.add("a.mp4")  # nothing proves the content: the wrong bytes go through
    report = await rig.run(make_job(["a.mp4"]))

    assert report.integrity == ["none"] and report.sha256 == []
    [file_id] = rig.files_in().values()
    assert parse_content_sha256(rig.dracoon.nodes[file_id].notes) is None
    assert rig.dracoon.decrypt(file_id, OURS.unlocked) != body
