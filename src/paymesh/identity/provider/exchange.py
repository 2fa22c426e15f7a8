"""One OAuth2 exchange: the bridge between Authlib (synchronous) and our async database.

Authlib's hooks (`query_client`, `save_token`, ...) are plain methods. We read the request
(form, query, headers) first, then run Authlib in a greenlet on the event loop's thread
(SQLAlchemy's `greenlet_spawn`, the bridge its own async layer is built on); each hook
that needs the database hands a coroutine back to the loop (`Exchange.run`, a greenlet
switch) and resumes with its result. A worker thread did the same with two thread hops
per hook, each waiting for the GIL the busy loop holds: a third of the token endpoint's
CPU and most of its tail latency.
All of them share the exchange's one transaction: committed when the response is a
success, rolled back otherwise. Security effects that must survive a refusal (revoking a
refresh-token family on reuse, counting a failed login) are queued in `after` and run in
a transaction of their own once the exchange's transaction is closed — on SQLite a second
writer could not start while the first is open.
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import structlog
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.util import await_, greenlet_spawn
from sqlalchemy.util.concurrency import in_greenlet

from paymesh.kernel.db import Database

T = TypeVar("T")
AfterAction = Callable[[AsyncSession], Awaitable[None]]

log = structlog.get_logger("paymesh.identity")

_current: contextvars.ContextVar[Exchange] = contextvars.ContextVar("identity_exchange")


def current() -> Exchange:
    return _current.get()


class Exchange:
    def __init__(self, database: Database, address: str) -> None:
        self.database = database
        self.address = address
        self.after: list[AfterAction] = []
        self.values: dict[Any, Any] = {}
        self._session: AsyncSession | None = None

    async def session(self) -> AsyncSession:
        if self._session is None:
            self._session = self.database.sessions()
            await self._session.begin()
        return self._session

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """From Authlib's code under `call`: run `coroutine` on the event loop, wait for it."""
        if not in_greenlet():
            coroutine.close()
            raise RuntimeError("Exchange.run is for code running under Exchange.call")
        return await_(coroutine)

    async def call(self, function: Callable[[], T]) -> T:
        """Run synchronous Authlib code, with this exchange as `current()`."""
        token = _current.set(self)
        try:
            return await greenlet_spawn(function)
        finally:
            _current.reset(token)

    async def finish(self, *, commit: bool) -> None:
        session, self._session = self._session, None
        if session is not None:
            try:
                if commit:
                    await session.commit()
                    self.database.after_commit(session)
            finally:
                await session.close()
        actions, self.after = self.after, []
        for action in actions:
            try:
                async with self.database.transaction() as separate:
                    await action(separate)
            except Exception as error:  # a failed side effect must not hide the response
                log.error("identity_after_action_failed", error=error.__class__.__name__)
