"""Seed a tenant from a small YAML/JSON fixture (users with passwords and key pairs, rooms, members).

Format (every key but names, logins and passwords optional)::

    config: {use_s3_storage: false}          # EmulatorConfig keys (used by from_fixture)
    users:
      - {login: svc, password: pw, room_manager: true, id: 7,
         key_pair: {privateKeyContainer: {...}, publicKeyContainer: {...}}}   # or key_pairs: [...]
      - {login: alice, password: pw2, encryption_password: secret,   # a key pair generated here,
         key_pair_version: RSA-4096}                                  # "A" (RSA-2048) or RSA-4096
    rooms:
      - name: Recordings
        id: 1001
        encrypted: true
        admins: [svc]
        members: {alice: read, bob: [read, create]}   # "all", "edit", "read" or permission names
        quota: 1000000
        rooms: [{name: Sub}]          # sub-rooms inherit permissions (and encryption) by default
        folders: [{name: Drafts, folders: [...]}]

Users are referenced by login. :func:`seed` returns the ids by login and by room path
(``"Recordings/Sub"``), which is what a local-stack demo tenant needs to write its config.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .state import EmulatorState


@dataclass
class Seeded:
    """Ids created by :func:`seed`: users by login, rooms and folders by slash-joined path."""

    users: dict[str, int] = field(default_factory=dict)
    nodes: dict[str, int] = field(default_factory=dict)


def demo_fixture(
    *,
    login: str,
    password: str,
    encryption_password: str,
    members: Mapping[str, tuple[str, str]] | None = None,
    parent_room: str = "Recordings",
    parent_room_id: int = 1001,
    version: str = "RSA-4096",
    kdf_iterations: int | None = None,
) -> dict[str, Any]:
    """A demo tenant for the local stack: the service user as admin of one encrypted room.

    ``members`` maps more logins to ``(password, encryption_password)``; they get read access and
    a key pair, so the sharer has someone to serve missing file keys to. Key pairs are generated
    here (the emulator itself never needs private keys); ``kdf_iterations`` lowers the PBKDF2 cost
    for quick demos (default: the crypto module's, i.e. what real clients write).
    """

    def pair(secret: str) -> dict[str, Any]:
        return generated_key_pair(version, secret, kdf_iterations)

    users: list[dict[str, Any]] = [
        {"login": login, "password": password, "key_pair": pair(encryption_password)}
    ]
    for member, (member_password, member_secret) in (members or {}).items():
        users.append({"login": member, "password": member_password, "key_pair": pair(member_secret)})
    room = {
        "name": parent_room,
        "id": parent_room_id,
        "encrypted": True,
        "admins": [login],
        "members": {member: "read" for member in members or {}},
    }
    return {"users": users, "rooms": [room]}


def generated_key_pair(
    version: str, encryption_password: str, kdf_iterations: int | None = None
) -> dict[str, Any]:
    """A new ``UserKeyPairContainer`` as a client would upload it (private key encrypted with the
    password; ``kdf_iterations`` defaults to what real clients write)."""
    # Only seeding generates keys; the server itself never needs crypto, so it is loaded here.
    # recording-storage's crypto is the emulator's one test seam (README, "Test seam").
    try:
        from recording_storage.crypto import KeyPairVersion, generate_key_pair
    except ImportError as exc:  # the emulator installed on its own
        raise ValueError(
            "generating a key pair for a seeded user needs recording-storage's crypto: install "
            "recording-storage next to the emulator, or give the user a key_pair instead"
        ) from exc

    extra = {} if kdf_iterations is None else {"iterations": kdf_iterations}
    return dict(generate_key_pair(KeyPairVersion(version), encryption_password, **extra).to_json())


def load_fixture(path: str | Path) -> dict[str, Any]:
    """Read a YAML (or JSON, a YAML subset) fixture file."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a fixture is a mapping")
    return data


def seed(state: EmulatorState, fixture: Mapping[str, Any]) -> Seeded:
    """Create the fixture's users, then its rooms (depth first); raises ValueError on bad input."""
    unknown = set(fixture) - {"config", "users", "rooms"}
    if unknown:
        raise ValueError(f"unknown fixture key(s): {sorted(unknown)}")
    result = Seeded()
    for spec in fixture.get("users") or []:
        if not isinstance(spec, Mapping) or "login" not in spec or "password" not in spec:
            raise ValueError("every user needs a login and a password")
        _only(
            spec,
            {
                "login",
                "password",
                "id",
                "room_manager",
                "key_pair",
                "key_pairs",
                "encryption_password",
                "key_pair_version",
                "first_name",
                "last_name",
                "email",
            },
            "user",
        )
        key_pair = spec.get("key_pair")
        if spec.get("encryption_password") is not None:
            if key_pair is not None:
                raise ValueError(f"user {spec['login']!r}: give key_pair or encryption_password, not both")
            version = str(spec.get("key_pair_version", "RSA-4096"))
            key_pair = generated_key_pair(version, str(spec["encryption_password"]))
        user = state.add_user(
            str(spec["login"]),
            str(spec["password"]),
            key_pair,
            key_pairs=spec.get("key_pairs") or (),
            first_name=spec.get("first_name"),
            last_name=spec.get("last_name", "Emulated"),
            email=spec.get("email"),
            room_manager=bool(spec.get("room_manager", False)),
            user_id=spec.get("id"),
        )
        result.users[user.login] = user.id
    for spec in fixture.get("rooms") or []:
        _room(state, spec, None, "", result)
    return result


def _only(spec: Mapping[str, Any], allowed: set[str], what: str) -> None:
    unknown = set(spec) - allowed
    if unknown:
        label = spec.get("name") or spec.get("login")
        raise ValueError(f"unknown {what} key(s) {sorted(unknown)} in {label!r}")


def _user_id(result: Seeded, login: str) -> int:
    if login not in result.users:
        raise ValueError(f"unknown user {login!r} in fixture")
    return result.users[login]


def _room(
    state: EmulatorState, spec: Mapping[str, Any], parent_id: int | None, prefix: str, result: Seeded
) -> None:
    _only(
        spec,
        {
            "name",
            "id",
            "encrypted",
            "admins",
            "members",
            "quota",
            "inherit_permissions",
            "classification",
            "rooms",
            "folders",
        },
        "room",
    )
    members = {_user_id(result, login): perms for login, perms in (spec.get("members") or {}).items()}
    room = state.add_room(
        str(spec["name"]),
        parent_id,
        encrypted=spec.get("encrypted"),
        admins=[_user_id(result, login) for login in spec.get("admins") or []],
        members=members,
        inherit_permissions=spec.get("inherit_permissions"),
        quota=spec.get("quota"),
        classification=int(spec.get("classification", 2)),
        node_id=spec.get("id"),
    )
    path = f"{prefix}{room.name}"
    result.nodes[path] = room.id
    for child in spec.get("rooms") or []:
        _room(state, child, room.id, f"{path}/", result)
    for folder in spec.get("folders") or []:
        _folder(state, folder, room.id, f"{path}/", result)


def _folder(
    state: EmulatorState, spec: Mapping[str, Any], parent_id: int, prefix: str, result: Seeded
) -> None:
    _only(spec, {"name", "id", "folders"}, "folder")
    folder = state.add_folder(str(spec["name"]), parent_id, node_id=spec.get("id"))
    path = f"{prefix}{folder.name}"
    result.nodes[path] = folder.id
    for child in spec.get("folders") or []:
        _folder(state, child, folder.id, f"{path}/", result)
