"""The platform's operational endpoints, merged API docs, request ids and trace context."""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import sys
from collections.abc import Iterator

import httpx
import pytest
import structlog
from sqlalchemy.engine import make_url

from paymesh.kernel.db import Database
from paymesh.kernel.observability import configure_logging
from paymesh.platform import Platform
from tests.kernel.support import NOTE, bearer, runtime_of

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
INCOMING = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-01$")


class TestHealth:
    async def test_health_is_200(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/health")

        assert response.status_code == 200
        assert response.json()["status"] == "ok"


class TestReady:
    async def test_ready_is_200_with_a_check_per_database(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/ready")

        assert response.status_code == 200
        assert response.json() == {"status": "ready", "checks": {"sample.database": "ok"}}

    async def test_ready_is_503_when_a_database_does_not_answer(
        self, sample: Platform, client: httpx.AsyncClient
    ) -> None:
        runtime = runtime_of(sample)
        working = runtime.database
        # Nothing listens on port 1: connecting fails at once.
        runtime.database = Database(
            "sample", make_url("postgresql+asyncpg://nobody@127.0.0.1:1/none"), "sample"
        )
        try:
            response = await client.get("/ready")
        finally:
            await runtime.database.dispose()
            runtime.database = working

        assert response.status_code == 503
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["code"] == "not_ready"
        assert problem["checks"]["sample.database"].startswith("failed")


class TestMetrics:
    async def test_metrics_count_http_requests(
        self, client: httpx.AsyncClient, admin_token: str
    ) -> None:
        await client.post("/v1/sample/notes", json=NOTE, headers=bearer(admin_token))

        response = await client.get("/metrics")

        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        assert "paymesh_http_requests_total" in response.text
        sample_line = re.search(
            r'^paymesh_http_requests_total\{[^}]*route="/v1/sample/notes"[^}]*status="201"[^}]*\}'
            r" (\d+(\.\d+)?)$",
            response.text,
            re.MULTILINE,
        )
        assert sample_line is not None
        assert float(sample_line.group(1)) >= 1

    async def test_unknown_paths_share_one_label(self, client: httpx.AsyncClient) -> None:
        await client.get("/v1/sample/random-f00d-1234")

        response = await client.get("/metrics")

        assert "random-f00d-1234" not in response.text
        assert 'route="unmatched"' in response.text


class TestApiDocuments:
    async def test_openapi_has_the_sample_paths(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/openapi.json")

        assert response.status_code == 200
        document = response.json()
        assert document["openapi"].startswith("3.1")
        assert {"/v1/sample/notes", "/v1/sample/admin/whoami"} <= set(document["paths"])
        assert {"get", "post"} <= set(document["paths"]["/v1/sample/notes"])
        assert "NoteCreate" in document["components"]["schemas"]

    async def test_docs_is_an_html_page_pointing_at_the_document(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.get("/docs")

        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        assert "/openapi.json" in response.text


class TestRequestId:
    async def test_a_response_carries_a_fresh_request_id(self, client: httpx.AsyncClient) -> None:
        first = await client.get("/v1/sample/notes")
        second = await client.get("/v1/sample/notes")

        assert first.headers["x-request-id"]
        assert first.headers["x-request-id"] != second.headers["x-request-id"]

    async def test_a_valid_incoming_request_id_is_echoed(self, client: httpx.AsyncClient) -> None:
        for path in ("/v1/sample/notes", "/health"):
            response = await client.get(path, headers={"x-request-id": "client-req-7"})

            assert response.headers["x-request-id"] == "client-req-7"

    async def test_an_invalid_incoming_request_id_is_replaced(
        self, client: httpx.AsyncClient
    ) -> None:
        for bad in ("has spaces in it", "x" * 129, "<script>"):
            response = await client.get("/v1/sample/notes", headers={"x-request-id": bad})

            assert response.headers["x-request-id"] != bad
            assert re.match(r"^[A-Za-z0-9._:\-]{1,128}$", response.headers["x-request-id"])


class TestTraceContext:
    async def test_an_incoming_trace_is_continued_with_a_new_span(
        self, client: httpx.AsyncClient
    ) -> None:
        for path in ("/v1/sample/notes", "/health"):
            response = await client.get(path, headers={"traceparent": INCOMING})

            match = TRACEPARENT.match(response.headers["traceparent"])
            assert match is not None
            assert match.group(1) == TRACE_ID
            assert match.group(2) != "00f067aa0ba902b7"

    async def test_without_a_trace_a_new_one_is_started(self, client: httpx.AsyncClient) -> None:
        first = TRACEPARENT.match((await client.get("/health")).headers["traceparent"])
        second = TRACEPARENT.match((await client.get("/health")).headers["traceparent"])

        assert first is not None
        assert second is not None
        assert first.group(1) != second.group(1)

    async def test_a_malformed_traceparent_starts_a_new_trace(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.get("/health", headers={"traceparent": "00-nothex-zz-01"})

        assert TRACEPARENT.match(response.headers["traceparent"])

    async def test_an_all_zero_trace_id_is_ignored(self, client: httpx.AsyncClient) -> None:
        # W3C Trace Context: an all-zero trace-id or parent-id is invalid and MUST be ignored.
        for invalid in (f"00-{'0' * 32}-00f067aa0ba902b7-01", f"00-{TRACE_ID}-{'0' * 16}-01"):
            response = await client.get("/health", headers={"traceparent": invalid})

            match = TRACEPARENT.match(response.headers["traceparent"])
            assert match is not None
            assert match.group(1) not in ("0" * 32, TRACE_ID)


def _captured_logs(monkeypatch: pytest.MonkeyPatch, fmt: str) -> Iterator[io.StringIO]:
    """What the production logging configuration writes in `fmt`, captured."""
    previous = structlog.get_config()
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    configure_logging("INFO", fmt)
    structlog.configure(cache_logger_on_first_use=False)
    yield stream
    structlog.configure(**previous)


@pytest.fixture
def log_stream(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    yield from _captured_logs(monkeypatch, "json")


@pytest.fixture
def ecs_log_stream(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    yield from _captured_logs(monkeypatch, "ecs")


class TestEcsLogs:
    async def test_lines_follow_the_elastic_common_schema(
        self, client: httpx.AsyncClient, ecs_log_stream: io.StringIO
    ) -> None:
        response = await client.post(
            "/v1/sample/crash", headers={"x-request-id": "req-ecs-1", "traceparent": INCOMING}
        )
        structlog.get_logger("paymesh.test").warning("login_checked", password="hunter2")

        assert response.status_code == 500
        lines = [json.loads(line) for line in ecs_log_stream.getvalue().splitlines()]
        [error] = [line for line in lines if line["message"] == "unhandled_error"]
        assert error["log.level"] == "error"  # ecs-logging keeps these two dotted
        assert error["ecs.version"]
        assert error["@timestamp"].endswith("Z")
        assert error["http"]["request"]["id"] == "req-ecs-1"
        assert error["trace"]["id"] == TRACE_ID
        assert re.fullmatch(r"[0-9a-f]{16}", error["span"]["id"])
        assert error["service"]["name"] == "sample"
        assert "Traceback" in error["error"]["stack_trace"]
        [checked] = [line for line in lines if line["message"] == "login_checked"]
        assert checked["password"] == "[redacted]"
        assert "hunter2" not in ecs_log_stream.getvalue()


class TestLogs:
    async def test_logs_are_json_lines_with_request_and_trace_ids(
        self, client: httpx.AsyncClient, log_stream: io.StringIO
    ) -> None:
        response = await client.post(
            "/v1/sample/crash", headers={"x-request-id": "req-log-1", "traceparent": INCOMING}
        )

        assert response.status_code == 500
        lines = [json.loads(line) for line in log_stream.getvalue().splitlines()]
        [error] = [line for line in lines if line["event"] == "unhandled_error"]
        assert error["request_id"] == "req-log-1"
        assert error["trace_id"] == TRACE_ID
        assert error["service"] == "sample"
        assert error["level"] == "error"
        assert "secret internal detail" in error["exception"]  # details go to the log
        assert dt.datetime.fromisoformat(error["timestamp"]).utcoffset() == dt.timedelta(0)

    def test_secrets_are_redacted(self, log_stream: io.StringIO) -> None:
        structlog.get_logger("test").info(
            "login", user="usr_1", password="hunter2", card_number="4111111111111111"
        )

        [line] = [json.loads(line) for line in log_stream.getvalue().splitlines()]
        assert line["user"] == "usr_1"
        assert line["password"] == "[redacted]"
        assert line["card_number"] == "[redacted]"
        assert "hunter2" not in log_stream.getvalue()
