"""Loading the configuration: file discovery, environment overrides and references, validation.

Kept apart from the model so the model stays a plain description of every key; everything
that reads files or the environment, and turns pydantic's errors into key-path problems, is here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ..errors import ConfigError, ConfigProblem
from .model import AppConfig

__all__ = ["DEFAULT_CONFIG_PATH", "ENV_PREFIX", "DuplicateKeys", "config_file_used", "expand_env",
           "load_config", "load_yaml_file", "load_yaml_text", "validation_problems"]

ENV_PREFIX = "RECORDING_STORAGE__"
DEFAULT_CONFIG_PATH = Path("conf/app.yaml")
_ENV_REF_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(value: Any, env: Mapping[str, str], path: str, problems: list[ConfigProblem]) -> Any:
    """Replace ``${NAME}`` / ``${NAME:-default}`` in every string of a loaded YAML tree."""
    if isinstance(value, dict):
        return {k: expand_env(v, env, f"{path}.{k}" if path else str(k), problems) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, env, f"{path}[{i}]", problems) for i, v in enumerate(value)]
    if isinstance(value, str) and "${" in value:

        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            problems.append(ConfigProblem(path, f"environment variable {name} is referenced but not set"))
            return ""

        return _ENV_REF_RE.sub(sub, value)
    return value


class DuplicateKeys(yaml.YAMLError):
    """Keys given twice in one mapping: (key path, line, line of the first) for each."""

    def __init__(self, found: list[tuple[str, int, int]]) -> None:
        self.found = found
        super().__init__(f"{len(found)} duplicate key(s)")


_MERGE_TAG = "tag:yaml.org,2002:merge"
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")


def load_yaml_text(text: str) -> Any:
    """``yaml.safe_load`` that refuses a key given twice in one mapping, at any depth.

    YAML requires unique keys, but PyYAML silently keeps the last: a second ``instances:`` block
    dropped every instance of the first. Every YAML the service reads comes through here. Merge
    keys are no duplicates: ``<<: *defaults`` then ``bucket: x`` overrides on purpose.
    Raises ``DuplicateKeys`` listing every one, or PyYAML's own ``YAMLError``.
    """
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        found: list[tuple[str, int, int]] = []
        _find_duplicates(loader, node, "", found, set())
        if found:
            raise DuplicateKeys(found)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _find_duplicates(
    loader: yaml.SafeLoader, node: yaml.Node, path: str, found: list[tuple[str, int, int]], seen: set[int]
) -> None:
    if id(node) in seen:  # an alias: checked where its anchor is (and no endless loop on cycles)
        return
    seen.add(id(node))
    if isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _find_duplicates(loader, item, f"{path}[{i}]", found, seen)
    elif isinstance(node, yaml.MappingNode):
        first: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                _find_duplicates(loader, value_node, path, found, seen)
                continue
            key = loader.construct_object(key_node) if isinstance(key_node, yaml.ScalarNode) else None
            text = str(key)
            child = f"{path}.{text}" if _PLAIN_KEY.fullmatch(text) else f"{path}[{text}]"
            child = child.removeprefix(".")
            line = key_node.start_mark.line + 1
            if key is not None and key in first:
                found.append((child, line, first[key]))
            elif key is not None:
                first[key] = line
            _find_duplicates(loader, value_node, child, found, seen)


def load_yaml_file(path: Path, *, what: str) -> Any:
    """Read one YAML file (``load_yaml_text``), turning every failure into a ConfigError."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([ConfigProblem("", f"{what} not found at {path}", str(path))]) from None
    except OSError as exc:
        raise ConfigError([ConfigProblem("", f"cannot read {what}: {exc.strerror}", str(path))]) from None
    try:
        return load_yaml_text(text)
    except DuplicateKeys as exc:
        raise ConfigError([
            ConfigProblem(key, f"duplicate key at line {line} (first at line {first}); YAML keeps only "
                          "the last, so the first is silently lost: merge them or delete one", str(path))
            for key, line, first in exc.found
        ]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise ConfigError([ConfigProblem("", f"not valid YAML{where}: {problem}", str(path))]) from None


def _env_keys(name: str) -> list[str]:
    """``RECORDING_STORAGE__WORKERS__COUNT`` -> ``["workers", "count"]``; [] for other variables."""
    if not name.startswith(ENV_PREFIX):
        return []
    return [k.lower() for k in name[len(ENV_PREFIX) :].split("__") if k]


def _env_value(raw: str) -> Any:
    """Scalars stay strings (pydantic's lax mode turns "4" into 4 where an int is wanted, and a
    numeric-looking password stays a string); lists and mappings are YAML."""
    if raw.lstrip().startswith(("[", "{")):
        try:
            return load_yaml_text(raw)
        except yaml.YAMLError:  # duplicate keys too: validation then blames the variable
            return raw
    return raw


def _env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    """``RECORDING_STORAGE__WORKERS__COUNT=4`` -> ``{"workers": {"count": 4}}`` (YAML-typed)."""
    tree: dict[str, Any] = {}
    for name, raw in env.items():
        keys = _env_keys(name)
        if not keys:
            continue
        value = _env_value(raw)
        node = tree
        for key in keys[:-1]:
            nxt = node.setdefault(key, {})
            if not isinstance(nxt, dict):
                nxt = node[key] = {}
            node = nxt
        node[keys[-1]] = value
    return tree


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _secretish(loc: tuple[Any, ...]) -> bool:
    return any(
        isinstance(p, str) and any(w in p for w in ("secret", "password", "token", "key_id")) for p in loc
    )


def _masked(value: Any) -> Any:
    """A section-level error's input is the whole raw section: mask the secrets inside it too."""
    if isinstance(value, Mapping):
        return {k: "***" if _secretish((k,)) else _masked(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_masked(v) for v in value]
    return value


def _mask(loc: tuple[Any, ...], value: Any) -> str:
    if _secretish(loc):
        return "'***'"
    text = repr(_masked(value))
    return text if len(text) <= 80 else text[:77] + "..."


def _section_rule(err: Any) -> bool:
    """A rule across a section's keys: its "input" is the whole section, which says nothing the
    message does not."""
    return bool(err["type"] == "value_error" and isinstance(err.get("input"), Mapping))


def validation_problems(exc: ValidationError, *, source: str = "", prefix: str = "") -> list[ConfigProblem]:
    """Turn pydantic's errors into key-path problems naming the bad value and what is allowed."""
    problems = []
    for err in exc.errors(include_url=False):
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        path = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in loc).replace(".[", "[")
        if prefix:
            path = f"{prefix}.{path}" if path else prefix
        msg = err["msg"]
        if err["type"] == "value_error":
            msg = msg.removeprefix("Value error, ")  # our own validators' words, not pydantic's
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; see conf/app.yaml for every key)"
        elif err["type"] != "missing" and "input" in err and not _section_rule(err):
            msg = f"{msg} (got {_mask(loc, err['input'])})"
        problems.append(ConfigProblem(path, msg, source))
    return problems


def _env_leaves(env: Mapping[str, str]) -> dict[str, str]:
    """Config key path -> the environment variable that set it, down to the leaves a mapping
    value sets (``RECORDING_STORAGE__S3='{parallel_ranges: 4}'`` sets only s3.parallel_ranges)."""
    leaves: dict[str, str] = {}

    def walk(path: str, value: Any, name: str) -> None:
        if isinstance(value, Mapping) and value:
            for key, item in value.items():
                walk(f"{path}.{key}", item, name)
        else:
            leaves[path] = name

    for name, raw in env.items():
        if keys := _env_keys(name):
            walk(".".join(keys), _env_value(raw), name)
    return leaves


def _blame_env(problems: list[ConfigProblem], env: Mapping[str, str]) -> list[ConfigProblem]:
    """A value that came from an environment variable is reported as that variable's, not the file's
    (the file may not even have the key); a rule across a section names the variables in it too."""
    leaves = _env_leaves(env)
    out = []
    for problem in problems:
        path = problem.path
        owners = [p for p in leaves if path == p or path.startswith((p + ".", p + "["))]
        if owners:
            name = leaves[max(owners, key=len)]  # the most specific variable
            message = problem.message
            if message.startswith(("Input should be a valid tuple", "Input should be a valid list")):
                message += """; in an environment variable write a list as YAML, e.g. '["a", "b"]'"""
            out.append(ConfigProblem(path, message, f"environment variable {name}"))
            continue
        inside = sorted({n for p, n in leaves.items() if path and p.startswith(path + ".")})
        if inside:
            source = f"{problem.source} with environment variable(s) {', '.join(inside)}"
            out.append(ConfigProblem(path, problem.message, source))
            continue
        out.append(problem)
    return out


def load_config(
    path: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> AppConfig:
    """Load, merge and validate the configuration; raise ConfigError listing every problem.

    With no ``path``, ``$RECORDING_STORAGE_CONFIG`` or ``conf/app.yaml`` is used if present;
    otherwise the defaults stand (the service can run from environment variables alone).
    """
    env = os.environ if env is None else env
    cfg_path = (
        Path(path) if path is not None else Path(env.get("RECORDING_STORAGE_CONFIG", DEFAULT_CONFIG_PATH))
    )
    data: dict[str, Any] = {}
    if config_file_used(path, env=env) is not None:
        loaded = load_yaml_file(cfg_path, what="configuration file")
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError([ConfigProblem("", "top level must be a mapping of sections", str(cfg_path))])
        data = loaded or {}
    base_dir = cfg_path.parent.parent if cfg_path.parent.name == "conf" else cfg_path.parent
    data = _merge(data, _env_overrides(env))
    if overrides:
        data = _merge(data, overrides)
    problems: list[ConfigProblem] = []
    data = expand_env(data, env, "", problems)
    data.setdefault("base_dir", str(base_dir.resolve()))
    try:
        config = AppConfig.model_validate(data)
    except ValidationError as exc:
        problems.extend(_blame_env(validation_problems(exc, source=str(cfg_path)), env))
        config = None
    if problems or config is None:
        raise ConfigError(problems)
    return config


def config_file_used(path: str | Path | None = None, *, env: Mapping[str, str] | None = None) -> Path | None:
    """The configuration file ``load_config(path)`` reads, or None when only defaults and the
    environment apply (no ``path``, no ``$RECORDING_STORAGE_CONFIG``, no ``conf/app.yaml``).

    ``check`` and ``config show`` say which file they used: a service silently running on
    defaults because the file sat elsewhere is a classic first-day trap.
    """
    env = os.environ if env is None else env
    if path is not None:
        return Path(path)
    if "RECORDING_STORAGE_CONFIG" in env:
        return Path(env["RECORDING_STORAGE_CONFIG"])
    return DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.exists() else None
