"""The service end to end over real sockets: moto server (S3, SQS) and the DRACOON emulator.

Each test publishes jobs, runs the real service in drain mode and checks what landed in DRACOON,
what is left in S3 and what is left in the queues.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from datetime import datetime, timedelta

import pytest

from recording_storage.expiration import parse_expiration
from recording_storage.service import serve
from recording_storage.targets import MessageJob, parse_content_sha256
from tests.fixtures.service import MEETING_DATE, Stack, blob, job_message

pytestmark = pytest.mark.integration


async def test_job_lands_encrypted_in_new_room_and_source_is_deleted(stack: Stack) -> None:
    """A published job creates its room, uploads an encrypted file both room members can decrypt,
    sets the expiration, deletes the source and leaves no message behind."""
    reader = stack.dracoon.add_user("alice")
    data = blob(200_000)
    await stack.put("rec/call-1.mp4", data)
    await stack.send(
        job_message(stack.bucket, ["rec/call-1.mp4"], [{"path": "Sales/2026", "expiration": "1 year"}])
    )

    stats = await stack.drain()

    assert stats.outcomes == {"success": 1}
    files = stack.files("Sales", "2026")
    assert len(files) == 1
    (file,) = files
    assert file.size == len(data)
    assert stack.decrypt(file, stack.dracoon.service_user) == data
    assert stack.decrypt(file, reader) == data  # the key was served to the other member
    one_year = parse_expiration("1 year")
    assert one_year is not None and file.expire_at is not None
    assert datetime.fromisoformat(file.expire_at) == one_year.expire_at(MEETING_DATE)
    assert not await stack.exists("rec/call-1.mp4")
    assert await stack.queue_counts() == (0, 0, 0)


@pytest.mark.parametrize("size", [0, 1, 64 * 1024 - 1, 64 * 1024, 64 * 1024 + 1, 300_001])
async def test_sizes_round_trip(stack: Stack, size: int) -> None:
    """Zero-byte, one-byte, chunk-boundary and multi-chunk objects arrive byte-exact."""
    data = blob(size, seed=size % 7)
    await stack.put(f"s/{size}.wav", data, content_type="audio/wav")
    await stack.send(job_message(stack.bucket, [f"s/{size}.wav"]))
    stats = await stack.drain()
    assert stats.outcomes == {"success": 1}
    (file,) = stack.files("Calls")
    assert stack.decrypt(file, stack.dracoon.service_user) == data


async def test_only_a_recording_beyond_one_chunk_needs_a_notes_update_for_its_sha256(stack: Stack) -> None:
    """Both files carry their proven SHA-256; the one-chunk recording (s3.chunk_size is 64 KiB
    here) was proven before its upload opened, so only the larger one costs a node update."""
    small, large = blob(1_000, 2), blob(200_000, 3)
    await stack.put("h/small.mp4", small)
    await stack.put("h/large.mp4", large)
    await stack.send(job_message(stack.bucket, ["h/small.mp4", "h/large.mp4"]))
    stack.dracoon.emulator.faults.requests.clear()
    stats = await stack.drain()

    assert stats.outcomes == {"success": 1}
    files = sorted(stack.files("Calls"), key=lambda n: len(n.content))
    assert [parse_content_sha256(f.notes) for f in files] == [
        hashlib.sha256(small).hexdigest(), hashlib.sha256(large).hexdigest()]
    assert [stack.decrypt(f, stack.dracoon.service_user) for f in files] == [small, large]
    requests = stack.dracoon.emulator.faults.requests
    assert requests["POST /api/v4/nodes/files/uploads"] == 2
    assert requests["PUT /api/v4/nodes/files/{file_id}"] == 1, dict(requests)


async def test_multi_key_multi_target_downloads_each_object_once(stack: Stack) -> None:
    """Two keys to three targets: six files, one per key and target, all decrypting to their source."""
    a, b = blob(70_000, 2), blob(1_000, 3)
    await stack.put("m/a.mp4", a)
    await stack.put("m/b.mp4", b)
    targets = [{"path": "One"}, {"path": "Two/Deep"}, {"path": ""}]
    await stack.send(job_message(stack.bucket, ["m/a.mp4", "m/b.mp4"], targets))
    stats = await stack.drain()
    assert stats.outcomes == {"success": 1}
    for path in (("One",), ("Two", "Deep"), ()):
        files = sorted(stack.files(*path), key=lambda n: n.size)
        assert [f.size for f in files] == [len(b), len(a)], path
        assert stack.decrypt(files[0], stack.dracoon.service_user) == b
        assert stack.decrypt(files[1], stack.dracoon.service_user) == a
    assert not await stack.exists("m/a.mp4") and not await stack.exists("m/b.mp4")


@pytest.mark.parametrize("stack_overrides", [{"s3": {"delete_after_transfer": False}}])
async def test_redelivered_job_creates_no_duplicate(stack: Stack) -> None:
    """The same job delivered twice (source kept) leaves exactly one file per target, no "name (1)"."""
    await stack.put("r/x.mp4", blob(5_000))
    body = job_message(stack.bucket, ["r/x.mp4"], [{"path": "Once"}, {"path": "Twice"}])
    await stack.send(body)
    await stack.drain()
    await stack.send(body)
    stats = await stack.drain()
    assert stats.outcomes == {"success": 1}
    for room in ("Once", "Twice"):
        names = [f.name for f in stack.files(room)]
        assert len(names) == 1 and "(1)" not in names[0]
    assert await stack.exists("r/x.mp4")


async def test_one_room_spelt_in_two_cases_keeps_the_longest_retention(stack: Stack) -> None:
    """Issue 13 item 1: "R2" with 10 days and "r2" without expiry are one DRACOON room; the file
    lands there once and never expires (no expiry beats any expiry)."""
    await stack.put("c/x.mp4", blob(3_000))
    targets = [{"path": "R2", "expiration": "10 days"}, {"path": "r2"}]
    await stack.send(job_message(stack.bucket, ["c/x.mp4"], targets))
    stats = await stack.drain()
    assert stats.outcomes == {"success": 1}
    (file,) = stack.files("R2")
    assert file.expire_at is None
    rooms = [n.name for n in stack.dracoon.state.nodes.values() if n.type == "room"]
    assert [r for r in rooms if r.lower() == "r2"] == ["R2"]


@pytest.mark.parametrize("source_left", [True, False], ids=["source-still-there", "source-deleted"])
async def test_files_named_by_the_previous_release_are_recognised_on_redelivery(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, source_left: bool
) -> None:
    """Issue 13 item 7: stems now keep their spaces. A job the previous release uploaded (stem
    "Notes_v1") and that is delivered again after the upgrade is recognised by its marker under
    the old name: no second file named "Notes v1", and no false source_missing when the previous
    release had already deleted the source."""
    keys = ["n/Notes v1.mp3", "n/other.mp3"]
    data = {k: blob(4_000 + i, i) for i, k in enumerate(keys)}
    for k in keys:
        await stack.put(k, data[k], content_type="audio/mpeg")
    body = job_message(stack.bucket, keys, [{"path": "Old"}, {"path": "Names"}])
    new_name = MessageJob.file_name

    def old_name(job: MessageJob, key: str, content_type: str | None) -> str:
        return new_name(job, key, content_type).replace("Notes v1", "Notes_v1")

    with monkeypatch.context() as previous_release:  # spaces in a stem became '_'
        previous_release.setattr(MessageJob, "file_name", old_name)
        await stack.send(body)
        assert (await stack.drain()).outcomes == {"success": 1}
    old_names = sorted(f.name for f in stack.files("Old"))
    assert any("--Notes_v1.mp3" in n for n in old_names)

    if source_left:  # a crash before the delete: the same objects are still there
        for k in keys:
            await stack.put(k, data[k], content_type="audio/mpeg")
    await stack.send(body)
    stats = await stack.drain()

    assert stats.outcomes == {"success": 1}
    for room in ("Old", "Names"):
        assert sorted(f.name for f in stack.files(room)) == old_names
    assert await stack.queue_counts() == (0, 0, 0)


async def test_permanent_failures_go_to_dlq_with_reason_and_others_still_complete(stack: Stack) -> None:
    """Invalid and missing-source jobs are dead-lettered with a reason; a good job around them lands."""
    await stack.send("this is not json")
    await stack.send(job_message(stack.bucket, ["missing/key.mp4"]))
    await stack.publish("g/ok.mp4", blob(10))
    stats = await stack.drain()
    assert stats.outcomes == {"success": 1, "permanent": 2}
    assert len(stack.files("Calls")) == 1
    dead = await stack.dlq_messages()
    reasons = sorted(m["MessageAttributes"]["rs-reason-code"]["StringValue"] for m in dead)
    assert reasons == ["invalid_message", "source_missing"]
    visible, in_flight, _ = await stack.queue_counts()
    assert (visible, in_flight) == (0, 0)


async def test_unknown_instance_is_permanent(stack: Stack) -> None:
    """A job for an instance nobody configured is dead-lettered, not retried forever."""
    await stack.put("u/x.mp4", blob(10))
    body = json.loads(job_message(stack.bucket, ["u/x.mp4"]))
    body["instance"]["domain"] = "nobody.example.org"
    await stack.send(json.dumps(body))
    stats = await stack.drain()
    assert stats.outcomes == {"permanent": 1}
    (dead,) = await stack.dlq_messages()
    assert dead["MessageAttributes"]["rs-reason-code"]["StringValue"] == "unknown_instance"
    assert await stack.exists("u/x.mp4")


async def test_transient_dracoon_outage_is_retried_to_success(stack: Stack) -> None:
    """503s on channel creation are retried (client retries, then message redelivery) until the job lands."""
    stack.dracoon.emulator.faults.add(
        method="POST", path=r"/api/v4/nodes/files/uploads$", status=503, count=6
    )
    await stack.publish("t/x.mp4", blob(3_000))
    stats = await stack.drain()
    assert stats.outcomes.get("success") == 1
    assert len(stack.files("Calls")) == 1
    assert await stack.queue_counts() == (0, 0, 0)


@pytest.mark.parametrize("stack_overrides", [{"workers": {"shutdown_grace": 0.2}}])
async def test_sigterm_mid_transfer_releases_and_later_completes_exactly_once(stack: Stack) -> None:
    """Stopping mid-upload cancels the job and releases its message; the next run lands it once."""
    stack.dracoon.emulator.faults.add(method="POST", path=r"/api/v4/uploads/", latency_ms=300)
    data = blob(400_000)
    await stack.publish("sig/x.mp4", data)
    stop = asyncio.Event()
    task = asyncio.create_task(serve(stack.config, stop=stop, install_signals=False))
    for _ in range(200):
        await asyncio.sleep(0.05)
        if any(u["received"] > 0 for u in stack.dracoon.state.summary()["uploads"]):
            break
    stop.set()
    stats = await asyncio.wait_for(task, 30)
    assert stats.outcomes == {"cancelled": 1}
    assert stack.files("Calls") == []
    assert await stack.exists("sig/x.mp4")
    stack.dracoon.emulator.faults.clear()
    stats = await stack.drain()
    assert stats.outcomes == {"success": 1}
    (file,) = stack.files("Calls")
    assert stack.decrypt(file, stack.dracoon.service_user) == data


@pytest.mark.parametrize(
    "instance_extra",
    [
        {
            "targets": [
                {
                    "meetingTypeId": 14,
                    "copyTo": [{"path": "$instance/$meetingType", "expiration": "2 weeks"}],
                },
                {"meetingTypeId": "*any*", "copyTo": [{"path": "All/$year"}]},
            ]
        }
    ],
)
async def test_instance_configured_targets_with_templates(stack: Stack) -> None:
    """Without targets in the message, the instance's per-meeting-type rules and templates apply."""
    await stack.publish("i/x.mp4", blob(2_000), targets=[])
    stats = await stack.drain()
    assert stats.outcomes == {"success": 1}
    (typed,) = stack.files("meet.example.com", "Sales call")
    assert typed.expire_at is not None
    assert datetime.fromisoformat(typed.expire_at) == MEETING_DATE + timedelta(weeks=2)
    (anyfile,) = stack.files("All", str(MEETING_DATE.year))
    assert anyfile.expire_at is None


async def test_metrics_and_health_move_when_jobs_run(stack: Stack) -> None:
    """After a real run, /metrics counts the job, its bytes and DRACOON requests; workers polled."""
    from prometheus_client.parser import text_string_to_metric_families

    from recording_storage import service

    await stack.publish("met/x.mp4", blob(12_345))
    glitch = stack.dracoon.emulator.faults.add(
        method="GET", path=r"^/api/v4/nodes/missingFileKeys$", status=503, count=1
    )
    async with service.open_runtime(stack.config, with_health=False) as rt:
        stats = await service._serve(rt, asyncio.Event(), drain=True, max_messages=None)
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(rt.metrics.render().decode())
            for s in family.samples
        }
        assert rt.health.last_receive_ok is not None
    assert stats.outcomes == {"success": 1}
    assert samples[("recording_storage_jobs_total", (("outcome", "success"),))] == 1
    assert samples[("recording_storage_transferred_bytes_total", ())] == 12_345
    assert samples[("recording_storage_jobs_in_flight", ())] == 0
    dracoon = sum(v for (name, _), v in samples.items() if name == "recording_storage_dracoon_requests_total")
    assert dracoon >= 4  # token, key pair, rooms, channel, chunk, complete, keys...
    assert glitch.fired == 1  # retried inside the client, so the job still succeeded at once
    assert samples[("recording_storage_retries_total", (("system", "dracoon"),))] == 1


@pytest.mark.parametrize("stack_overrides", [{"workers": {"shutdown_grace": 0}}], ids=["no-grace"])
async def test_bytes_count_while_they_move_and_stay_counted_when_cancelled(stack: Stack) -> None:
    """A long transfer moves the byte counter before it ends; a cancelled job keeps what it moved.

    The second upload chunk is held at DRACOON, so the job is parked mid-transfer: the counter
    must already show the chunks read and handed to the upload, then survive the cancellation.
    """
    from prometheus_client.parser import text_string_to_metric_families

    from recording_storage import service
    from tests.fixtures.procs import wait_until

    def sample(rt: service.Runtime, name: str, **labels: str) -> float:
        for family in text_string_to_metric_families(rt.metrics.render().decode()):
            for s in family.samples:
                if s.name == name and s.labels == labels:
                    return s.value
        raise AssertionError(f"{name}{labels} not exposed")

    data = blob(1024 * 1024)
    await stack.publish("met/long.mp4", data)
    held = stack.dracoon.emulator.faults.add(
        method="POST", path=r"^/api/v4/uploads/", latency_ms=120_000, after=1, count=1
    )
    async with service.open_runtime(stack.config, with_health=False) as rt:
        stop = asyncio.Event()
        serving = asyncio.create_task(service._serve(rt, stop, drain=False, max_messages=None))
        try:
            await wait_until(lambda: held.fired == 1, what="the second upload chunk held at DRACOON")
            await wait_until(lambda: sample(rt, "recording_storage_transferred_bytes_total") > 0,
                             what="bytes counted mid-job")
            moving = sample(rt, "recording_storage_transferred_bytes_total")
            assert 0 < moving < len(data)
            assert sample(rt, "recording_storage_jobs_in_flight") == 1
        finally:
            stop.set()
            stats = await serving
        assert stats.outcomes == {"cancelled": 1}
        assert sample(rt, "recording_storage_jobs_total", outcome="cancelled") == 1
        assert sample(rt, "recording_storage_transferred_bytes_total") >= moving


async def test_job_lines_say_what_started_and_how_it_ended(stack: Stack) -> None:
    """job_started names the keys; job_finished carries error_code, the S3 keys and the node ids
    of the files in DRACOON; service_starting names the version."""
    import structlog

    from recording_storage import __version__

    await stack.publish("log/a.mp4", blob(3_000))
    with structlog.testing.capture_logs(processors=[structlog.contextvars.merge_contextvars]) as lines:
        stats = await stack.drain()
    assert stats.outcomes == {"success": 1}
    (starting,) = [e for e in lines if e["event"] == "service_starting"]
    assert starting["version"] == __version__
    (started,) = [e for e in lines if e["event"] == "job_started"]
    assert started["s3_keys"] == ["log/a.mp4"] and started["bucket"] == stack.bucket
    (finished,) = [e for e in lines if e["event"] == "job_finished"]
    (stored,) = stack.files("Calls")
    assert finished["outcome"] == "success" and finished["error_code"] is None
    assert finished["s3_keys"] == ["log/a.mp4"] and finished["node_ids"] == [stored.id]
    assert finished["message_id"] == started["message_id"]

    await stack.send(job_message(stack.bucket, ["log/never-there.mp4"]))
    with structlog.testing.capture_logs(processors=[structlog.contextvars.merge_contextvars]) as lines:
        stats = await stack.drain()
    assert stats.outcomes == {"permanent": 1}
    (finished,) = [e for e in lines if e["event"] == "job_finished"]
    assert (finished["outcome"], finished["error_code"]) == ("permanent", "source_missing")
    assert finished["s3_keys"] == ["log/never-there.mp4"] and finished["node_ids"] == []

    # The first job again, its source deleted already (a crash before its ack): the line still
    # names the file that holds the key.
    await stack.send(job_message(stack.bucket, ["log/a.mp4"]))
    with structlog.testing.capture_logs(processors=[structlog.contextvars.merge_contextvars]) as lines:
        stats = await stack.drain()
    assert stats.outcomes == {"success": 1}
    (finished,) = [e for e in lines if e["event"] == "job_finished"]
    assert finished["s3_keys"] == ["log/a.mp4"] and finished["node_ids"] == [stored.id]
