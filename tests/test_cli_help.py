"""Every subcommand's --help shows an example and its exit statuses; shell completion works in a
real bash with the generated script."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from recording_storage import cli
from recording_storage.completion import command_parsers


def test_every_subcommand_help_has_an_example_and_exit_statuses() -> None:
    parsers = command_parsers(cli._parser())
    assert {"run", "check", "dlq list", "dlq redrive", "config show", "plan", "completion"} <= set(parsers)
    for path, parser in parsers.items():
        if not path:
            continue
        text = parser.format_help()
        example = text.split("example:\n", 1)[1].splitlines()[0].strip()
        assert "recording-storage" in example or example == "make demo", path
        assert "\nexit status: " in text and "0 " in text.split("exit status: ", 1)[1], path


def test_completion_bash_script_is_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["completion", "bash"]) == 0
    script = capsys.readouterr().out
    assert "complete -o default -F _recording_storage recording-storage" in script
    assert cli.main(["completion", "zsh"]) == 0
    zsh = capsys.readouterr().out
    assert zsh.startswith("#compdef recording-storage\n") and "bashcompinit" in zsh and script in zsh


def complete(script: Path, line: str) -> list[str]:
    """What bash offers for the last word of ``line`` (a trailing space: a new, empty word)."""
    words = line.split(" ")
    program = f"""
source {script}
COMP_WORDS=({' '.join(repr(w) for w in words)})
COMP_CWORD={len(words) - 1}
_recording_storage
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    done = subprocess.run(["bash", "-c", program], capture_output=True, text=True, timeout=30, check=True)
    return [w for w in done.stdout.splitlines() if w]


@pytest.fixture(scope="module")
def bash_script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("completion") / "recording-storage.bash"
    done = subprocess.run([sys.executable, "-m", "recording_storage", "completion", "bash"],
                          capture_output=True, text=True, timeout=60, check=True)
    path.write_text(done.stdout, encoding="utf-8")
    return path


@pytest.mark.parametrize(("line", "expected"), [
    ("recording-storage dl", ["dlq"]),
    ("recording-storage c", ["check", "completion", "config"]),
    ("recording-storage -c conf/app.yaml dlq ", ["-h", "--help", "-c", "--config", "list", "redrive"]),
    ("recording-storage dlq redrive --re", ["--reason"]),
    ("recording-storage -c app.yaml run --d", ["--drain"]),
    ("recording-storage send-job job.json --d", ["--dry-run"]),
    ("recording-storage keypair --version ", ["A", "RSA-4096"]),
    ("recording-storage completion ", ["-h", "--help", "bash", "zsh"]),
])
def test_bash_completes_commands_options_and_choices(
    bash_script: Path, line: str, expected: list[str]
) -> None:
    assert sorted(complete(bash_script, line)) == sorted(expected)


def test_bash_completes_file_names_after_config(bash_script: Path, tmp_path: Path) -> None:
    (tmp_path / "app-prod.yaml").write_text("{}\n", encoding="utf-8")
    assert complete(bash_script, f"recording-storage -c {tmp_path}/app-p") == [f"{tmp_path}/app-prod.yaml"]
