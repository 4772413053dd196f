"""Fetch configuration files from an S3 prefix before start (container entry point helper).

The original image pulled its config from S3 at start; operators keep that workflow. Only the
known file names are copied, so a prefix cannot drop arbitrary files into the image.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from urllib.parse import urlparse

from aiobotocore.session import get_session

FILES = ("app.yaml", "topics.yml", "instances.yml")


async def fetch(url: str, dest: Path) -> list[str]:
    """Copy the known config files found under ``s3://bucket/prefix`` into ``dest``."""
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise SystemExit(f"RECORDING_STORAGE_CONFIG_S3_URL must look like s3://bucket/prefix, got {url!r}")
    prefix = parsed.path.strip("/")
    await asyncio.to_thread(dest.mkdir, parents=True, exist_ok=True)
    copied: list[str] = []
    async with get_session().create_client("s3") as s3:
        for name in FILES:
            key = f"{prefix}/{name}" if prefix else name
            try:
                resp = await s3.get_object(Bucket=parsed.netloc, Key=key)
            except s3.exceptions.NoSuchKey:
                continue
            async with resp["Body"] as body:
                await asyncio.to_thread((dest / name).write_bytes, await body.read())
            copied.append(name)
    return copied


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m recording_storage.fetch_config s3://bucket/prefix DEST_DIR", file=sys.stderr)
        return 2
    copied = asyncio.run(fetch(argv[0], Path(argv[1])))
    print(f"fetched configuration: {', '.join(copied) or 'nothing'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
