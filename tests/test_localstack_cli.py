"""The local stack as a newcomer uses it: the banner's "in another terminal" commands work from
another directory, and a second stack cannot take over a running one's configuration."""

from __future__ import annotations

import asyncio
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from recording_storage import localstack
from recording_storage.errors import StartupError
from recording_storage.localstack import start_local_stack

pytestmark = pytest.mark.integration


def terminal_commands(banner: str) -> tuple[dict[str, str], list[list[str]]]:
    """The exports and commands the banner lists under "In another terminal:"."""
    lines = banner.split("In another terminal:", 1)[1].strip().split("\n\n", 1)[0].splitlines()
    env: dict[str, str] = {}
    commands: list[list[str]] = []
    for line in lines:
        words = shlex.split(line, comments=True)
        if words and words[0] == "export":
            name, _, value = words[1].partition("=")
            env[name] = value
        elif words:
            commands.append(words)
    return env, commands


async def test_banner_commands_work_in_another_terminal_elsewhere(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Started as `make local-stack` does: from the directory that holds the virtualenv.
    monkeypatch.chdir(Path(sys.executable).parent.parent.parent)
    stop = asyncio.Event()
    stack = asyncio.create_task(localstack.serve(tmp_path / "stack", stop=stop))
    try:
        out = ""
        while "Ctrl-C stops the stack" not in out:
            assert not stack.done(), stack
            out += capsys.readouterr().out
            await asyncio.sleep(0.05)
        exports, commands = terminal_commands(out)
        assert [c[-1] if c[-1] != "--drain" else "run" for c in commands][0] == "check"
        # Another terminal: same PATH (no venv activated), another working directory.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RECORDING_STORAGE", "AWS_"))}
        env.update(exports)
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        for command in commands:
            done = await asyncio.to_thread(subprocess.run, command, cwd=elsewhere, env=env,
                                           capture_output=True, text=True, timeout=120, check=False)
            assert done.returncode == 0, (command, done.stdout, done.stderr)
    finally:
        stop.set()
        assert await stack == 0


async def test_a_second_stack_refuses_the_directory_of_a_running_one(tmp_path: Path) -> None:
    async with start_local_stack(tmp_path, kdf_iterations=1000) as first:
        before = first.config_path.read_text(encoding="utf-8")
        with pytest.raises(StartupError) as refused:
            async with start_local_stack(tmp_path, kdf_iterations=1000):
                pass
        assert str(tmp_path) in str(refused.value) and "--dir" in str(refused.value)
        assert str(os.getpid()) in str(refused.value)
        assert first.config_path.read_text(encoding="utf-8") == before  # untouched
    async with start_local_stack(tmp_path, kdf_iterations=1000):  # free again once it stopped
        pass


def test_make_install_filters_only_the_editable_install_banner() -> None:
    """`make demo` on a fresh clone installs first; setuptools' "Editable installation" banner
    must not greet a newcomer, and nothing else may be silenced with it."""
    repo = Path(__file__).resolve().parent.parent
    done = subprocess.run(["make", "-n", "-B", ".venv/.installed"], cwd=repo, capture_output=True, text=True,
                          timeout=60, check=True)
    (install,) = [line for line in done.stdout.splitlines() if "pip install" in line and "-e" in line]
    assert install.startswith('PYTHONWARNINGS="ignore:Editable installation" ')
    # The DRACOON emulator is a distribution of its own; no extra of ours can bring it.
    assert " -e ./dracoon_emulator " in install
