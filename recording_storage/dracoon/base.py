"""Shared plumbing of the client's endpoint groups (``nodes.py``, ``keys.py``, ``client.py``)."""

from __future__ import annotations

from typing import Any

from .auth import TokenManager
from .http import HttpCore

__all__ = ["ApiBase"]


class ApiBase:
    """Gives endpoint groups the account's request core once ``async with`` has opened it."""

    _core: HttpCore | None = None

    @property
    def http(self) -> HttpCore:
        if self._core is None:
            raise RuntimeError("DracoonClient used outside 'async with'")
        return self._core

    @property
    def tokens(self) -> TokenManager:
        """The account's token manager (exposed for health checks and tests)."""
        return self.http.auth

    async def _get(self, template: str, path: str, params: dict[str, str | int] | None = None) -> Any:
        reply = await self.http.request("GET", template, path=path, params=params)
        return reply.json(f"GET {template}")
