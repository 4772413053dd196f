"""Shared test set-up. Fixtures live in tests/fixtures/<system>.py, one module per system."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import structlog

pytest_plugins = [
    "tests.fixtures.keys",
    "tests.fixtures.aws",
    "tests.fixtures.dracoon",
    "tests.fixtures.service",
    "tests.fixtures.procs",
]


@pytest.fixture(autouse=True)
def _isolate_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test may see the developer's AWS profile or service config from the environment."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "RECORDING_STORAGE")):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    yield


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    """Each test starts from structlog's defaults, as structlog's own suite does."""
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
