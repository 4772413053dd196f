"""The DRACOON emulator is a package of its own: the service's wheel and image leave it out, the
service loads it only for local-stack/demo, and it reaches into the service only through the one
documented seam (recording_storage.crypto, to generate seeded users' key pairs in fixture.py)."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import setuptools

from dracoon_emulator.fixture import generated_key_pair
from recording_storage import cli

ROOT = Path(__file__).resolve().parent.parent
EMULATOR = ROOT / "dracoon_emulator"
# The only recording_storage import the emulator may make, and where (README: "Test seam").
SEAM = {("fixture.py", "recording_storage.crypto")}


def test_service_wheel_leaves_out_the_emulator() -> None:
    """`pip install .` installs the packages pyproject's find config selects: the service's only."""
    setuptools_config = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["tool"]["setuptools"]
    found = setuptools.find_packages(str(ROOT), **setuptools_config["packages"]["find"])
    assert "recording_storage" in found and "recording_storage.dracoon" in found
    assert [p for p in found if not p.startswith("recording_storage")] == []
    data = [pattern for patterns in setuptools_config.get("package-data", {}).values()
            for pattern in patterns]
    assert [p for p in data if "emulator" in p or "data/" in p] == []


def test_emulator_distribution_ships_its_data() -> None:
    """The second distribution packages the schemas the emulator validates against."""
    config = tomllib.loads((EMULATOR / "pyproject.toml").read_text("utf-8"))["tool"]["setuptools"]
    assert config["packages"] == ["dracoon_emulator", "dracoon_emulator.data"]
    shipped = {p.relative_to(EMULATOR).as_posix()
               for package, patterns in config["package-data"].items()
               for pattern in patterns
               for p in EMULATOR.joinpath(*package.split(".")[1:]).glob(pattern)}
    assert {"data/dracoon_request_schemas.json", "data/dracoon_response_schemas.json",
            "example-seed.yaml", "py.typed"} <= shipped


def _recording_storage_imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "recording_storage")
        elif (isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
              and node.module.split(".")[0] == "recording_storage"):
            found.add(node.module)
    return found


def test_emulator_imports_the_service_only_through_the_crypto_seam() -> None:
    """It follows DRACOON's API description, not our client: no other recording_storage import."""
    used = {(path.name, module) for path in sorted(EMULATOR.rglob("*.py"))
            for module in _recording_storage_imports(path)}
    assert used == SEAM


def test_service_modules_never_load_the_emulator() -> None:
    """Importing every service module (cli, service, localstack included) leaves the emulator
    unloaded: only running local-stack or demo imports it."""
    script = (
        "import importlib, pkgutil, sys, recording_storage\n"
        "for m in pkgutil.walk_packages(recording_storage.__path__, 'recording_storage.'):\n"
        "    if not m.name.endswith('__main__'):  # that one runs the CLI\n"
        "        importlib.import_module(m.name)\n"
        "print(sorted(n for n in sys.modules if n.split('.')[0] == 'dracoon_emulator'))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                          timeout=120)
    assert done.stdout.strip() == "[]", done.stdout


def test_local_stack_without_the_emulator_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A service installed without the emulator: one line naming the fix, no traceback."""
    monkeypatch.setitem(sys.modules, "dracoon_emulator", None)  # makes `import` raise ImportError
    assert cli.main(["local-stack", "--dir", str(tmp_path / "stack")]) == cli.EXIT_FAILED
    err = capsys.readouterr().err
    assert "the local stack needs the DRACOON emulator" in err and "pip install ./dracoon_emulator" in err
    assert "Traceback" not in err


def test_seeding_a_key_pair_without_the_service_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    """The emulator alone: a seed that needs a generated key pair is a clear ValueError (which
    `python -m dracoon_emulator` reports as a bad seed file), not an ImportError traceback."""
    monkeypatch.setitem(sys.modules, "recording_storage.crypto", None)
    with pytest.raises(ValueError, match="needs recording-storage's crypto.*key_pair"):
        generated_key_pair("A", "Secret-1")
