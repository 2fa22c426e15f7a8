"""What crosses the gateway's hop to a service: which headers go on and which come back,
and a client's request as the upstream gets it (its head built once, its body relayed as
it arrives)."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.types import Receive, Scope

from paymesh.gateway.pool import Connection
from paymesh.kernel.errors import BadRequest

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
NOT_FORWARDED = HOP_BY_HOP | {b"host", b"expect"}
"""Request headers an upstream does not get: its own Host is set; the client's `Expect:
100-continue` was answered by the server in front of the gateway."""
RELAYED_NOT = HOP_BY_HOP | {b"date", b"server"}
"""Answer headers not relayed: the server in front of the gateway sets its own Date and
Server."""
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


def strip_hop_by_hop(
    headers: Sequence[tuple[bytes, bytes]], dropped: frozenset[bytes] = HOP_BY_HOP
) -> list[tuple[bytes, bytes]]:
    """`headers` without the hop-by-hop ones (or the `dropped` ones), including those a
    `Connection` header names."""
    named = connection_tokens(headers)
    if named:
        dropped = dropped | named
    return [(name, value) for name, value in headers if name.lower() not in dropped]


class ClientGone(Exception):
    """The client disconnected while its request body was being relayed."""


class ProxiedRequest:
    """The client's request as an upstream gets it: its head (without the hop-by-hop
    headers, `Host` and `Expect`) built once, its body relayed as it arrives."""

    __slots__ = (
        "_chunked",
        "_has_body",
        "_lines",
        "_prefix",
        "body_started",
        "head_only",
        "receive",
        "replayable",
    )

    def __init__(self, scope: Scope, receive: Receive) -> None:
        self.receive = receive
        method: str = scope["method"]
        self.head_only = method == "HEAD"
        headers: Sequence[tuple[bytes, bytes]] = scope["headers"]
        named = connection_tokens(headers)
        lines: list[bytes] = []
        length = b""
        chunked = False
        for name, value in headers:
            lower = name.lower()
            if lower == b"content-length":
                length = value.strip()
            elif lower == b"transfer-encoding":
                chunked = True
            if lower in NOT_FORWARDED or (named and lower in named):
                continue
            lines.append(lower + b": " + value + b"\r\n")
        self._chunked = chunked and not length
        if self._chunked:
            lines.append(b"transfer-encoding: chunked\r\n")
        self._has_body = self._chunked or (bool(length) and length != b"0")
        self._lines = lines
        self._prefix = (
            method.encode("ascii") + b" " + path_and_query(scope) + b" HTTP/1.1\r\nhost: "
        )
        self.replayable = method in IDEMPOTENT_METHODS and not self._has_body
        self.body_started = False

    def head(self, host: bytes) -> bytes:
        head = b"".join([self._prefix, host, b"\r\n", *self._lines, b"\r\n"])
        # One line per header: a CR or LF inside a value would start a header of its own.
        lines = len(self._lines) + 3  # the request line, host, the headers, the blank line
        if head.count(b"\n") != lines or head.count(b"\r") != lines:
            raise BadRequest("a request header contains a line break")
        return head

    async def send_body(self, connection: Connection) -> None:
        if not self._has_body:
            return
        self.body_started = True
        while True:
            message = await self.receive()
            if connection.timed_out:
                raise TimeoutError
            if message["type"] == "http.disconnect":
                raise ClientGone()
            chunk = message.get("body", b"")
            if chunk:
                if self._chunked:
                    connection.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
                else:
                    connection.write(chunk)
                await connection.drain()
            if connection.headers_done:  # answered before the whole body: stop sending
                connection.poisoned = True
                return
            if not message.get("more_body", False):
                break
        if self._chunked:
            connection.write(b"0\r\n\r\n")


def connection_tokens(headers: Sequence[tuple[bytes, bytes]]) -> set[bytes]:
    """The header names a `Connection` header declares hop-by-hop."""
    named: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            named.update(token.strip().lower() for token in value.split(b","))
    return named


def path_and_query(scope: Scope) -> bytes:
    raw: bytes = scope.get("raw_path") or scope["path"].encode()
    query: bytes = scope.get("query_string", b"")
    return raw + b"?" + query if query else raw
