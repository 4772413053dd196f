"""Our SigV4 presigner against botocore's own, byte for byte, at a frozen time.

botocore is the reference: every case builds the same request with both and compares. Its CRT
signer (the one used when awscrt is installed, as here) lays the query out as we do, so its URL
must be identical; its pure-Python signer orders two X-Amz fields differently, so there the
fields and the signature must be.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit

import botocore.auth
import pytest

from recording_storage import sigv4
from recording_storage.aws import make_client_config, make_session
from recording_storage.config import AwsConfig, S3Config
from tests.fixtures.aws import botocore_clock

NOW = datetime(2026, 12, 6, 23, 59, 59, tzinfo=UTC)
TIMESTAMP = "20261206T235959Z"
ACCESS, SECRET = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
TOKEN = "IQoJb3JpZ2luX2VjE//token+with/slashes=="
KEYS = [
    "plain.mp4",
    "rec/with space/and  two.mp4",
    "unicode/Grüße-日本語-é.mp4",
    "+ = & ? # % ~ ! ' ( ) * , ;",
    "/leading-slash",
    "double//slash",
    "dots/../x/./y",
    "..",
]
VERSION = "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY+MTRCxf3vjVBH40Nr8X8gdRQBpUMLUo"


@dataclass(frozen=True)
class Store:
    """Where a client sends the bucket's requests, and the URL botocore makes for it."""

    name: str
    region: str
    endpoint: str | None
    style: Literal["auto", "virtual", "path"]
    scheme: str
    netloc: str  # with the bucket "bkt"
    prefix: str


STORES = [
    Store("moto-path", "eu-west-1", "http://127.0.0.1:5000", "path", "http", "127.0.0.1:5000", "/bkt/"),
    Store("aws-virtual", "eu-central-1", None, "virtual", "https", "bkt.s3.eu-central-1.amazonaws.com", "/"),
    Store("aws-path", "eu-central-1", None, "path", "https", "s3.eu-central-1.amazonaws.com", "/bkt/"),
    Store("default-port", "us-east-1", "https://store.example:443", "path", "https", "store.example:443",
          "/bkt/"),
    Store("own-port-virtual", "us-east-1", "https://store.example:9000", "virtual", "https",
          "bkt.store.example:9000", "/"),
]
# (operation, method, botocore parameters besides Bucket and Key, query fields, signed headers)
REQUESTS: list[tuple[str, str, dict[str, Any], list[tuple[str, str]], dict[str, str]]] = [
    ("head_object", "HEAD", {}, [], {}),
    ("head_object", "HEAD", {"ChecksumMode": "ENABLED"}, [], {"x-amz-checksum-mode": "ENABLED"}),
    ("get_object", "GET", {"IfMatch": '"9b2cf535f27731c974343645a3985328"'}, [],
     {"If-Match": '"9b2cf535f27731c974343645a3985328"'}),
    ("get_object", "GET", {"IfMatch": '"abc-2"', "VersionId": VERSION}, [("versionId", VERSION)],
     {"If-Match": '"abc-2"'}),
    ("head_object", "HEAD", {"PartNumber": 2, "IfMatch": '"e"'}, [("partNumber", "2")], {"If-Match": '"e"'}),
    ("get_object", "GET", {"IfMatch": '"spaces  inside "'}, [], {"If-Match": '"spaces  inside "'}),
    ("delete_object", "DELETE", {}, [], {}),
    ("delete_object", "DELETE", {"VersionId": "null"}, [("versionId", "null")], {}),
    ("delete_object", "DELETE", {"IfMatch": '"e"'}, [], {"If-Match": '"e"'}),
]


@pytest.fixture(params=["crt", "python"])
def signer(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Which of botocore's SigV4 query signers is the reference."""
    if request.param == "python":
        monkeypatch.setitem(botocore.auth.AUTH_TYPE_MAPS, "s3v4-query", botocore.auth.S3SigV4QueryAuth)
    return str(request.param)


@asynccontextmanager
async def botocore_client(store: Store, token: str | None) -> AsyncIterator[Any]:
    aws = AwsConfig(region=store.region, endpoint_url=store.endpoint)
    config = make_client_config(aws, S3Config(addressing_style=store.style))
    kwargs: dict[str, Any] = {"endpoint_url": store.endpoint} if store.endpoint else {}
    async with make_session().create_client(
        "s3", config=config, region_name=aws.region, aws_access_key_id=ACCESS,
        aws_secret_access_key=SECRET, aws_session_token=token, **kwargs,
    ) as client:
        yield client


def query_pairs(url: str) -> list[tuple[str, str]]:
    return sorted(tuple(pair.split("=", 1)) for pair in urlsplit(url).query.split("&"))  # type: ignore[misc]


@pytest.mark.parametrize("token", [None, TOKEN], ids=["keys", "session-token"])
@pytest.mark.parametrize("store", STORES, ids=[s.name for s in STORES])
async def test_presigned_urls_equal_botocores(store: Store, token: str | None, signer: str) -> None:
    """Every key, operation and parameter set, on every addressing form: botocore's URL."""
    async with botocore_client(store, token) as client:
        for key in KEYS:
            for operation, method, extra, query, headers in REQUESTS:
                with botocore_clock(NOW):
                    theirs = await client.generate_presigned_url(
                        operation, Params={"Bucket": "bkt", "Key": key, **extra}, ExpiresIn=900)
                ours = sigv4.presign(
                    method=method, scheme=store.scheme, netloc=store.netloc,
                    path=store.prefix + sigv4.encode_key(key), query=query, headers=headers,
                    region=store.region, service="s3", access_key=ACCESS, secret_key=SECRET, token=token,
                    expires=900, timestamp=TIMESTAMP)
                what = f"{operation} {extra} of {key!r}"
                if signer == "crt":
                    assert ours == theirs, what
                else:
                    assert urlsplit(ours)[:3] == urlsplit(theirs)[:3], what
                    assert query_pairs(ours) == query_pairs(theirs), what


def test_the_aws_documentation_example() -> None:
    """The presigned GET of AWS's "Authenticating Requests: Using Query Parameters" example,
    an answer computed by neither botocore nor us."""
    url = sigv4.presign(
        method="GET", scheme="https", netloc="examplebucket.s3.amazonaws.com", path="/test.txt", query=[],
        headers={}, region="us-east-1", service="s3", access_key="AKIAIOSFODNN7EXAMPLE",
        secret_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", token=None, expires=86400,
        timestamp="20130524T000000Z")
    assert url.endswith("&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404")


def test_the_signed_host_drops_default_ports_and_case() -> None:
    assert sigv4.canonical_host("https", "Store.Example:443") == "store.example"
    assert sigv4.canonical_host("http", "store.example:443") == "store.example:443"
    assert sigv4.canonical_host("http", "127.0.0.1:80") == "127.0.0.1"
    assert sigv4.canonical_host("https", "[::1]:9000") == "[::1]:9000"


def test_amz_date_is_utc() -> None:
    assert sigv4.amz_date(NOW.timestamp()) == TIMESTAMP
