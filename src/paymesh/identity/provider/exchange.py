"""One OAuth2 exchange: the bridge between Authlib (synchronous) and our async database.

Authlib's hooks (`query_client`, `save_token`, ...) are plain methods. We read the request
(form, query, headers) first, then run Authlib in a worker thread; each hook that needs
the database hands a coroutine back to the event loop (`Exchange.run`) and waits for it.
All of them share the exchange's one transaction: committed when the response is a
success, rolled back otherwise. Security effects that must survive a refusal (revoking a
refresh-token family on reuse, counting a failed login) are queued in `after` and run in
a transaction of their own once the exchange's transaction is closed — on SQLite a second
writer could not start while the first is open.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

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
        self._loop: asyncio.AbstractEventLoop | None = None

    async def session(self) -> AsyncSession:
        if self._session is None:
            self._session = self.database.sessions()
            await self._session.begin()
        return self._session

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """From the Authlib thread: run `coroutine` on the event loop and wait for it."""
        assert self._loop is not None, "Exchange.run is for code running under call()"
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    async def call(self, function: Callable[[], T]) -> T:
        """Run synchronous Authlib code in a thread, with this exchange as `current()`."""
        self._loop = asyncio.get_running_loop()
        token = _current.set(self)
        try:
            return await asyncio.to_thread(function)
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
