"""A DRACOON API emulator: the subset this service uses, with DRACOON's status codes and bodies.

Tests, ``make demo`` and the local stack run against it instead of a real DRACOON. It follows the
real API (OpenAPI 4.26.7 and the SDKs' observed behaviour), not our client, so the client's
mistakes fail here. Entry points: :class:`DracoonEmulator` (``async with``; ``.state`` to seed and
inspect; ``.faults`` to inject failures) and :func:`run_emulator`.
"""

from .app import DracoonEmulator, build_app, run_emulator
from .config import EmulatorConfig
from .faults import FaultInjector, FaultRule
from .fixture import Seeded, demo_fixture, load_fixture, seed
from .model import ALL_PERMISSIONS, EDIT_PERMISSIONS, PERMISSIONS, READ_PERMISSIONS, Node, User
from .state import EmulatorState

__all__ = [
    "ALL_PERMISSIONS",
    "EDIT_PERMISSIONS",
    "PERMISSIONS",
    "READ_PERMISSIONS",
    "DracoonEmulator",
    "EmulatorConfig",
    "EmulatorState",
    "FaultInjector",
    "FaultRule",
    "Node",
    "Seeded",
    "User",
    "build_app",
    "demo_fixture",
    "load_fixture",
    "run_emulator",
    "seed",
]
