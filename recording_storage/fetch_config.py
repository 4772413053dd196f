"""Fetch configuration files from an S3 prefix before start (container entry point helper).

The original image pulled its config from S3 at start; operators keep that workflow. Only the
known file names are copied, so a prefix cannot drop arbitrary files into the image.

Every file is optional, but "optional" means "S3 says it does not exist" (404). A 403 is never
read as "missing": S3 answers 403 for a missing key when the role lacks ``s3:ListBucket``, and
for a present key the role may not read, and the two cannot be told apart. Guessing would start
the service on defaults with its real configuration unread, so a 403 stops the start with the
permissions to grant (docs/operations.md, "Configuration from S3").

Failures are one line on stderr (what, where, what to do) and a documented exit status, never a
traceback: a crash-looping container's log then says what is wrong.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from urllib.parse import urlparse

from botocore.config import Config
from botocore.exceptions import ClientError

from .aws import AWS_ERRORS, error_codes, make_session, scrub
from .errors import ExitCode

__all__ = ["FILES", "FetchFailed", "fetch", "main"]

FILES = ("app.yaml", "topics.yml", "instances.yml")
# A crash-looping container should say why quickly; the pod restarts it anyway.
_CLIENT_CONFIG = Config(connect_timeout=5, read_timeout=20,
                        retries={"mode": "standard", "total_max_attempts": 3})


class FetchFailed(Exception):
    """The configuration could not be fetched; the message is the one line to print."""


async def fetch(url: str, dest: Path) -> list[str]:
    """Copy the known config files found under ``s3://bucket/prefix`` into ``dest``.

    Raises FetchFailed when a file cannot be read (other than not existing), when the bucket
    does not exist or S3 cannot be reached, or when the prefix holds none of the files.
    """
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"RECORDING_STORAGE_CONFIG_S3_URL must look like s3://bucket/prefix, got {url!r}")
    bucket, prefix = parsed.netloc, parsed.path.strip("/")
    copied: list[str] = []
    async with make_session().create_client("s3", config=_CLIENT_CONFIG) as s3:
        for name in FILES:
            key = f"{prefix}/{name}" if prefix else name
            try:
                resp = await s3.get_object(Bucket=bucket, Key=key)
                async with resp["Body"] as body:
                    data = await body.read()
            except AWS_ERRORS as exc:
                if _missing_key(exc):
                    continue
                raise FetchFailed(_explain(exc, bucket, key)) from None
            try:
                await asyncio.to_thread(dest.mkdir, parents=True, exist_ok=True)
                await asyncio.to_thread((dest / name).write_bytes, data)
            except OSError as exc:
                raise FetchFailed(
                    f"cannot write {dest / name}: {exc.strerror or exc}; the conf directory must be "
                    "writable (with readOnlyRootFilesystem, mount an emptyDir there)") from None
            copied.append(name)
    if not copied:
        raise FetchFailed(f"s3://{bucket}/{prefix} holds none of {', '.join(FILES)}; check the prefix "
                          "in RECORDING_STORAGE_CONFIG_S3_URL")
    return copied


def _missing_key(exc: BaseException) -> bool:
    if not isinstance(exc, ClientError):
        return False
    codes, status = error_codes(exc)
    return "NoSuchKey" in codes or (status == 404 and "NoSuchBucket" not in codes)


def _explain(exc: BaseException, bucket: str, key: str) -> str:
    where = f"s3://{bucket}/{key}"
    if isinstance(exc, ClientError):
        codes, status = error_codes(exc)
        shown = "/".join(sorted(codes)) or f"HTTP {status}"
        if "NoSuchBucket" in codes:
            return (f"cannot fetch configuration: bucket {bucket!r} does not exist ({shown}); "
                    "check RECORDING_STORAGE_CONFIG_S3_URL and the region (AWS_REGION)")
        if status == 403 or "AccessDenied" in codes:
            prefix = key.rpartition("/")[0]
            return (f"cannot fetch configuration: access denied to {where} ({shown}); grant "
                    f"s3:GetObject on arn:aws:s3:::{bucket}/{prefix + '/' if prefix else ''}* and "
                    f"s3:ListBucket on arn:aws:s3:::{bucket} (without ListBucket S3 answers 403 "
                    "for a file that does not exist)")
        return f"cannot fetch configuration: {where}: {shown} (HTTP {status})"
    return (f"cannot fetch configuration from {where}: {type(exc).__name__}: {scrub(str(exc), 200)}; "
            "check network access to S3 and the AWS credentials")


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m recording_storage.fetch_config s3://bucket/prefix DEST_DIR", file=sys.stderr)
        return ExitCode.CONFIG
    try:
        copied = asyncio.run(fetch(argv[0], Path(argv[1])))
    except ValueError as exc:
        print(f"recording-storage: {exc}", file=sys.stderr)
        return ExitCode.CONFIG
    except FetchFailed as exc:
        print(f"recording-storage: {exc}", file=sys.stderr)
        return ExitCode.CANNOT_START
    print(f"fetched configuration: {', '.join(copied)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
