"""ServiceClient: context propagation, safe retries, problem documents as RemoteServiceError."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from starlette.responses import JSONResponse, Response

from paymesh.kernel.errors import RemoteServiceError, ServiceUnavailable, problem_response
from paymesh.kernel.http import InProcessHttp, ServiceClient
from paymesh.kernel.observability import request_id_var, traceparent_var

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class Upstream:
    """A stand-in service that counts calls and fails on demand."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.unavailable_for: dict[str, int] = {}
        self.running_elsewhere_for = 0
        self.seen_headers: list[dict[str, str]] = []
        self.app = FastAPI()
        self.app.add_api_route("/echo", self.echo, methods=["GET", "POST"])
        self.app.add_api_route("/flaky", self.flaky, methods=["GET", "POST"])
        self.app.add_api_route("/problem", self.problem, methods=["POST"])
        self.app.add_api_route("/broken", self.broken, methods=["GET"])
        self.app.add_api_route("/keyed", self.keyed, methods=["POST"])

    async def echo(self, request: Request) -> dict[str, Any]:
        self.calls["echo"] += 1
        self.seen_headers.append(dict(request.headers))
        return {"ok": True}

    async def flaky(self, request: Request) -> Response:
        key = f"{request.method} flaky"
        self.calls[key] += 1
        if self.unavailable_for.get(key, 0) > 0:
            self.unavailable_for[key] -= 1
            return problem_response(
                {"type": "about:blank", "title": "Busy", "status": 503, "code": "busy"}
            )
        return JSONResponse({"attempt": self.calls[key]})

    async def problem(self) -> Response:
        self.calls["problem"] += 1
        return problem_response(
            {
                "type": "urn:paymesh:problem:insufficient_funds",
                "title": "Insufficient funds",
                "status": 409,
                "code": "insufficient_funds",
                "detail": "account acc_1 has 5 USD",
                "balance_minor": 500,
            }
        )

    async def keyed(self) -> Response:
        """Answers 409 `idempotency_request_in_progress` while the key's first request is
        "still running" (`running_elsewhere_for` more calls), then that request's answer."""
        self.calls["keyed"] += 1
        if self.running_elsewhere_for > 0:
            self.running_elsewhere_for -= 1
            return problem_response(
                {
                    "type": "about:blank",
                    "title": "Still running",
                    "status": 409,
                    "code": "idempotency_request_in_progress",
                }
            )
        return JSONResponse({"decided": True}, headers={"idempotent-replayed": "true"})

    async def broken(self) -> Response:
        return Response("<html>oops</html>", status_code=502, media_type="text/html")


@pytest.fixture
def upstream() -> Upstream:
    return Upstream()


@pytest.fixture(params=["httpx_asgi", "in_process"])
async def service(
    upstream: Upstream, request: pytest.FixtureRequest
) -> AsyncIterator[ServiceClient]:
    """Every contract below holds over httpx (its ASGI transport, as for a remote service)
    and over the embedded platform's direct in-process calls."""
    if request.param == "in_process":
        client = ServiceClient(
            "http://upstream.test",
            in_process=InProcessHttp(upstream.app),
            token=lambda: "service-token",
            retries=3,
            in_progress_wait_seconds=0.3,
        )
    else:
        client = ServiceClient(
            "http://upstream.test",
            transport=httpx.ASGITransport(app=upstream.app),
            token=lambda: "service-token",
            retries=3,
            in_progress_wait_seconds=0.3,
        )
    yield client
    await client.aclose()


class TestContextPropagation:
    async def test_request_id_and_traceparent_are_forwarded(
        self, upstream: Upstream, service: ServiceClient
    ) -> None:
        request_token = request_id_var.set("req-abc")
        trace_token = traceparent_var.set(TRACEPARENT)
        try:
            await service.request("GET", "/echo")
        finally:
            request_id_var.reset(request_token)
            traceparent_var.reset(trace_token)

        [headers] = upstream.seen_headers
        assert headers["x-request-id"] == "req-abc"
        assert headers["traceparent"] == TRACEPARENT
        assert headers["authorization"] == "Bearer service-token"

    async def test_nothing_is_invented_outside_a_request(
        self, upstream: Upstream, service: ServiceClient
    ) -> None:
        await service.request("GET", "/echo")

        [headers] = upstream.seen_headers
        assert "x-request-id" not in headers
        assert "traceparent" not in headers

    async def test_the_idempotency_key_is_sent(
        self, upstream: Upstream, service: ServiceClient
    ) -> None:
        await service.request("POST", "/echo", json={}, idempotency_key="idem-1")

        assert upstream.seen_headers[0]["idempotency-key"] == "idem-1"


class TestRetries:
    async def test_a_get_is_retried_on_503(
        self, upstream: Upstream, service: ServiceClient
    ) -> None:
        upstream.unavailable_for["GET flaky"] = 2

        response = await service.request("GET", "/flaky")

        assert response.status_code == 200
        assert response.json() == {"attempt": 3}
        assert upstream.calls["GET flaky"] == 3

    async def test_a_post_without_idempotency_key_is_not_retried(
        self, upstream: Upstream, service: ServiceClient
    ) -> None:
        upstream.unavailable_for["POST flaky"] = 1

        with pytest.raises(RemoteServiceError) as raised:
            await service.request("POST", "/flaky", json={})

        assert raised.value.remote_status == 503
        assert upstream.calls["POST flaky"] == 1

    async def test_a_post_with_idempotency_key_is_retried(
        self, upstream: Upstream, service: ServiceClient
    ) -> None:
        upstream.unavailable_for["POST flaky"] = 1

        response = await service.request("POST", "/flaky", json={}, idempotency_key="idem-2")

        assert response.status_code == 200
        assert upstream.calls["POST flaky"] == 2

    async def test_retries_stop_after_the_configured_number(
        self, upstream: Upstream, service: ServiceClient
    ) -> None:
        upstream.unavailable_for["GET flaky"] = 100

        with pytest.raises(RemoteServiceError) as raised:
            await service.request("GET", "/flaky")

        assert raised.value.remote_status == 503
        assert raised.value.remote_code == "busy"
        assert upstream.calls["GET flaky"] == 4  # the call and 3 retries

    async def test_a_4xx_is_not_retried(self, upstream: Upstream, service: ServiceClient) -> None:
        with pytest.raises(RemoteServiceError):
            await service.request("POST", "/problem", json={}, idempotency_key="idem-3")

        assert upstream.calls["problem"] == 1

    async def test_a_keyed_request_waits_for_its_key_to_finish_elsewhere(
        self, upstream: Upstream, service: ServiceClient
    ) -> None:
        """The same payment advanced twice at once: the second call's key is still being
        served; it is sent again until the service replays the first answer."""
        upstream.running_elsewhere_for = 3

        response = await service.request("POST", "/keyed", json={}, idempotency_key="idem-4")

        assert response.json() == {"decided": True}
        assert upstream.calls["keyed"] == 4

    async def test_the_wait_for_a_key_running_elsewhere_is_bounded(
        self, upstream: Upstream, service: ServiceClient
    ) -> None:
        upstream.running_elsewhere_for = 10_000
        started = asyncio.get_running_loop().time()

        with pytest.raises(RemoteServiceError) as raised:
            await service.request("POST", "/keyed", json={}, idempotency_key="idem-5")

        waited = asyncio.get_running_loop().time() - started
        assert raised.value.remote_status == 409
        assert raised.value.remote_code == "idempotency_request_in_progress"
        assert 0.3 <= waited < 3.0  # the client's 0.3 s, plus the last pause and call
        assert 3 <= upstream.calls["keyed"] < 100

    async def test_no_wait_configured_raises_the_409_at_once(self, upstream: Upstream) -> None:
        upstream.running_elsewhere_for = 1
        client = ServiceClient(
            "http://upstream.test",
            in_process=InProcessHttp(upstream.app),
            in_progress_wait_seconds=0,
        )

        with pytest.raises(RemoteServiceError) as raised:
            await client.request("POST", "/keyed", json={}, idempotency_key="idem-6")

        assert raised.value.remote_code == "idempotency_request_in_progress"
        assert upstream.calls["keyed"] == 1

    async def test_a_409_in_progress_without_a_key_is_not_waited_for(
        self, upstream: Upstream, service: ServiceClient
    ) -> None:
        upstream.running_elsewhere_for = 1

        with pytest.raises(RemoteServiceError) as raised:
            await service.request("POST", "/keyed", json={})

        assert raised.value.remote_code == "idempotency_request_in_progress"
        assert upstream.calls["keyed"] == 1

    async def test_an_unreachable_service_is_service_unavailable(self) -> None:
        async def refuse(request: httpx.Request) -> httpx.Response:
            raise httpx.ConnectError("connection refused", request=request)

        client = ServiceClient("http://down.test", transport=httpx.MockTransport(refuse), retries=1)
        try:
            with pytest.raises(ServiceUnavailable) as raised:
                await client.request("GET", "/anything")
        finally:
            await client.aclose()

        assert raised.value.status == 503
        assert raised.value.code == "service_unavailable"


class TestRemoteProblems:
    async def test_a_problem_document_becomes_a_remote_service_error(
        self, service: ServiceClient
    ) -> None:
        with pytest.raises(RemoteServiceError) as raised:
            await service.request("POST", "/problem", json={})

        error = raised.value
        assert error.remote_status == 409
        assert error.remote_code == "insufficient_funds"
        assert error.detail == "account acc_1 has 5 USD"
        problem = error.problem(instance="/v1/payments")
        assert problem["status"] == 409
        assert problem["code"] == "insufficient_funds"
        assert problem["balance_minor"] == 500

    async def test_a_non_json_error_is_an_upstream_error(self, service: ServiceClient) -> None:
        with pytest.raises(RemoteServiceError) as raised:
            await service.request("GET", "/broken")

        assert raised.value.remote_status == 502
        assert raised.value.remote_code == "upstream_error"
        assert raised.value.problem()["status"] == 502


class Recorder:
    """An ASGI app that keeps each request's scope and body and answers in chunks."""

    def __init__(self, fail: bool = False) -> None:
        self.scopes: list[dict[str, Any]] = []
        self.bodies: list[bytes] = []
        self.fail = fail

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        message = await receive()
        self.scopes.append(scope)
        self.bodies.append(message["body"])
        if self.fail:
            raise RuntimeError("the app broke")
        await send({"type": "http.response.start", "status": 207, "headers": [(b"x-a", b"1")]})
        await send({"type": "http.response.body", "body": b'{"part":', "more_body": True})
        await send({"type": "http.response.body", "body": b"1}", "more_body": False})


class TestInProcessHttp:
    """The embedded shape's direct calls build the request httpx's ASGI transport builds."""

    REQUESTS = [
        ("GET", "/v1/users/by-username/z%C3%B6e%2Fx/contact", None, {"currency": "EUR"}),
        ("POST", "/v1/ledger/batches", {"transfers": [{"amount": 1, "note": "é"}]}, None),
        ("GET", "/v1/payments?status=succeeded", None, {"limit": 2, "flag": True}),
        ("PUT", "/v1/risk/rules/a b", {}, None),
    ]

    @pytest.mark.parametrize(("method", "path", "body", "params"), REQUESTS)
    async def test_the_scope_is_the_one_httpx_builds(
        self, method: str, path: str, body: Any, params: dict[str, Any] | None
    ) -> None:
        by_httpx, direct = Recorder(), Recorder()
        headers = {"authorization": "Bearer t", "x-request-id": "r1"}
        async with httpx.AsyncClient(
            base_url="http://paymesh.internal", transport=httpx.ASGITransport(app=by_httpx)
        ) as client:
            expected = await client.request(method, path, json=body, params=params, headers=headers)
        answer = await InProcessHttp(direct).request(
            method, path, json=body, params=params, headers=headers
        )

        want, got = by_httpx.scopes[0], direct.scopes[0]
        for key in ("method", "path", "raw_path", "query_string", "scheme", "server", "root_path"):
            assert got[key] == want[key], key
        wanted_headers, got_headers = dict(want["headers"]), dict(got["headers"])
        for name in (
            b"host",
            b"authorization",
            b"x-request-id",
            b"content-type",
            b"content-length",
        ):
            assert got_headers.get(name) == wanted_headers.get(name), name
        assert json.loads(direct.bodies[0] or b"null") == json.loads(by_httpx.bodies[0] or b"null")
        assert (answer.status_code, answer.content) == (expected.status_code, expected.content)
        assert answer.headers["x-a"] == "1" and answer.json() == {"part": 1}

    async def test_an_exception_the_app_lets_out_reaches_the_caller(self) -> None:
        with pytest.raises(RuntimeError, match="the app broke"):
            await InProcessHttp(Recorder(fail=True)).request("GET", "/x", headers={})

    async def test_an_app_that_never_answers_is_a_protocol_error(self) -> None:
        async def silent(scope: Any, receive: Any, send: Any) -> None:
            await receive()

        with pytest.raises(httpx.RemoteProtocolError):
            await InProcessHttp(silent).request("GET", "/x", headers={})

    async def test_a_head_answer_has_no_body(self) -> None:
        answer = await InProcessHttp(Recorder()).request("HEAD", "/x", headers={})
        assert answer.status_code == 207 and answer.content == b""
