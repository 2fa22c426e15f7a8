"""Which access tokens no longer count, although their signature and expiry still hold.

A `Revocation` names what it covers — one token (`token`, by `jti`), a refresh-token
family (`family`), a login session (`session`), every token of a user (`subject`) or of a
client (`client`) — and an instant, `not_before`: a covered token issued (`iat`) before it
is refused. Identity decides revocations (logout, RFC 7009, refresh reuse, a disabled,
deleted or demoted user, a disabled client, a password change) and issues every later
token of that subject with `iat` at or after the stamp, so new logins work at once.

Every process keeps the revocations in memory (`RevocationRegistry`) and checks each
request against it — a few dictionary look-ups. Identity applies its own at commit (in one
process the check is immediate); the `identity.tokens.revoked` event carries them to the
shared feed (`RedisRevocationFeed`), which every other process reads every second, so a
revocation takes effect everywhere within a few seconds. An entry is kept only as long as
a token it covers can live (`expires_at`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol

import structlog

from paymesh.kernel.errors import Unauthenticated
from paymesh.kernel.jsonutil import dumps, loads

log = structlog.get_logger("paymesh.revocation")

Kind = Literal["token", "family", "session", "subject", "client", "client_record"]
KINDS: tuple[Kind, ...] = ("token", "family", "session", "subject", "client", "client_record")
"""`client_record` ends no token (no token is covered by that key): it tells the processes
that keep a client's registration in memory (identity's token endpoint) that it changed
at `not_before`, through the same tables, event and feed."""


@dataclass(frozen=True, slots=True)
class Revocation:
    kind: Kind
    value: str
    not_before: float
    """Unix time: covered tokens with `iat` before this are refused."""
    expires_at: float
    """Unix time after which no covered token can still be valid."""

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.value}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Revocation:
        kind = data["kind"]
        if kind not in KINDS:
            raise ValueError(f"unknown revocation kind {kind!r}")
        return cls(
            kind=kind,
            value=str(data["value"]),
            not_before=float(data["not_before"]),
            expires_at=float(data["expires_at"]),
        )


class RevocableToken(Protocol):
    """What the registry needs of a verified token (a `Caller`)."""

    @property
    def revocation_keys(self) -> Iterable[str]: ...

    @property
    def issued_at(self) -> float: ...


class RevocationFeed(Protocol):
    """Where revocations travel between processes."""

    async def publish(self, revocations: list[Revocation]) -> None: ...

    async def read_since(self, since: float) -> tuple[list[Revocation], float]: ...

    async def close(self) -> None: ...


class RevocationRegistry:
    """This process's view of every revocation still in force."""

    def __init__(
        self, feed: RevocationFeed | None = None, *, sync_interval_seconds: float = 1.0
    ) -> None:
        self.feed = feed
        self.sync_interval_seconds = sync_interval_seconds
        self._entries: dict[str, tuple[float, float]] = {}
        self._watermark = 0.0
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    def __len__(self) -> int:
        return len(self._entries)

    def apply(self, revocations: Iterable[Revocation]) -> None:
        """Take revocations into force in this process (later stamps win)."""
        now = time.time()
        for item in revocations:
            if item.expires_at <= now:
                continue
            current = self._entries.get(item.key)
            if current is None:
                self._entries[item.key] = (item.not_before, item.expires_at)
            else:
                self._entries[item.key] = (
                    max(current[0], item.not_before),
                    max(current[1], item.expires_at),
                )

    async def publish(self, revocations: list[Revocation]) -> None:
        """Apply here and send to the other processes through the feed."""
        self.apply(revocations)
        if self.feed is not None and revocations:
            await self.feed.publish(revocations)

    def not_before(self, kind: Kind, value: str) -> float:
        """The stamp in force for (`kind`, `value`), 0 when none."""
        entry = self._entries.get(f"{kind}:{value}")
        return entry[0] if entry is not None and entry[1] > time.time() else 0.0

    def check(self, token: RevocableToken) -> None:
        """Raise `Unauthenticated` when a revocation covers `token`."""
        if not self._entries:
            return  # the usual case: no key list built on the request path
        issued_at = token.issued_at
        for key in token.revocation_keys:
            entry = self._entries.get(key)
            if entry is not None and issued_at < entry[0]:
                raise Unauthenticated(detail="the token was revoked")

    def forget_expired(self) -> None:
        now = time.time()
        for key in [key for key, (_, expires) in self._entries.items() if expires <= now]:
            del self._entries[key]

    # --- the shared feed ---------------------------------------------------------------

    async def sync(self) -> None:
        """Read what other processes published since the last read."""
        if self.feed is None:
            return
        revocations, self._watermark = await self.feed.read_since(self._watermark)
        self.apply(revocations)

    async def start(self) -> None:
        if self.feed is None or self._task is not None:
            return
        await self.sync()
        self._stopping.clear()
        self._task = asyncio.create_task(self._run(), name="revocation-sync")

    async def _run(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.sync_interval_seconds)
            if self._stopping.is_set():
                return
            try:
                await self.sync()
                self.forget_expired()
            except Exception as error:  # the feed is down: keep what we have, retry
                log.warning("revocation_sync_failed", error=error.__class__.__name__)

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            await self._task
            self._task = None
        if self.feed is not None:
            await self.feed.close()


class RedisRevocationFeed:
    """Revocations in one Redis sorted set, scored by the time they were published.

    Readers ask for everything scored after their watermark less a small overlap (two
    publishers' clocks and in-flight writes), so nothing published is missed; applying an
    entry twice changes nothing. Entries older than `retention_seconds` are trimmed."""

    OVERLAP_SECONDS = 5.0

    def __init__(
        self, url: str, *, key: str = "paymesh:revocations", retention_seconds: float = 86400
    ) -> None:
        from redis.asyncio import Redis

        self._redis: Any = Redis.from_url(url)
        self.key = key
        self.retention_seconds = retention_seconds

    async def publish(self, revocations: list[Revocation]) -> None:
        now = time.time()
        members = {dumps(item.as_dict()).decode(): now for item in revocations}
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zadd(self.key, members)
            pipe.zremrangebyscore(self.key, "-inf", now - self.retention_seconds)
            await pipe.execute()

    async def read_since(self, since: float) -> tuple[list[Revocation], float]:
        now = time.time()
        low = max(since - self.OVERLAP_SECONDS, now - self.retention_seconds)
        members = await self._redis.zrangebyscore(self.key, low, "+inf")
        revocations = []
        for member in members:
            try:
                revocations.append(Revocation.from_dict(loads(member)))
            except (ValueError, KeyError, TypeError):
                log.warning("revocation_feed_entry_ignored")
        return revocations, now

    async def close(self) -> None:
        await self._redis.aclose()
