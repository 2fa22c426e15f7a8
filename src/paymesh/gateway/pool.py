"""A keep-alive HTTP/1.1 connection pool for the gateway's hop to one service process.

Each connection is an asyncio protocol; `httptools` (llhttp, the parser uvicorn uses)
parses the answers. No client library sits in between: no request/response models, no
cookie jar, no URL re-parsing, no lock or task per request. What a request costs here is
writing its head, one timer, and the parser's callbacks.

- A connection is reused only after a complete answer its upstream did not ask to close;
  the newest idle one is taken first; one idle longer than `idle_expiry_seconds` (below
  uvicorn's 5 s keep-alive) is closed instead of risking the upstream closing it while our
  request is on its way. A connection the upstream closes while idle drops out at once
  (the protocol always reads: no poll of every idle socket per request).
- Answers stream: body chunks are handed on as they arrive; past `HIGH_WATER` bytes not yet
  taken the socket stops being read until they are (back-pressure, both ways).
- Never more than `max_connections` at once: further requests wait for one to come back.
"""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from typing import cast

import httptools

HIGH_WATER = 256 * 1024
"""Bytes of an answer read ahead of the client before the upstream socket is paused."""
_FRAMING = frozenset({b"content-length", b"transfer-encoding"})


class ConnectFailed(Exception):
    """No connection could be made (refused, unreachable, or too slow to accept)."""


class ConnectionBroken(Exception):
    """The connection ended or garbled before its answer was complete."""

    def __init__(self, message: str, *, received: bool, reused: bool) -> None:
        super().__init__(message)
        self.received = received
        self.reused = reused


class Connection(asyncio.Protocol):
    """One keep-alive connection: one request at a time, its answer parsed as it comes."""

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.reused = False
        self.idle_since = 0.0
        self.expecting = False
        self.head_only = False
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.headers_done = False
        self.complete = False
        self.keep_alive = False
        self.received = False
        self.framed = False
        self.interim = False
        self.timed_out = False
        self.error: str | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._reading_paused = False
        self._writing_paused = False
        self.poisoned = False

    # --- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:  # the head and the body go out as separate writes
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        if not self.expecting:  # nothing was asked: an upstream talking out of turn
            self.close()
            return
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as error:
            self.error = f"unparsable answer: {error}"
            self.close()
        if self.buffered > HIGH_WATER and not self._reading_paused and self.transport:
            self._reading_paused = True
            self.transport.pause_reading()
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.headers_done and not self.complete and not self.framed and self.error is None:
            self.complete = True  # an answer without a length ends with its connection
            self.keep_alive = False
        self.pool.forget(self)
        self._wake()

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._wake()

    # --- httptools callbacks ------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name in _FRAMING:
            self.framed = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200:  # 100 Continue and the like: the real answer follows
            self.interim = True
            self.headers = []
            self.framed = False
            return
        self.status = status
        self.headers_done = True
        if self.head_only:  # llhttp cannot be told the answer to HEAD has no body
            self.complete = True
            self.keep_alive = False

    def on_body(self, body: bytes) -> None:
        if not self.head_only:
            self.chunks.append(body)
            self.buffered += len(body)

    def on_message_complete(self) -> None:
        if self.interim:
            self.interim = False
            return
        if not self.head_only:
            self.complete = True
            self.keep_alive = self.parser.should_keep_alive()

    # --- used by the upstream -----------------------------------------------------------

    def begin(self, head: bytes, *, head_only: bool) -> None:
        """Write a request's head and get ready for its answer."""
        self.expecting = True
        self.head_only = head_only
        self.write(head)

    def write(self, data: bytes) -> None:
        if self.closed or self.transport is None:
            raise self.broken("closed before the request was sent")
        self.transport.write(data)

    async def drain(self) -> None:
        while self._writing_paused and not self.closed:
            await self.wait()

    def arm(self, seconds: float) -> None:
        """From now on, a wait longer than `seconds` in total raises TimeoutError."""
        self.disarm()
        self.timed_out = False
        self._timer = asyncio.get_running_loop().call_later(seconds, self._expire)

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        self._timer = None
        self.timed_out = True
        self._wake()

    async def wait(self) -> None:
        """Until the connection has news: data, its end, or the armed timer."""
        if self.timed_out:
            raise TimeoutError
        waiter = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        try:
            await waiter
        finally:
            self._waiter = None
        if self.timed_out:
            raise TimeoutError

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def answer_head(self) -> None:
        """Until the answer's status and headers are in."""
        while not self.headers_done:
            if self.closed or self.error is not None:
                raise self.broken("closed before answering")
            await self.wait()

    def take(self) -> bytes:
        """The body bytes received and not yet taken."""
        chunks = self.chunks
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self.buffered = 0
        if self._reading_paused and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()
        return body

    def broken(self, message: str) -> ConnectionBroken:
        return ConnectionBroken(self.error or message, received=self.received, reused=self.reused)

    def reusable(self) -> bool:
        return (
            self.complete
            and self.keep_alive
            and not self.closed
            and not self.chunks
            and not self.poisoned
        )

    def recycle(self) -> None:
        self.disarm()
        self.expecting = False
        self.head_only = False
        self.status = 0
        self.headers = []
        self.buffered = 0
        self.headers_done = self.complete = self.keep_alive = self.received = False
        self.framed = self.interim = self.timed_out = False

    def close(self) -> None:
        self.disarm()
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class ConnectionPool:
    """Keep-alive connections to one `host:port`."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        max_idle: int = 32,
        max_connections: int = 256,
        idle_expiry_seconds: float = 4.0,
    ) -> None:
        self.host = host
        self.port = port
        self.max_idle = max_idle
        self.max_connections = max_connections
        self.idle_expiry_seconds = idle_expiry_seconds
        self.idle: list[Connection] = []
        self.open = 0
        self.opened_total = 0
        self._waiting: deque[asyncio.Future[None]] = deque()

    async def acquire(self, connect_timeout: float, *, fresh: bool = False) -> Connection:
        """An idle connection (the newest), or a new one (always when `fresh`)."""
        now = asyncio.get_running_loop().time()
        idle = self.idle
        while idle and not fresh:
            connection = idle.pop()
            if connection.closed or now - connection.idle_since > self.idle_expiry_seconds:
                connection.close()
                continue
            connection.reused = True
            return connection
        while self.open >= self.max_connections:
            waiter = asyncio.get_running_loop().create_future()
            self._waiting.append(waiter)
            await waiter
            if idle and not fresh:
                return await self.acquire(connect_timeout)
        return await self._connect(connect_timeout)

    async def _connect(self, seconds: float) -> Connection:
        self.open += 1
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(seconds):
                _, connection = await loop.create_connection(
                    lambda: Connection(self), self.host, self.port
                )
        except (OSError, TimeoutError) as error:
            self.open -= 1
            self._wake_one()
            raise ConnectFailed(f"{self.host}:{self.port}: {error or 'timed out'}") from error
        self.opened_total += 1
        return connection

    def release(self, connection: Connection) -> None:
        """After an answer: back to the idle list if it can carry another, else closed."""
        if connection.reusable() and len(self.idle) < self.max_idle:
            connection.recycle()
            connection.idle_since = asyncio.get_running_loop().time()
            self.idle.append(connection)
            self._wake_one()
        else:
            connection.close()

    def forget(self, connection: Connection) -> None:
        """A connection has closed (called once, by the connection)."""
        self.open -= 1
        if connection in self.idle:
            self.idle.remove(connection)
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def close(self) -> None:
        for connection in list(self.idle):
            connection.close()
        self.idle.clear()
        await asyncio.sleep(0)  # the transports' close callbacks run
