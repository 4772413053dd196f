"""``recording-storage config show``: every effective setting, masked, with where it came from.

The service merges three layers (defaults, the YAML file, ``RECORDING_STORAGE__*`` variables,
with ``${NAME}`` references inside the file). When a value is not what an operator expected,
the question is always "which layer set it?": this answers it per key, with the file's line,
the variable's name or ``default``. Secrets are shown as ``***`` (set) or ``''`` (empty), never
in clear: the output is meant to be pasted into tickets.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, SecretStr

from .loader import _env_leaves, _secretish, config_file_used, load_config

__all__ = ["Setting", "effective_settings", "render_settings"]


@dataclass(frozen=True)
class Setting:
    """One leaf of the effective configuration."""

    path: str
    value: str  # as YAML would write it, secrets masked
    source: str  # "FILE:LINE", "FILE:LINE via ${NAME}", "env NAME", "default" or "derived"


def effective_settings(
    path: str | Path | None = None, *, env: Mapping[str, str] | None = None
) -> tuple[Path | None, list[Setting]]:
    """The file used (or None) and every setting of the validated configuration, in model order.

    Raises ConfigError like ``load_config``: a configuration that does not load has no
    effective values to show.
    """
    env = os.environ if env is None else env
    config = load_config(path, env=env)
    file = config_file_used(path, env=env)
    lines = _file_lines(file) if file is not None else {}
    env_leaves = _env_leaves(env)
    settings = []
    for key, value in _leaves(config, ""):
        settings.append(Setting(key, _shown(key, value), _source(key, file, lines, env_leaves)))
    if config.instances.source == "file":
        instances_file = config.resolve(config.instances.file)
        for domain, (line, base_url) in _instance_lines(instances_file).items():
            settings.append(Setting(f"instances[{domain}]", base_url, f"{instances_file}:{line}"))
    return file, settings


def render_settings(file: Path | None, settings: list[Setting], *, as_json: bool = False) -> str:
    """The text (aligned ``key = value  # source``) or JSON-lines form of ``config show``."""
    if as_json:
        return "\n".join(json.dumps({"key": s.path, "value": s.value, "source": s.source}) for s in settings)
    head = f"# configuration file: {file.resolve()}" if file is not None else (
        "# no configuration file: defaults and RECORDING_STORAGE__* variables only")
    width = min(60, max(len(f"{s.path} = {s.value}") for s in settings))
    rows = [f"{f'{s.path} = {s.value}':<{width}}  # {s.source}" for s in settings]
    return "\n".join([head, *rows])


def _leaves(value: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    if isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _leaves(getattr(value, name), f"{prefix}.{name}" if prefix else name)
    elif isinstance(value, Mapping) and value and all(isinstance(v, BaseModel) for v in value.values()):
        for key, item in value.items():
            yield from _leaves(item, f"{prefix}.{key}")
    else:
        yield prefix, value


def _shown(key: str, value: Any) -> str:
    if isinstance(value, SecretStr):
        return "***" if value.get_secret_value() else "''"
    if _secretish(tuple(key.split("."))) and value not in (None, ""):
        return "***"
    if isinstance(value, Path):
        value = str(value)
    elif isinstance(value, tuple | frozenset | set):
        value = list(value)
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


def _source(key: str, file: Path | None, lines: Mapping[str, tuple[int, str]], env: Mapping[str, str]) -> str:
    owners = [p for p in env if key == p or key.startswith(p + ".")]
    if owners:
        return f"env {env[max(owners, key=len)]}"
    if key in lines and file is not None:
        line, raw = lines[key]
        via = f" via {raw}" if "${" in raw else ""
        return f"{file}:{line}{via}"
    if key == "base_dir":
        return "derived (the config file's directory, or its parent for conf/)"
    return "default"


def _file_lines(file: Path) -> dict[str, tuple[int, str]]:
    """Dotted key path -> (1-based line, raw scalar text) for every key the YAML file sets.

    A key set twice keeps its last occurrence, which is the one ``safe_load`` keeps.
    """
    try:
        root = yaml.compose(file.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}  # load_config already accepted it; a race with an edit loses only the lines
    found: dict[str, tuple[int, str]] = {}

    def walk(node: yaml.Node, prefix: str) -> None:
        if not isinstance(node, yaml.MappingNode):
            return
        for key_node, value_node in node.value:
            key = f"{prefix}.{key_node.value}" if prefix else str(key_node.value)
            raw = value_node.value if isinstance(value_node, yaml.ScalarNode) else ""
            found[key] = (key_node.start_mark.line + 1, str(raw))
            walk(value_node, key)

    if root is not None:
        walk(root, "")
    return found


def _instance_lines(file: Path) -> dict[str, tuple[int, str]]:
    """Each instance domain of an instances file -> (line, its DRACOON base_url or '-').

    Only names and URLs: credentials stay in the file. A domain listed twice shows once, at
    the entry the loader keeps.
    """
    try:
        root = yaml.compose(file.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    if not isinstance(root, yaml.MappingNode):
        return {}
    entries = next((v for k, v in root.value if k.value == "instances"), None)
    if not isinstance(entries, yaml.MappingNode):
        return {}
    found: dict[str, tuple[int, str]] = {}
    for key_node, value_node in entries.value:
        base_url = "-"
        if isinstance(value_node, yaml.MappingNode):
            dracoon = next((v for k, v in value_node.value if k.value == "dracoon"), None)
            if isinstance(dracoon, yaml.MappingNode):
                base_url = next((str(v.value) for k, v in dracoon.value
                                 if k.value == "base_url" and isinstance(v, yaml.ScalarNode)), "-")
        found[str(key_node.value)] = (key_node.start_mark.line + 1, base_url)
    return found
