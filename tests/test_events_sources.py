"""S3-compatible source settings (``s3.buckets``), the decoder wiring and ``configured_buckets``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import SecretStr

from recording_storage.aws import bucket_settings, make_client_config
from recording_storage.checks import configured_buckets
from recording_storage.config import AwsConfig, BucketSourceConfig, S3Config, load_config
from recording_storage.errors import ConfigError
from recording_storage.intake import make_decoder
from recording_storage.metrics import Metrics
from recording_storage.s3 import S3Source


def test_bucket_entries_are_validated_when_the_config_loads() -> None:
    """Both endpoint forms, a port without host, half a key pair or a bad name are config errors."""
    for bad, words in [({"endpoint_url": "https://a", "host": "b"}, "not both"),
                       ({"port": 9000}, "port needs host"),
                       ({"access_key_id": "k"}, "set together"),
                       ({"addressing_style": "vhost"}, "addressing_style")]:
        with pytest.raises(ConfigError, match=words) as info:
            load_config(None, env={}, overrides={"s3": {"buckets": {"rec": bad}}})
        assert "s3.buckets" in str(info.value)
    with pytest.raises(ConfigError, match="is not a bucket name"):
        load_config(None, env={}, overrides={"s3": {"buckets": {"a/b": {}}}})
    with pytest.raises(ConfigError) as secret:
        load_config(None, env={}, overrides={"s3": {"buckets": {"rec": {"secret_access_key": {"x": 1}}}}})
    assert "'***'" in str(secret.value)


def test_bucket_settings_override_only_what_they_set() -> None:
    """Host/port/scheme compose the endpoint; unset keys inherit; own keys replace global ones."""
    aws = AwsConfig(region="eu-west-1", access_key_id=SecretStr("global"), secret_access_key=SecretStr("g"),
                    session_token=SecretStr("token"))
    s3 = S3Config(request_checksum_calculation="when_supported", buckets={
        "minio": BucketSourceConfig(host="minio.lan", port=9000, scheme="http", region="us-east-1",
                                    addressing_style="path", request_checksum_calculation="when_required",
                                    access_key_id=SecretStr("own"), secret_access_key=SecretStr("o"),
                                    allow_insecure_http=True),
        "region-only": BucketSourceConfig(region="eu-central-1"),
    })
    assert bucket_settings(aws, s3, "plain") is None
    minio = bucket_settings(aws, s3, "minio")
    assert minio is not None
    m_aws, m_s3 = minio
    assert (m_aws.endpoint_url, m_aws.region) == ("http://minio.lan:9000", "us-east-1")
    assert m_aws.allow_insecure_http is True
    assert m_aws.access_key_id is not None and m_aws.access_key_id.get_secret_value() == "own"
    assert m_aws.session_token is None  # the global token belongs to the global key pair
    config = make_client_config(m_aws, m_s3)
    assert config.s3 == {"addressing_style": "path"}
    assert config.request_checksum_calculation == "when_required"
    other = bucket_settings(aws, s3, "region-only")
    assert other is not None
    assert (other[0].region, other[0].endpoint_url) == ("eu-central-1", None)
    assert other[1].addressing_style == "auto"
    assert other[0].access_key_id is not None and other[0].access_key_id.get_secret_value() == "global"


async def test_source_refuses_unsafe_bucket_endpoints_before_any_io() -> None:
    """Plain http to a non-loopback store needs allow_insecure_http; the error names the bucket key."""
    s3 = S3Config(buckets={"lan": BucketSourceConfig(host="minio.lan", scheme="http")})
    with pytest.raises(ConfigError, match=r"s3\.buckets\.lan\.endpoint_url: plain http"):
        async with S3Source(AwsConfig(), s3):
            pass


def test_configured_buckets_lists_probe_source_and_routed_buckets(tmp_path: Path) -> None:
    """For `recording-storage check`: every named bucket once, globs left out."""
    routes = tmp_path / "routes.yml"
    routes.write_text("rules:\n  - {name: a, bucket: kazoo, instance: x.example.com, targets: [A]}\n"
                      "  - {name: b, bucket: 'rec-*', instance: x.example.com, targets: [B]}\n",
                      encoding="utf-8")
    cfg = load_config(None, env={}, overrides={
        "s3": {"probe_buckets": ["rec", "kazoo"], "buckets": {"minio": {"host": "m.lan"}}},
        "routing": {"file": str(routes), "rules": [
            {"name": "c", "bucket": "inline", "instance": "x.example.com", "targets": ["C"]}]}})
    assert configured_buckets(cfg) == ["rec", "kazoo", "minio", "inline"]


def test_decoder_counts_unmatched_objects_in_the_metrics() -> None:
    """make_decoder loads the rules and wires unmatched objects to unmatched_objects_total."""
    cfg = load_config(None, env={}, overrides={"routing": {"rules": [
        {"name": "a", "key": "calls/*", "instance": "x.example.com", "targets": ["A"]}]}})
    metrics = Metrics()
    decode = make_decoder(cfg, metrics=metrics)
    body = {"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "rec"},
                                                                  "object": {"key": "other/x"}}}]}
    assert decode(json.dumps(body)) == []
    assert decode(json.dumps(body)) == []
    assert "recording_storage_unmatched_objects_total 2.0" in metrics.render().decode()
    broken = load_config(None, env={}, overrides={"routing": {"rules": [{"name": "a"}]}})
    with pytest.raises(ConfigError):
        make_decoder(broken)
