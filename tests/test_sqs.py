"""JobQueue against moto's server over real HTTP."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from recording_storage.config import AwsConfig, QueueConfig
from recording_storage.errors import ConfigError, PermanentError, TransientError
from recording_storage.sqs import REASON_LIMIT, JobQueue, LeaseLost, QueueMessage
from tests.fixtures.aws import make_aws_config, make_queue_config, random_name
from tests.fixtures.awsproxy import running_proxy

pytestmark = pytest.mark.integration

QueueSetup = tuple[QueueConfig, tuple[str, str]]


async def receive_one(q: JobQueue, wait: int = 1) -> QueueMessage:
    messages = await q.receive(1, wait)
    assert len(messages) == 1, messages
    return messages[0]


async def test_send_receive_delete(aws_config: AwsConfig, job_queue_names: QueueSetup) -> None:
    """A sent job arrives with body, attributes and receive count; delete removes it for good."""
    cfg, (url, dlq_url) = job_queue_names
    async with JobQueue(aws_config, cfg) as q:
        assert (q.url, q.dlq_url) == (url, dlq_url)
        sent_id = await q.send('{"job": 1}', {"origin": "test"})
        msg = await receive_one(q)
        assert (msg.message_id, msg.body, msg.receive_count) == (sent_id, '{"job": 1}', 1)
        assert msg.attribute("origin") == "test"
        assert int(msg.attributes["SentTimestamp"]) > 0
        assert "ApproximateReceiveCount" in msg.attributes
        await q.delete(msg)
        assert await q.receive(10, 0) == []
        attrs = await q.attributes()
    assert attrs["ApproximateNumberOfMessages"] == "0"
    assert attrs["ApproximateNumberOfMessagesNotVisible"] == "0"


async def test_message_repr_hides_body_and_receipt(
    aws_config: AwsConfig, job_queue_names: QueueSetup
) -> None:
    """Bodies carry personal data and receipt handles act as capabilities: neither is in repr."""
    cfg, _ = job_queue_names
    async with JobQueue(aws_config, cfg) as q:
        await q.send("jane.doe@example.com")
        msg = await receive_one(q)
    assert "jane.doe" not in repr(msg)
    assert msg.receipt_handle not in repr(msg)


async def test_receive_leases_the_message(aws_config: AwsConfig, job_queue_names: QueueSetup) -> None:
    """A received message is invisible to other receivers while its lease runs."""
    cfg, _ = job_queue_names
    async with JobQueue(aws_config, cfg) as q:
        await q.send("job")
        await receive_one(q)
        assert await q.receive(10, 0) == []
        assert (await q.attributes())["ApproximateNumberOfMessagesNotVisible"] == "1"


async def test_release_makes_it_visible_and_receive_count_grows(
    aws_config: AwsConfig, job_queue_names: QueueSetup
) -> None:
    """Each release + receive increments ApproximateReceiveCount (the backoff input)."""
    cfg, _ = job_queue_names
    async with JobQueue(aws_config, cfg) as q:
        await q.send("job")
        counts = []
        for _ in range(3):
            msg = await receive_one(q)
            counts.append(msg.receive_count)
            await q.release(msg)
    assert counts == [1, 2, 3]


async def test_negative_visibility_is_clamped_to_zero(
    aws_config: AwsConfig, job_queue_names: QueueSetup
) -> None:
    """change_visibility clamps instead of sending SQS an invalid value."""
    cfg, _ = job_queue_names
    async with JobQueue(aws_config, cfg) as q:
        await q.send("job")
        msg = await receive_one(q)
        await q.change_visibility(msg, -5)
        again = await receive_one(q, wait=0)
    assert again.message_id == msg.message_id


async def test_lease_beyond_twelve_hours_is_a_distinct_transient_error(
    aws_config: AwsConfig, job_queue_names: QueueSetup
) -> None:
    """Huge values are clamped to 12 h; SQS's total-lease cap then surfaces as visibility_limit."""
    cfg, _ = job_queue_names
    async with JobQueue(aws_config, cfg) as q:
        await q.send("job")
        msg = await receive_one(q)
        with pytest.raises(TransientError) as err:
            await q.change_visibility(msg, 10**6)
    assert not isinstance(err.value, LeaseLost)
    assert err.value.code == "visibility_limit"


async def test_release_with_delay_keeps_it_hidden(aws_config: AwsConfig, job_queue_names: QueueSetup) -> None:
    """A transient failure's release delay keeps the message away for that long."""
    cfg, _ = job_queue_names
    async with JobQueue(aws_config, cfg) as q:
        await q.send("job")
        msg = await receive_one(q)
        await q.release(msg, delay=600)
        assert await q.receive(10, 0) == []


async def test_stale_receipt_handle_is_lease_lost(aws_config: AwsConfig, job_queue_names: QueueSetup) -> None:
    """Extending a lease we no longer hold raises LeaseLost; releasing it is a no-op."""
    cfg, _ = job_queue_names
    async with JobQueue(aws_config, cfg) as q:
        await q.send("job")
        msg = await receive_one(q)
        await q.delete(msg)
        with pytest.raises(LeaseLost) as err:
            await q.change_visibility(msg, 60)
        assert isinstance(err.value, TransientError)
        assert err.value.code == "lease_lost"
        bogus = QueueMessage(message_id="x", receipt_handle="not-a-handle", body="")
        with pytest.raises(LeaseLost):
            await q.change_visibility(bogus, 60)
        await q.release(bogus)  # the goal (not holding it) is already met


async def test_receive_clamps_batch_size(aws_config: AwsConfig, job_queue_names: QueueSetup) -> None:
    """Asking for more than 10 (or fewer than 1) messages is clamped, not rejected by SQS."""
    cfg, _ = job_queue_names
    async with JobQueue(aws_config, cfg) as q:
        for i in range(12):
            await q.send(f"job-{i}")
        first = await q.receive(50, 0)
        second = await q.receive(0, 0)
    assert 1 <= len(first) <= 10
    assert len(second) == 1


async def test_dead_letter_moves_message_with_reason(
    aws_config: AwsConfig, job_queue_names: QueueSetup
) -> None:
    """The DLQ gets the original body and attributes plus the reason; the main queue is empty."""
    cfg, _ = job_queue_names
    reason = "room not encrypted; see https://s3.example/b/k?X-Amz-Signature=SECRETSIG " + "é" * 2000
    async with JobQueue(aws_config, cfg) as q:
        await q.send('{"job": "poison"}', {"origin": "producer"})
        first = await receive_one(q)
        await q.release(first)
        msg = await receive_one(q)
        await q.dead_letter(msg, "room_not_encrypted", reason)
        assert await q.receive(10, 0) == []
        attrs = await q.attributes()
    assert attrs["ApproximateNumberOfMessages"] == "0"
    assert attrs["ApproximateNumberOfMessagesNotVisible"] == "0"

    assert cfg.dlq_name is not None
    async with JobQueue(aws_config, make_queue_config(cfg.dlq_name)) as dlq:
        dead = await receive_one(dlq)
    assert dead.body == '{"job": "poison"}'
    assert dead.attribute("rs-reason-code") == "room_not_encrypted"
    assert dead.attribute("rs-source-message-id") == msg.message_id
    assert dead.attribute("rs-receive-count") == "2"
    assert dead.attribute("origin") == "producer"
    text = dead.attribute("rs-reason")
    assert text is not None and text.startswith("room not encrypted")
    assert len(text.encode("utf-8")) <= REASON_LIMIT
    assert "SECRETSIG" not in text


async def test_dead_letter_without_dlq_releases_for_max_backoff(
    aws_config: AwsConfig, job_queue_names: QueueSetup
) -> None:
    """Without a DLQ the message is not deleted: it is parked for the longest backoff, loudly."""
    cfg, _ = job_queue_names
    no_dlq = make_queue_config(cfg.name, None, retry_backoff_max=600)
    async with JobQueue(aws_config, no_dlq) as q:
        assert q.dlq_url is None
        await q.send("job")
        msg = await receive_one(q)
        with capture_logs() as logs:
            await q.dead_letter(msg, "invalid_message", "bad")
        assert await q.receive(10, 0) == []
        assert (await q.attributes())["ApproximateNumberOfMessagesNotVisible"] == "1"
    [entry] = [e for e in logs if e["event"] == "sqs_no_dlq_permanent_failure_released"]
    assert entry["log_level"] == "error"
    assert entry["reason_code"] == "invalid_message"


async def test_create_queues_sets_redrive_policy(aws_config: AwsConfig, job_queue_names: QueueSetup) -> None:
    """The helper wires the DLQ into the main queue's RedrivePolicy."""
    cfg, (_, dlq_url) = job_queue_names
    async with JobQueue(aws_config, cfg) as q:
        policy = json.loads((await q.attributes())["RedrivePolicy"])
    assert cfg.dlq_name is not None
    assert policy["deadLetterTargetArn"].endswith(":" + cfg.dlq_name)
    assert int(policy["maxReceiveCount"]) == 5
    assert dlq_url.endswith("/" + cfg.dlq_name)


# -- queue URL resolution ----------------------------------------------------------------------


async def test_topics_file_maps_name_to_url(
    aws_config: AwsConfig, job_queue_names: QueueSetup, tmp_path: Path
) -> None:
    """A name in the topics file (relative to base_dir) resolves to its URL without GetQueueUrl."""
    cfg, (url, dlq_url) = job_queue_names
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "topics.yml").write_text(
        f"recordings-transferring: {url}\nrecordings-dlq: {dlq_url}\n", encoding="utf-8")
    alias = make_queue_config("recordings-transferring", "recordings-dlq",
                              topics_file=Path("conf/topics.yml"))
    async with JobQueue(aws_config, alias, base_dir=tmp_path) as q:
        assert (q.url, q.dlq_url) == (url, dlq_url)
        await q.send("via alias")
    async with JobQueue(aws_config, cfg) as direct:
        assert (await receive_one(direct)).body == "via alias"


async def test_name_absent_from_topics_file_uses_get_queue_url(
    aws_config: AwsConfig, job_queue_names: QueueSetup, tmp_path: Path
) -> None:
    """An existing topics file without the name falls back to GetQueueUrl; so does no file."""
    cfg, (url, dlq_url) = job_queue_names
    (tmp_path / "topics.yml").write_text("some-other-queue: https://sqs.example/1/other\n", encoding="utf-8")
    for topics in (Path("topics.yml"), Path("missing.yml")):
        with_file = cfg.model_copy(update={"topics_file": topics})
        async with JobQueue(aws_config, with_file, base_dir=tmp_path) as q:
            assert (q.url, q.dlq_url) == (url, dlq_url)


async def test_unknown_queue_fails_at_start(aws_config: AwsConfig) -> None:
    """A queue that exists nowhere is a permanent error on entry, naming the config key."""
    cfg = make_queue_config(random_name("rs-nope"))
    with pytest.raises(PermanentError) as err:
        async with JobQueue(aws_config, cfg):
            pass
    assert err.value.code == "queue_missing"
    assert "queue.name" in str(err.value)


async def test_malformed_topics_file_is_config_error(aws_config: AwsConfig, tmp_path: Path) -> None:
    """A topics file that is not a name -> URL map is reported as a configuration error."""
    (tmp_path / "topics.yml").write_text("- just\n- a list\n", encoding="utf-8")
    cfg = make_queue_config("q", topics_file=Path("topics.yml"))
    with pytest.raises(ConfigError):
        async with JobQueue(aws_config, cfg, base_dir=tmp_path):
            pass
    (tmp_path / "topics.yml").write_text("q: 42\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        async with JobQueue(aws_config, cfg, base_dir=tmp_path):
            pass
    assert "q" in str(err.value)


# -- client settings ---------------------------------------------------------------------------


async def test_long_poll_outlives_a_short_read_timeout(moto_server: str, job_queue_names: QueueSetup) -> None:
    """The SQS client's read timeout is raised above the long-poll wait, so an empty poll is not an error."""
    cfg, _ = job_queue_names
    aws = make_aws_config(moto_server, read_timeout=1.0, max_attempts=1)
    async with JobQueue(aws, cfg) as q:
        started = time.monotonic()
        assert await q.receive(1, 2) == []
    assert time.monotonic() - started >= 1.5


async def test_plain_http_to_remote_queue_endpoint_is_refused() -> None:
    """The same endpoint policy applies to SQS: no clear-text http beyond loopback without opt-in."""
    aws = AwsConfig(endpoint_url="http://sqs.internal.example:9324")
    with pytest.raises(ConfigError) as err:
        async with JobQueue(aws, make_queue_config("q")):
            pass
    assert "allow_insecure_http" in str(err.value)


async def test_deletes_together_share_one_batch_call(moto_server: str, job_queue_names: QueueSetup) -> None:
    """Deletes issued together go out as one DeleteMessageBatch; each caller gets its own outcome
    (a stale handle among them is LeaseLost, the others are deleted for good)."""
    cfg, _ = job_queue_names
    async with running_proxy(moto_server) as aws_proxy, JobQueue(make_aws_config(aws_proxy.url), cfg) as q:
        for n in range(3):
            await q.send(f"job {n}")
        messages = await q.receive(10, 1)
        while len(messages) < 3:
            messages += await q.receive(10, 1)
        bogus = QueueMessage(message_id="x", receipt_handle="not-a-handle", body="")
        results = await asyncio.gather(*(q.delete(m) for m in [*messages, bogus]), return_exceptions=True)
        assert results[:3] == [None, None, None]
        assert isinstance(results[3], LeaseLost) and results[3].code == "lease_lost"
        assert aws_proxy.count("sqs:DeleteMessageBatch") == 1
        assert aws_proxy.count("sqs:DeleteMessage") == 0
        assert await q.receive(10, 0) == []
        attrs = await q.attributes()
    assert attrs["ApproximateNumberOfMessagesNotVisible"] == "0"


async def test_lingering_delete_is_sent_before_the_queue_closes(aws_config: AwsConfig,
                                                                job_queue_names: QueueSetup) -> None:
    """A delete still waiting for batch-mates when the client closes is sent, not dropped."""
    cfg, _ = job_queue_names
    async with JobQueue(aws_config, cfg) as q:
        await q.send("job")
        msg = await receive_one(q)
        pending = asyncio.create_task(q.delete(msg))
        await asyncio.sleep(0)  # queued, its linger not yet over
    await pending
    async with JobQueue(aws_config, cfg) as q:
        attrs = await q.attributes()
    counts = (attrs["ApproximateNumberOfMessages"], attrs["ApproximateNumberOfMessagesNotVisible"])
    assert counts == ("0", "0")
