"""The gateway's HTTP hop to a service, against an httpx mock transport."""

from __future__ import annotations

from typing import Any

import httpx
from starlette.types import Message

from paymesh.gateway.upstreams import HttpUpstream, proxy_client


class Streamed(httpx.AsyncByteStream):
    """A body that arrives as a stream, as from a real connection."""

    def __init__(self, *chunks: bytes) -> None:
        self.chunks = chunks

    async def __aiter__(self):  # type: ignore[no-untyped-def]
        for chunk in self.chunks:
            yield chunk


def scope(path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "method": "GET",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"a=1&b=%20",
        "headers": headers,
    }


async def forward(upstream: HttpUpstream, headers: list[tuple[bytes, bytes]]) -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await upstream.forward(scope("/v1/x", headers), receive, send, timeout_seconds=5)
    return sent


class TestHttpUpstream:
    async def test_no_cookie_of_one_client_reaches_anothers_request(self) -> None:
        seen: list[httpx.Request] = []

        def answer(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return httpx.Response(
                200,
                headers={"set-cookie": "session=alice-secret; Path=/"},
                stream=Streamed(b"ok"),
            )

        upstream = HttpUpstream(
            "svc", ["http://svc.internal"], client=proxy_client(httpx.MockTransport(answer))
        )
        await forward(upstream, [(b"host", b"public.example")])
        await forward(upstream, [(b"host", b"public.example")])

        assert "cookie" not in seen[1].headers
        await upstream.client.aclose()

    async def test_path_query_and_headers_are_kept_hop_by_hop_and_host_are_not(self) -> None:
        seen: list[httpx.Request] = []

        def answer(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return httpx.Response(
                201,
                headers={"x-answer": "1", "connection": "close", "date": "x", "server": "y"},
                stream=Streamed(b"ma", b"de"),
            )

        upstream = HttpUpstream(
            "svc", ["http://svc.internal"], client=proxy_client(httpx.MockTransport(answer))
        )
        sent = await forward(
            upstream,
            [
                (b"host", b"public.example"),
                (b"x-custom", b"kept"),
                (b"connection", b"keep-alive, x-secret-hop"),
                (b"x-secret-hop", b"dropped"),
                (b"te", b"trailers"),
            ],
        )

        request = seen[0]
        assert str(request.url) == "http://svc.internal/v1/x?a=1&b=%20"
        assert request.headers["host"] == "svc.internal"
        assert request.headers["x-custom"] == "kept"
        for name in ("x-secret-hop", "te", "connection"):
            assert name not in request.headers or name == "connection"
        start = sent[0]
        assert start["status"] == 201
        names = {name for name, _ in start["headers"]}
        assert b"x-answer" in names
        assert not names & {b"connection", b"date", b"server"}
        assert b"".join(message.get("body", b"") for message in sent[1:]) == b"made"
        await upstream.client.aclose()
