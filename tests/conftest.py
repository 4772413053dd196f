"""Shared test set-up. Fixtures live in tests/fixtures/<system>.py, one module per system.

Every DRACOON emulator the suite starts (fixtures, the local stack, subprocesses) checks its
answers against DRACOON's description (``dracoon_emulator/contract.py``): the
environment switch is set before any test runs, a violation fails the test that caused it (at
teardown, listing them), and the session ends with the number of answers validated.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import structlog
from _pytest.terminal import TerminalReporter

from dracoon_emulator import contract

pytest_plugins = [
    "tests.fixtures.keys",
    "tests.fixtures.aws",
    "tests.fixtures.awsproxy",
    "tests.fixtures.dracoon",
    "tests.fixtures.service",
    "tests.fixtures.procs",
]


def pytest_configure(config: pytest.Config) -> None:
    os.environ[contract.CONTRACT_ENV] = "1"


def pytest_terminal_summary(terminalreporter: TerminalReporter) -> None:
    tally = contract.TALLY
    terminalreporter.write_line(
        f"DRACOON emulator response contract: {tally.checked} responses validated "
        f"({len(tally.operations)} operation/status pairs), {len(tally.violations)} violations"
    )


@pytest.fixture(autouse=True)
def _emulator_response_contract() -> Iterator[None]:
    """Fail the test whose emulator answered outside DRACOON's description."""
    before = len(contract.TALLY.violations)
    yield
    new = contract.TALLY.violations[before:]
    if new:
        listing = "\n".join(f"  {v}" for v in new[:20])
        more = f"\n  ... and {len(new) - 20} more" if len(new) > 20 else ""
        pytest.fail(f"{len(new)} emulator response(s) break DRACOON's description:\n{listing}{more}")


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
