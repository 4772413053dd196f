"""``recording-storage plan FILE`` and ``send-job --dry-run``: what a job would do, without doing it.

It decodes the message as the service would (job message or S3 event, same routing rules),
then asks ``transfer.plan_job``, which decides with the worker's own rules: the instance, each
target room (existing, or which segments would be created), each file's name and expiration,
the source marker its notes would carry, and whether an earlier upload would be recognised or a
name clash resolved. It opens S3 and DRACOON for reading only and never touches SQS.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import IO

from .config import AppConfig
from .errors import ExitCode, PermanentError
from .instances import open_instance_provider
from .intake import make_decoder
from .logs import register_secrets
from .pool import DracoonPool
from .s3 import S3Source
from .transfer import JobPlan, plan_job

__all__ = ["plan_message", "render_plan"]


async def plan_message(config: AppConfig, body: str, out: IO[str]) -> int:
    """Print the plan of every job in ``body``; exit status 1 if one would be dead-lettered."""
    secrets = (config.dracoon.client_secret, config.aws.secret_access_key, config.instances.auth_token)
    register_secrets(*[v.get_secret_value() for v in secrets if v is not None and v.get_secret_value()])
    decode = make_decoder(config)
    try:
        jobs = decode(body)
    except PermanentError as exc:
        print(f"would be dead-lettered as {exc.code}: {exc}", file=out)
        return ExitCode.FAILED
    if not jobs:
        print("no job in this message (nothing would happen; the message would be deleted)", file=out)
        return ExitCode.OK
    status = ExitCode.OK
    async with AsyncExitStack() as stack:
        instances = open_instance_provider(config)
        stack.push_async_callback(instances.aclose)
        s3 = await stack.enter_async_context(S3Source(config.aws, config.s3))
        pool = await stack.enter_async_context(DracoonPool(config.dracoon))
        for job in jobs:
            try:
                plan = await plan_job(job, s3=s3, pool=pool, instances=instances,
                                      name_clash=config.dracoon.name_clash)
            except PermanentError as exc:
                print(f"job for {job.instance_domain} ({len(job.keys)} key(s)) would be dead-lettered as "
                      f"{exc.code}: {exc}", file=out)
                status = ExitCode.FAILED
                continue
            print(render_plan(plan), file=out)
    return status


def render_plan(plan: JobPlan) -> str:
    lines = [f"instance {plan.instance}: {plan.login} at {plan.base_url}; bucket {plan.bucket}"]
    for target in plan.targets:
        where = target.path or "<parent room>"
        room = (f"room {target.room_id} exists" if target.room_id is not None
                else f"to be created: {'/'.join(target.to_create)}")
        expires = (f"expires {target.expire_at:%Y-%m-%d %H:%M %Z} ({target.expiration_text})"
                   if target.expire_at is not None else "no expiration")
        lines.append(f"  target {where}: {room}; {expires}")
    for key in plan.keys:
        lines.append(f"  s3://{plan.bucket}/{key.key} ({key.size} bytes, {key.content_type or 'no type'})")
        lines.append(f"    file name {key.file_name!r}; notes marker {key.marker}; integrity={key.integrity}")
        for target, action in zip(plan.targets, key.actions, strict=True):
            lines.append(f"    -> {target.path or '<parent room>'}: {action}")
    return "\n".join(lines)
