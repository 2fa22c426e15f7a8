"""Signing keys: made on first start, kept (encrypted) in identity's database, rotated by
`paymesh identity rotate-keys`.

The newest key that is not retired signs. Rotation adds a key and retires the others; a
retired key stays in JWKS until every token it signed has expired (the longest token
lifetime, plus the time a running server may take to notice the rotation, plus skew).
Each process re-reads the keys every `RELOAD_SECONDS`, so a rotation done by another
process (the CLI, a replica) is picked up without a restart.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import json
import time
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from joserfc.jwk import ECKey, KeySet, RSAKey

from paymesh.identity import repository
from paymesh.identity.models import SigningKey
from paymesh.identity.security import Cipher
from paymesh.kernel.config import IdentitySettings
from paymesh.kernel.db import Database, utcnow

RELOAD_SECONDS = 30.0
SKEW_SECONDS = 60


@dataclass(frozen=True)
class LoadedKey:
    kid: str
    algorithm: str
    private: RSAKey | ECKey
    public_jwk: dict[str, Any]
    retired: bool


def generate_key(algorithm: str) -> RSAKey | ECKey:
    parameters: Any = {"alg": algorithm, "use": "sig"}
    key: RSAKey | ECKey
    if algorithm == "ES256":
        key = ECKey.generate_key("P-256", parameters=parameters)
    else:
        key = RSAKey.generate_key(2048, parameters=parameters)
    key.ensure_kid()  # RFC 7638 thumbprint
    return key


@functools.lru_cache(maxsize=32)
def _imported(algorithm: str, private_jwk: str) -> RSAKey | ECKey:
    """The key object of a private JWK, parsed once per process: importing an RSA key
    checks its numbers (milliseconds), and every reload finds the same few keys."""
    private_dict = json.loads(private_jwk)
    if algorithm == "ES256":
        return ECKey.import_key(private_dict)
    return RSAKey.import_key(private_dict)


class SealedWithAnotherSecret(RuntimeError):
    """The stored keys cannot be opened with this process's signing secret."""


class KeyStore:
    def __init__(self, database: Database, cipher: Cipher, settings: IdentitySettings) -> None:
        self.database = database
        self.cipher = cipher
        self.settings = settings
        self._keys: list[LoadedKey] = []
        self._loaded_at = float("-inf")
        self._lock = asyncio.Lock()

    @property
    def retention_seconds(self) -> int:
        """How long a retired key stays in JWKS."""
        longest = max(self.settings.access_token_ttl_seconds, self.settings.id_token_ttl_seconds)
        return longest + int(RELOAD_SECONDS) + SKEW_SECONDS

    async def ensure(self) -> None:
        """Load the keys; make the first one when there is none that may sign."""
        await self.reload()
        if not any(not key.retired for key in self._keys):
            await self.rotate()

    async def reload(self) -> None:
        async with self._lock, self.database.transaction() as session:
            rows = await repository.published_keys(session, utcnow())
            self._keys = [self._load(row) for row in rows]
            self._loaded_at = time.monotonic()

    async def reload_if_stale(self) -> None:
        if time.monotonic() - self._loaded_at > RELOAD_SECONDS:
            await self.reload()

    async def rotate(self) -> str:
        """Publish a new signing key and retire the others; returns the new key id."""
        algorithm = self.settings.signing_algorithm
        key = generate_key(algorithm)
        now = utcnow()
        async with self.database.transaction() as session:
            session.add(
                SigningKey(
                    kid=str(key.kid),
                    algorithm=algorithm,
                    private_jwk=self.cipher.encrypt(json.dumps(key.as_dict(private=True))),
                    public_jwk=dict(key.as_dict(private=False)),
                    created_at=now,
                )
            )
            await session.flush()
            expires = now + dt.timedelta(seconds=self.retention_seconds)
            await repository.retire_keys(session, str(key.kid), now, expires)
        await self.reload()
        return str(key.kid)

    def _load(self, row: SigningKey) -> LoadedKey:
        try:
            private_jwk = self.cipher.decrypt(row.private_jwk)
        except InvalidTag:
            raise SealedWithAnotherSecret(
                f"identity's signing key {row.kid} was sealed with another "
                "PAYMESH_SIGNING_SECRET: start with the secret it was made with (keys are "
                "encrypted at rest with a key derived from it)"
            ) from None
        return LoadedKey(
            kid=row.kid,
            algorithm=row.algorithm,
            private=_imported(row.algorithm, private_jwk),
            public_jwk=dict(row.public_jwk),
            retired=row.retired_at is not None,
        )

    def signing_key(self) -> LoadedKey:
        for key in self._keys:
            if not key.retired:
                return key
        raise RuntimeError("no signing key loaded; KeyStore.ensure() runs on start")

    def jwks(self) -> dict[str, Any]:
        return {"keys": [key.public_jwk for key in self._keys]}

    def key_set(self) -> KeySet:
        return KeySet([key.private for key in self._keys])
