"""``recording-storage check`` against moto's server and the DRACOON emulator (real sockets).

A good configuration passes every check; each kind of broken setting fails exactly the check
that proves it, with a reason an operator can act on and without echoing any secret.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import yaml

from recording_storage.checks import PROBE_PREFIX, run_checks
from recording_storage.config import AppConfig
from recording_storage.crypto import KeyPairVersion
from tests.fixtures.keys import make_test_keypair
from tests.fixtures.service import DOMAIN, Stack

pytestmark = pytest.mark.integration

PREFIX = f"dracoon[{DOMAIN}]"


async def checked(config: AppConfig, **kwargs: Any) -> tuple[int, dict[str, tuple[str, str]], str]:
    """Run the checks; returns (exit code, {name: (status, detail)}, the raw output)."""
    out = io.StringIO()
    kwargs.setdefault("config_file", config.base_dir / "app.yaml")
    code = await run_checks(config, out=out, **kwargs)
    text = out.getvalue()
    results: dict[str, tuple[str, str]] = {}
    for line in text.splitlines():
        status, _, rest = line.partition(" ")
        if status in ("PASS", "FAIL", "SKIP", "WARN"):
            name, _, detail = rest.partition(": ")
            assert name not in results, f"check {name!r} printed twice"
            results[name] = (status, detail)
    return code, results, text


def with_queue(config: AppConfig, **changes: Any) -> AppConfig:
    return config.model_copy(update={"queue": config.queue.model_copy(update=changes)})


def with_s3(config: AppConfig, **changes: Any) -> AppConfig:
    return config.model_copy(update={"s3": config.s3.model_copy(update=changes)})


def with_instance(stack: Stack, tmp_path: Path, **changes: Any) -> AppConfig:
    """The stack's config with the instance's ``dracoon`` entry changed (written to a new file)."""
    source = Path(stack.config.instances.file)
    data = yaml.safe_load(source.read_text(encoding="utf-8"))
    data["instances"][DOMAIN]["dracoon"].update(changes)
    target = tmp_path / "instances-changed.yml"
    target.write_text(yaml.safe_dump(data), encoding="utf-8")
    instances = stack.config.instances.model_copy(update={"file": target})
    return stack.config.model_copy(update={"instances": instances})


def secrets_of(stack: Stack) -> list[str]:
    user = stack.dracoon.service_user
    return [user.password, user.encryption_password, stack.dracoon.account().client_secret.get_secret_value()]


async def test_good_configuration_passes_everything(stack: Stack) -> None:
    config = with_s3(stack.config, probe_buckets=(stack.bucket,))
    code, results, text = await checked(config)
    assert code == 0, text
    assert {name: status for name, (status, _) in results.items()} == {
        "config": "PASS", "sqs queue": "PASS", "sqs max receives": "PASS", "sqs dlq": "PASS",
        "sqs dlq backlog": "PASS",
        f"s3 {stack.bucket}": "PASS",
        "instances": "PASS", f"{PREFIX} login": "PASS", f"{PREFIX} key pair": "PASS",
        f"{PREFIX} parent room": "PASS",
    }
    assert stack.queue_cfg.name in results["sqs queue"][1]
    assert results["instances"][1] == f"1 configured: {DOMAIN}"
    assert stack.dracoon.service_user.login in results[f"{PREFIX} login"][1]
    assert results[f"{PREFIX} key pair"][1].startswith("RSA-4096 key pair unlocked")
    assert str(stack.dracoon.parent_room_id) in results[f"{PREFIX} parent room"][1]
    assert text.splitlines()[-1] == "OK: all 10 checks passed"
    assert not any(secret in text for secret in secrets_of(stack))


async def test_no_probe_buckets_is_a_skip_not_a_failure(stack: Stack) -> None:
    code, results, _ = await checked(stack.config)
    assert code == 0
    assert results["s3"][0] == "SKIP" and "no probe_buckets configured" in results["s3"][1]


async def test_wrong_dracoon_password_fails_login_without_echoing_it(stack: Stack, tmp_path: Path) -> None:
    wrong = "Wrong-Login-Pw-77"
    code, results, text = await checked(with_instance(stack, tmp_path, password=wrong))
    assert code == 1
    status, reason = results[f"{PREFIX} login"]
    assert status == "FAIL"
    assert "login" in reason and "password" in reason  # names the setting to fix...
    assert wrong not in text  # ...never its value
    assert results[f"{PREFIX} key pair"] == ("SKIP", "needs a working login")
    assert results[f"{PREFIX} parent room"][0] == "SKIP"
    assert results["sqs queue"][0] == "PASS"  # unrelated checks still ran
    assert text.splitlines()[-1].startswith("FAILED: 1 of")


async def test_wrong_encryption_password_fails_the_unlock(stack: Stack, tmp_path: Path) -> None:
    wrong = "Wrong-Encryption-Pw-77"
    code, results, text = await checked(with_instance(stack, tmp_path, encryption_password=wrong))
    assert code == 1
    assert results[f"{PREFIX} login"][0] == "PASS"
    status, reason = results[f"{PREFIX} key pair"]
    assert status == "FAIL"
    assert "does not unlock the RSA-4096 key pair" in reason and "encryption_password" in reason
    assert wrong not in text
    assert results[f"{PREFIX} parent room"][0] == "PASS"


async def test_unencrypted_parent_room_fails(stack: Stack, tmp_path: Path) -> None:
    env = stack.dracoon
    plain = env.state.add_room("Unencrypted", encrypted=False, admins=[env.service_user.id])
    code, results, _ = await checked(with_instance(stack, tmp_path, parent_room_id=plain.id),
                                     write_probe=True)
    assert code == 1
    status, reason = results[f"{PREFIX} parent room"]
    assert status == "FAIL" and "is not encrypted" in reason and "parent_room_id" in reason
    assert results[f"{PREFIX} write probe"][0] == "SKIP"
    assert env.state.files_in(plain.id) == []


async def test_parent_room_without_create_permission_fails(stack: Stack, tmp_path: Path) -> None:
    env = stack.dracoon
    room = env.state.add_room("Read only", encrypted=True, members={env.service_user.id: "read"})
    code, results, _ = await checked(with_instance(stack, tmp_path, parent_room_id=room.id))
    assert code == 1
    status, reason = results[f"{PREFIX} parent room"]
    assert status == "FAIL" and "'create' permission" in reason


async def test_missing_parent_room_fails(stack: Stack, tmp_path: Path) -> None:
    code, results, _ = await checked(with_instance(stack, tmp_path, parent_room_id=987654))
    assert code == 1
    status, reason = results[f"{PREFIX} parent room"]
    assert status == "FAIL" and "987654 does not exist" in reason


async def test_missing_queue_and_bucket_fail(stack: Stack) -> None:
    config = with_s3(with_queue(stack.config, name="rs-no-such-queue"), probe_buckets=("rs-no-such-bucket",))
    code, results, _ = await checked(config)
    assert code == 1
    status, reason = results["sqs queue"]
    assert status == "FAIL" and "rs-no-such-queue" in reason and "queue.name" in reason
    assert results["sqs dlq"][0] == "PASS"  # the DLQ exists and is checked on its own
    assert results["s3 rs-no-such-bucket"][0] == "FAIL"
    assert results[f"{PREFIX} login"][0] == "PASS"


async def test_max_receives_not_below_the_redrive_limit_fails(stack: Stack) -> None:
    """The fixture queue's RedrivePolicy moves a message on its 6th receive (maxReceiveCount 5):
    a service that gives up only at its 5th would lose the reason to the redrive."""
    code, results, _ = await checked(with_queue(stack.config, max_receives=5))
    assert code == 1
    status, reason = results["sqs max receives"]
    assert status == "FAIL" and "queue.max_receives (5)" in reason and "maxReceiveCount (5)" in reason
    assert "at most 4" in reason and "at least 6" in reason  # what to do, both ways
    code, results, _ = await checked(with_queue(stack.config, max_receives=4))
    assert code == 0 and results["sqs max receives"][0] == "PASS"


async def test_missing_dlq_fails_and_unset_dlq_is_skipped(stack: Stack) -> None:
    code, results, _ = await checked(with_queue(stack.config, dlq_name="rs-no-such-dlq"))
    assert code == 1
    assert results["sqs dlq"][0] == "FAIL" and "rs-no-such-dlq" in results["sqs dlq"][1]
    code, results, _ = await checked(with_queue(stack.config, dlq_name=None))
    assert code == 0 and results["sqs dlq"][0] == "SKIP"


async def test_write_probe_uploads_reads_back_and_leaves_nothing(stack: Stack) -> None:
    env = stack.dracoon
    uploads = env.emulator.faults.add(method="POST", path=r"^/api/v4/nodes/files/uploads$", latency_ms=1)
    deletes = env.emulator.faults.add(method="DELETE", path=r"^/api/v4/nodes$", latency_ms=1)
    downloads = env.emulator.faults.add(method="POST", path=r"/downloads$", latency_ms=1)
    code, results, text = await checked(stack.config, write_probe=True)
    assert code == 0, text
    status, detail = results[f"{PREFIX} write probe"]
    assert status == "PASS" and PROBE_PREFIX in detail and "deleted" in detail
    assert (uploads.seen, downloads.seen, deletes.seen) == (1, 1, 1)
    assert env.state.files_in(env.parent_room_id, recursive=True) == []


async def test_failed_read_back_still_deletes_the_probe(stack: Stack) -> None:
    env = stack.dracoon
    env.emulator.faults.add(method="POST", path=r"/downloads$", status=400, count=1)
    code, results, _ = await checked(stack.config, write_probe=True)
    assert code == 1
    assert results[f"{PREFIX} write probe"][0] == "FAIL"
    assert env.state.files_in(env.parent_room_id, recursive=True) == []


async def test_each_check_has_a_timeout(stack: Stack) -> None:
    stack.dracoon.emulator.faults.add(method="GET", path=r"^/api/v4/user/account$", latency_ms=3000)
    code, results, _ = await checked(stack.config, timeout=1.0)
    assert code == 1
    assert results[f"{PREFIX} login"] == (
        "FAIL", "no answer within 1s; check base_url, login, password and client_id/client_secret "
        f"of instance {DOMAIN}")
    assert results["sqs queue"][0] == "PASS"


async def test_broken_instances_file_fails_the_instances_check(stack: Stack, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text("instances: {meet.example.com: {storage: dracoon, dracoon: {login: x}}}\n",
                      encoding="utf-8")
    config = stack.config.model_copy(
        update={"instances": stack.config.instances.model_copy(update={"file": broken})})
    code, results, _ = await checked(config)
    assert code == 1
    status, reason = results["instances"]
    assert status == "FAIL" and "password" in reason  # names the missing key
    assert not any(name.startswith("dracoon[") for name in results)


@pytest.mark.parametrize(("password", "expected"), [
    (None, "the account also has A, which unlocks too"),
    ("An-Older-Password-1", "the account also has A, which does not unlock with it"),
    ("damaged", "the account also has A, which is unusable (private key does not belong"),
])
async def test_key_pair_check_tells_whether_an_older_pair_unlocks(
    stack: Stack, password: str | None, expected: str
) -> None:
    """An account in DRACOON's key migration: the sharer needs the old "A" pair for old files."""
    older = make_test_keypair(KeyPairVersion.A, *([password] if password not in (None, "damaged") else []),
                              index=7).key_pair.to_json()
    if password == "damaged":  # another pair's private key under this public key
        other = make_test_keypair(KeyPairVersion.A, index=8).key_pair.to_json()
        older = {**older, "privateKeyContainer": other["privateKeyContainer"]}
    stack.dracoon.state.set_key_pair(stack.dracoon.service_user.id, older)
    code, results, text = await checked(stack.config)
    assert code == 0, text  # the strongest pair unlocks: uploads work either way
    status, detail = results[f"{PREFIX} key pair"]
    assert status == "PASS" and detail.startswith("RSA-4096 key pair unlocked") and expected in detail
    assert password in (None, "damaged") or password not in text
