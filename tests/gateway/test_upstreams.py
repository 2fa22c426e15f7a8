"""The gateway's HTTP hop to a service (`HttpUpstream` over `gateway/pool.py`), against real
servers on loopback: uvicorn serving a small ASGI app, and raw asyncio servers where the
test needs an upstream that misbehaves (closes kept-alive connections, never answers)."""

from __future__ import annotations

import asyncio
import json
import random
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import uvicorn
from starlette.types import Message, Receive, Scope, Send

from paymesh.gateway.breaker import UpstreamFailure
from paymesh.gateway.errors import UpstreamTimeout, UpstreamUnavailable
from paymesh.gateway.upstreams import HttpUpstream, is_failure
from paymesh.kernel.errors import BadRequest

BIG_CHUNK = 64 * 1024
BIG_CHUNKS = 128  # 8 MiB


async def echo_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers with what it received; `/big` streams 8 MiB; `/slow?s` waits first."""
    assert scope["type"] == "http"
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    if scope["path"] == "/slow":
        await asyncio.sleep(float(scope["query_string"] or b"0.1"))
    if scope["path"] == "/big":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for number in range(BIG_CHUNKS):
            chunk = bytes([number % 256]) * BIG_CHUNK
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    if scope["path"] == "/jitter":
        await asyncio.sleep(random.uniform(0, 0.02))
    answer = json.dumps(
        {
            "method": scope["method"],
            "target": scope["raw_path"].decode() + "?" + scope["query_string"].decode(),
            "headers": [[name.decode(), value.decode()] for name, value in scope["headers"]],
            "body": body.decode(),
            "client_port": scope["client"][1],
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": {"/unavailable": 503, "/health": 200}.get(scope["path"], 201),
            "headers": [
                (b"content-type", b"application/json"),
                (b"set-cookie", b"session=alice-secret; Path=/"),
                (b"connection", b"x-secret-hop"),
                (b"x-secret-hop", b"dropped"),
                (b"x-answer", b"kept"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": answer})


def _listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@pytest.fixture
async def echo_url() -> AsyncIterator[str]:
    sock = _listening_socket()
    server = uvicorn.Server(
        uvicorn.Config(echo_app, lifespan="off", log_config=None, access_log=False)
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # noqa: ASYNC110 (uvicorn's Server has only the flag)
        await asyncio.sleep(0.01)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    await task


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
async def raw_server() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    """Starts asyncio servers whose connections the test's handler drives byte by byte."""
    servers: list[asyncio.Server] = []

    async def start(handler: Handler) -> str:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        servers.append(server)
        return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"

    yield start
    for server in servers:
        server.close()


def dead_url() -> str:
    """A loopback port nothing listens on (refused connections)."""
    sock = _listening_socket()
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}"


def scope(
    path: str = "/v1/x",
    headers: list[tuple[bytes, bytes]] | None = None,
    method: str = "GET",
    query: bytes = b"a=1&b=%20",
) -> dict[str, Any]:
    return {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "headers": headers if headers is not None else [(b"host", b"public.example")],
    }


async def forward(
    upstream: HttpUpstream,
    request: dict[str, Any] | None = None,
    body: list[bytes] | None = None,
    timeout_seconds: float = 5,
) -> list[Message]:
    sent: list[Message] = []
    chunks = list(body or [b""])

    async def receive() -> Message:
        chunk = chunks.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    async def send(message: Message) -> None:
        sent.append(message)

    await upstream.forward(request or scope(), receive, send, timeout_seconds=timeout_seconds)
    return sent


def answer_of(sent: list[Message]) -> tuple[int, dict[bytes, bytes], bytes]:
    start, *rest = sent
    assert start["type"] == "http.response.start"
    assert rest[-1].get("more_body", False) is False
    return start["status"], dict(start["headers"]), b"".join(m["body"] for m in rest)


def echoed(sent: list[Message]) -> dict[str, Any]:
    _, _, body = answer_of(sent)
    document: dict[str, Any] = json.loads(body)
    document["header_map"] = dict(document["headers"])
    return document


class TestRelay:
    async def test_path_query_and_headers_are_kept_hop_by_hop_and_host_are_not(
        self, echo_url: str
    ) -> None:
        upstream = HttpUpstream("svc", [echo_url])
        sent = await forward(
            upstream,
            scope(
                headers=[
                    (b"host", b"public.example"),
                    (b"x-custom", b"kept"),
                    (b"connection", b"keep-alive, x-secret-hop"),
                    (b"x-secret-hop", b"dropped"),
                    (b"te", b"trailers"),
                    (b"expect", b"100-continue"),
                ]
            ),
        )

        status, headers, _ = answer_of(sent)
        seen = echoed(sent)
        assert seen["target"] == "/v1/x?a=1&b=%20"
        assert seen["header_map"]["host"] == echo_url.removeprefix("http://")
        assert seen["header_map"]["x-custom"] == "kept"
        assert not {"x-secret-hop", "te", "connection", "expect"} & set(seen["header_map"])
        assert status == 201
        assert headers[b"x-answer"] == b"kept"
        assert not {b"connection", b"x-secret-hop", b"date", b"server"} & set(headers)
        await upstream.stop()

    async def test_no_cookie_of_one_client_reaches_anothers_request(self, echo_url: str) -> None:
        upstream = HttpUpstream("svc", [echo_url])
        first = await forward(upstream)
        assert answer_of(first)[1][b"set-cookie"].startswith(b"session=alice-secret")

        second = echoed(await forward(upstream))

        assert "cookie" not in second["header_map"]
        await upstream.stop()

    async def test_request_bodies_stream_with_their_length_or_chunked(self, echo_url: str) -> None:
        upstream = HttpUpstream("svc", [echo_url])
        declared = scope(method="POST", headers=[(b"host", b"h"), (b"content-length", b"11")])
        chunked = scope(
            method="POST", headers=[(b"host", b"h"), (b"transfer-encoding", b"chunked")]
        )

        with_length = echoed(await forward(upstream, declared, [b"hello ", b"world"]))
        with_chunks = echoed(await forward(upstream, chunked, [b"abc", b"", b"def"]))

        assert with_length["body"] == "hello world"
        assert with_chunks["body"] == "abcdef"
        assert with_chunks["header_map"]["transfer-encoding"] == "chunked"
        await upstream.stop()

    async def test_a_large_answer_is_streamed_not_buffered(self, echo_url: str) -> None:
        upstream = HttpUpstream("svc", [echo_url])

        sent = await forward(upstream, scope("/big"))

        status, _, body = answer_of(sent)
        assert status == 200
        assert len(body) == BIG_CHUNK * BIG_CHUNKS
        assert body[-1] == (BIG_CHUNKS - 1) % 256
        assert len(sent) > 10  # relayed in pieces as they came, not as one 8 MiB message
        assert max(len(m.get("body", b"")) for m in sent[1:]) <= 2 * 256 * 1024 + BIG_CHUNK
        await upstream.stop()

    async def test_head_answers_end_at_their_headers(self, echo_url: str) -> None:
        upstream = HttpUpstream("svc", [echo_url])

        status, _, body = answer_of(await forward(upstream, scope(method="HEAD")))
        after = echoed(await forward(upstream))

        assert (status, body) == (201, b"")
        assert after["method"] == "GET"
        await upstream.stop()

    async def test_a_header_with_a_line_break_is_refused(self, echo_url: str) -> None:
        upstream = HttpUpstream("svc", [echo_url])

        with pytest.raises(BadRequest):
            await forward(upstream, scope(headers=[(b"x-a", b"1\r\nx-injected: yes")]))
        await upstream.stop()


class TestConnections:
    async def test_connections_are_reused(self, echo_url: str) -> None:
        upstream = HttpUpstream("svc", [echo_url])

        ports = {echoed(await forward(upstream))["client_port"] for _ in range(5)}

        assert len(ports) == 1
        assert upstream.targets[0].pool.opened_total == 1
        await upstream.stop()

    async def test_concurrent_requests_never_get_each_others_answers(self, echo_url: str) -> None:
        # Timeouts far past any answer: not what this tests. With the defaults (3 s to
        # connect) the 8 fresh connections of a later round all failed at once in one CI
        # run (stop 34), most likely a worker's loop stalled past 3 s on two busy cores.
        upstream = HttpUpstream("svc", [echo_url], connect_timeout_seconds=60)

        async def one(number: int) -> None:
            sent = await forward(
                upstream,
                scope("/jitter", [(b"host", b"h"), (b"x-id", str(number).encode())]),
                timeout_seconds=60,
            )
            assert echoed(sent)["header_map"]["x-id"] == str(number)

        for _ in range(3):  # rounds: later ones run on the connections the first left idle
            await asyncio.gather(*(one(number) for number in range(40)))
        pool = upstream.targets[0].pool
        assert pool.opened_total <= 40 * 3
        assert len(pool.idle) <= pool.max_idle
        await upstream.stop()

    async def test_requests_past_the_connection_cap_wait_for_one(self, echo_url: str) -> None:
        upstream = HttpUpstream("svc", [echo_url])
        pool = upstream.targets[0].pool
        pool.max_connections = 1

        answers = await asyncio.gather(*(forward(upstream, scope("/jitter")) for _ in range(5)))

        assert {answer_of(sent)[0] for sent in answers} == {201}
        assert pool.opened_total == 1
        await upstream.stop()

    async def test_a_connection_the_upstream_closed_while_idle_is_dropped(
        self, raw_server: Callable[[Handler], Awaitable[str]]
    ) -> None:
        connections = 0

        async def answer_once_then_close(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter
        ) -> None:
            nonlocal connections
            connections += 1
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            await writer.drain()
            writer.close()  # no Connection: close; the socket just goes away

        upstream = HttpUpstream("svc", [await raw_server(answer_once_then_close)])
        pool = upstream.targets[0].pool
        assert answer_of(await forward(upstream))[2] == b"ok"
        for _ in range(100):
            if not pool.idle:
                break
            await asyncio.sleep(0.01)
        assert not pool.idle

        assert answer_of(await forward(upstream))[2] == b"ok"
        assert connections == 2
        await upstream.stop()

    async def test_a_kept_alive_connection_closed_under_a_request_is_retried_fresh(
        self, raw_server: Callable[[Handler], Awaitable[str]]
    ) -> None:
        async def answer_one_then_hang_up(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter
        ) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            await writer.drain()
            await reader.readuntil(b"\r\n\r\n")  # the next request: closed unanswered
            writer.close()

        upstream = HttpUpstream("svc", [await raw_server(answer_one_then_hang_up)])
        assert answer_of(await forward(upstream))[2] == b"ok"

        assert answer_of(await forward(upstream))[2] == b"ok"  # GET: on a new connection

        with pytest.raises(UpstreamFailure) as failure:  # POST: not sent twice
            await forward(
                upstream,
                scope(method="POST", headers=[(b"host", b"h"), (b"content-length", b"2")]),
                [b"{}"],
            )
        assert isinstance(failure.value.error, UpstreamUnavailable)
        assert "failed mid-request" in failure.value.error.detail
        await upstream.stop()

    async def test_idle_connections_past_their_expiry_are_not_used(self, echo_url: str) -> None:
        upstream = HttpUpstream("svc", [echo_url])
        pool = upstream.targets[0].pool
        pool.idle_expiry_seconds = 0.05
        first = echoed(await forward(upstream))["client_port"]
        await asyncio.sleep(0.1)

        second = echoed(await forward(upstream))["client_port"]

        assert first != second
        await upstream.stop()


class TestFailures:
    async def test_a_slow_answer_is_a_timeout_and_its_connection_is_not_reused(
        self, echo_url: str
    ) -> None:
        upstream = HttpUpstream("svc", [echo_url])

        with pytest.raises(UpstreamFailure) as failure:
            await forward(upstream, scope("/slow", query=b"0.5"), timeout_seconds=0.1)

        assert isinstance(failure.value.error, UpstreamTimeout)
        assert not upstream.targets[0].pool.idle
        assert echoed(await forward(upstream))["method"] == "GET"
        await upstream.stop()

    async def test_a_502_to_504_answer_is_relayed_and_counted(self, echo_url: str) -> None:
        upstream = HttpUpstream("svc", [echo_url])
        sent: list[Message] = []

        async def send(message: Message) -> None:
            sent.append(message)

        async def receive() -> Message:
            return {"type": "http.request", "body": b""}

        with pytest.raises(UpstreamFailure) as failure:
            await upstream.forward(scope("/unavailable"), receive, send, timeout_seconds=5)

        assert failure.value.error is None  # the client has the upstream's own answer
        assert answer_of(sent)[0] == 503
        await upstream.stop()

    async def test_refused_replica_is_marked_down_and_a_get_retried_on_the_other(
        self, echo_url: str
    ) -> None:
        upstream = HttpUpstream("svc", [dead_url(), echo_url])
        upstream._turn = iter([0, 0])  # type: ignore[assignment]  # the dead one first

        assert echoed(await forward(upstream))["method"] == "GET"

        assert [target.healthy for target in upstream.targets] == [False, True]
        await upstream.stop()

    async def test_a_post_is_not_retried_on_another_replica(self, echo_url: str) -> None:
        upstream = HttpUpstream("svc", [dead_url(), echo_url])
        upstream._turn = iter([0])  # type: ignore[assignment]
        post = scope(method="POST", headers=[(b"host", b"h"), (b"content-length", b"2")])

        with pytest.raises(UpstreamFailure) as failure:
            await forward(upstream, post, [b"{}"])

        assert isinstance(failure.value.error, UpstreamUnavailable)
        assert "refused the connection" in failure.value.error.detail
        await upstream.stop()

    async def test_replicas_take_turns_and_probes_find_them_back(self, echo_url: str) -> None:
        down = dead_url()
        upstream = HttpUpstream("svc", [echo_url, echo_url.replace("127.0.0.1", "localhost")])
        hosts = [echoed(await forward(upstream))["header_map"]["host"] for _ in range(4)]
        assert len(set(hosts)) == 2 and hosts[0] != hosts[1] and hosts[0] == hosts[2]

        probed = HttpUpstream("svc", [echo_url, down])
        await probed.probe()
        assert [target.healthy for target in probed.targets] == [True, False]
        probed.targets[0].healthy = False
        await probed.probe()
        assert probed.targets[0].healthy
        await upstream.stop()
        await probed.stop()

    async def test_an_upstream_that_answers_garbage_fails_mid_request(
        self, raw_server: Callable[[Handler], Awaitable[str]]
    ) -> None:
        async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"SMTP ready\r\n\r\n")
            await writer.drain()

        upstream = HttpUpstream("svc", [await raw_server(garbage)])

        with pytest.raises(UpstreamFailure) as failure:
            await forward(upstream)

        assert isinstance(failure.value.error, UpstreamUnavailable)
        await upstream.stop()


class TestWhatCountsAgainstTheBreaker:
    def test_a_service_s_own_503_problem_document_does_not_count(self) -> None:
        problem = [(b"content-type", b"application/problem+json")]
        assert not is_failure(503, problem)
        assert not is_failure(503, [(b"Content-Type", b"application/problem+json; x=1")])

    def test_other_503s_and_every_502_and_504_count(self) -> None:
        assert is_failure(503, [(b"content-type", b"text/html")])
        assert is_failure(503, [])
        assert is_failure(502, [(b"content-type", b"application/problem+json")])
        assert is_failure(504, [])

    def test_success_and_client_errors_never_count(self) -> None:
        assert not is_failure(200, [])
        assert not is_failure(429, [])
        assert not is_failure(500, [])
