"""ServiceClient: context propagation, safe retries, problem documents as RemoteServiceError."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from starlette.responses import JSONResponse, Response

from paymesh.kernel.errors import RemoteServiceError, ServiceUnavailable, problem_response
from paymesh.kernel.http import ServiceClient
from paymesh.kernel.observability import request_id_var, traceparent_var

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class Upstream:
    """A stand-in service that counts calls and fails on demand."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.unavailable_for: dict[str, int] = {}
        self.seen_headers: list[dict[str, str]] = []
        self.app = FastAPI()
        self.app.add_api_route("/echo", self.echo, methods=["GET", "POST"])
        self.app.add_api_route("/flaky", self.flaky, methods=["GET", "POST"])
        self.app.add_api_route("/problem", self.problem, methods=["POST"])
        self.app.add_api_route("/broken", self.broken, methods=["GET"])

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

    async def broken(self) -> Response:
        return Response("<html>oops</html>", status_code=502, media_type="text/html")


@pytest.fixture
def upstream() -> Upstream:
    return Upstream()


@pytest.fixture
async def service(upstream: Upstream) -> AsyncIterator[ServiceClient]:
    client = ServiceClient(
        "http://upstream.test",
        transport=httpx.ASGITransport(app=upstream.app),
        token=lambda: "service-token",
        retries=3,
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
