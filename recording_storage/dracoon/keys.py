"""Key endpoints: the account's key pairs, missing file keys and serving them, our file keys."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from ..crypto import EncryptedFileKey, KeyPairVersion, UserKeyPair
from .base import ApiBase
from .errors import NotFound
from .http import Retry
from .models import FileKeyItem, MissingKeys, bad_response, parse_file_key, parse_key_pair

__all__ = ["MISSING_KEYS_LIMIT", "SET_KEYS_BATCH", "KeyOps"]

MISSING_KEYS_LIMIT = 100  # enforced by the server for missingFileKeys
SET_KEYS_BATCH = 100


class KeyOps(ApiBase):
    """Key calls of ``DracoonClient``."""

    who: str

    async def get_key_pairs(self) -> list[UserKeyPair]:
        """Every key pair of the account (two during a migration); [] if it has none."""
        what = "GET /user/account/keypairs"
        try:
            data = await self._get("/user/account/keypairs", "/user/account/keypairs")
        except NotFound as exc:
            if exc.code == "no_key_pair":
                return []
            # Servers before 4.24 lack the plural endpoint.
            try:
                single = await self._get("/user/account/keypair", "/user/account/keypair")
            except NotFound as inner:
                if inner.code == "no_key_pair":
                    return []
                raise
            data = [single]
        if not isinstance(data, list):
            raise bad_response(what, "expected a JSON array")
        return [kp for kp in (parse_key_pair(d, what) for d in data) if kp is not None]

    async def get_key_pair(self, version: KeyPairVersion | None = None) -> UserKeyPair:
        """The key pair of ``version``, or the strongest one; NotFound ``no_key_pair`` if none."""
        pairs = await self.get_key_pairs()
        ranked = sorted(pairs, key=lambda p: p.public_key_container.version != KeyPairVersion.RSA_4096)
        for pair in ranked:
            if version is None or pair.public_key_container.version == version:
                return pair
        which = f"{version.value} key pair" if version is not None else "key pair"
        raise NotFound(f"DRACOON account {self.who} has no {which}", code="no_key_pair")

    async def missing_file_keys(
        self,
        *,
        file_id: int | None = None,
        room_id: int | None = None,
        user_id: int | None = None,
        use_key: str | None = None,
        offset: int = 0,
        limit: int = MISSING_KEYS_LIMIT,
    ) -> MissingKeys:
        """One page of (user, file) pairs lacking a file key, with the keys needed to serve them."""
        params: dict[str, str | int] = {"offset": offset, "limit": max(1, min(limit, MISSING_KEYS_LIMIT))}
        for key, value in (
            ("file_id", file_id),
            ("room_id", room_id),
            ("user_id", user_id),
            ("use_key", use_key),
        ):
            if value is not None:
                params[key] = value
        return MissingKeys.from_json(
            await self._get("/nodes/missingFileKeys", "/nodes/missingFileKeys", params)
        )

    async def iter_missing_file_keys(
        self, *, file_id: int | None = None, room_id: int | None = None, limit: int = MISSING_KEYS_LIMIT
    ) -> AsyncIterator[MissingKeys]:
        """Every page, advancing ``offset`` by the items returned, until a page is empty.

        ``total`` is only a lower bound, so it is not used to stop (bug 14 of the original).
        This lists what is missing *now*: a caller that serves keys between pages shrinks
        the list under the offset and should re-read from offset 0 instead (as the sharer does).
        """
        offset = 0
        while True:
            page = await self.missing_file_keys(file_id=file_id, room_id=room_id, offset=offset, limit=limit)
            if not page.items:
                return
            yield page
            offset += len(page.items)

    async def set_file_keys(self, items: Sequence[FileKeyItem]) -> None:
        """Hand file keys to users, at most 100 per request (keys a user already has are ignored)."""
        for start in range(0, len(items), SET_KEYS_BATCH):
            batch = [item.to_json() for item in items[start : start + SET_KEYS_BATCH]]
            await self.http.request(
                "POST", "/nodes/files/keys", json_body={"items": batch}, ok=(200, 204), retry=Retry.ALWAYS
            )

    async def get_user_file_key(
        self, file_id: int, *, version: KeyPairVersion | None = None
    ) -> EncryptedFileKey:
        """Our own encrypted copy of a file's key (NotFound ``no_file_key`` until it is served)."""
        what = "GET /nodes/files/{id}/user_file_key"
        params: dict[str, str | int] | None = {"version": version.value} if version is not None else None
        data = await self._get(
            "/nodes/files/{id}/user_file_key", f"/nodes/files/{file_id}/user_file_key", params
        )
        key = parse_file_key(data)
        if key is None:
            raise bad_response(what, "unusable file key")
        return key
