"""Every error a client sees is an RFC 9457 problem document with a stable `code`."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError

from paymesh.kernel.errors import install_error_handlers
from tests.kernel.support import NOTE, bearer

NOTES = "/v1/sample/notes"
PROBLEM = "application/problem+json"


def fields(problem: dict[str, Any]) -> set[str]:
    return {error["field"] for error in problem["errors"]}


class TestMalformedJson:
    async def test_truncated_json_is_400_malformed_json(
        self, client: httpx.AsyncClient, admin_token: str
    ) -> None:
        response = await client.post(
            NOTES,
            content=b'{"text": "hi", "amount":',
            headers={**bearer(admin_token), "content-type": "application/json"},
        )

        assert response.status_code == 400
        assert response.headers["content-type"] == PROBLEM
        problem = response.json()
        assert problem["code"] == "malformed_json"
        assert problem["status"] == 400
        assert problem["type"] == "urn:paymesh:problem:malformed_json"
        assert problem["instance"] == NOTES


class TestValidationFailed:
    @pytest.mark.parametrize(
        ("changes", "field"),
        [
            ({"amount": "12"}, "amount"),
            ({"amount": 1.5}, "amount"),
            ({"amount": 12.0}, "amount"),
            ({"amount": 0}, "amount"),
            ({"currency": "XXY"}, "currency"),
            ({"currency": "usd"}, "currency"),
            ({"text": ""}, "text"),
        ],
    )
    async def test_a_wrong_field_is_422_naming_the_field(
        self,
        client: httpx.AsyncClient,
        admin_token: str,
        changes: dict[str, Any],
        field: str,
    ) -> None:
        response = await client.post(NOTES, json={**NOTE, **changes}, headers=bearer(admin_token))

        assert response.status_code == 422
        assert response.headers["content-type"] == PROBLEM
        problem = response.json()
        assert problem["code"] == "validation_failed"
        assert fields(problem) == {field}
        assert all(error["location"] == "body" for error in problem["errors"])

    async def test_every_wrong_field_is_listed(
        self, client: httpx.AsyncClient, admin_token: str
    ) -> None:
        response = await client.post(
            NOTES, json={"amount": "12", "currency": "XXY"}, headers=bearer(admin_token)
        )

        assert response.status_code == 422
        assert fields(response.json()) == {"text", "amount", "currency"}

    async def test_a_body_that_is_not_an_object_is_422(
        self, client: httpx.AsyncClient, admin_token: str
    ) -> None:
        response = await client.post(NOTES, json=[1, 2], headers=bearer(admin_token))

        assert response.status_code == 422
        assert response.json()["code"] == "validation_failed"


class TestUnknownRoute:
    async def test_an_unknown_path_under_a_service_is_404_problem(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.get("/v1/sample/nothing-here")

        assert response.status_code == 404
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["code"] == "not_found"

    async def test_an_unknown_path_outside_every_service_is_404_problem(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.get("/v1/nobody/home")

        assert response.status_code == 404
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["code"] == "not_found"


class TestWrongMethod:
    async def test_a_wrong_method_is_405_problem(self, client: httpx.AsyncClient) -> None:
        response = await client.delete(NOTES)

        assert response.status_code == 405
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["code"] == "method_not_allowed"

    async def test_a_405_names_the_allowed_methods(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/v1/sample/crash")

        assert response.status_code == 405
        assert response.headers["allow"] == "POST"


class TestUnhandledException:
    async def test_an_unhandled_exception_is_500_with_the_request_id(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.post("/v1/sample/crash")

        assert response.status_code == 500
        assert response.headers["content-type"] == PROBLEM
        problem = response.json()
        assert problem["code"] == "internal_error"
        assert problem["request_id"] == response.headers["x-request-id"]

    async def test_the_500_body_reveals_nothing_of_the_exception(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.post("/v1/sample/crash")

        for leak in ("secret internal detail", "RuntimeError", "Traceback", ".py"):
            assert leak not in response.text

    async def test_the_500_keeps_a_request_id_sent_by_the_client(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.post("/v1/sample/crash", headers={"x-request-id": "req-42"})

        assert response.headers["x-request-id"] == "req-42"
        assert response.json()["request_id"] == "req-42"


class TestNotFoundResource:
    async def test_a_missing_resource_is_404_problem(self, client: httpx.AsyncClient) -> None:
        response = await client.get(f"{NOTES}/note_missing")

        assert response.status_code == 404
        assert response.headers["content-type"] == PROBLEM
        problem = response.json()
        assert problem["code"] == "not_found"
        assert problem["detail"] == "no note note_missing"


class TestNulCharacter:
    """PostgreSQL refuses U+0000 in text; it must come back as bad input, never a 500
    (400 invalid_characters from the decoding layer: tests/kernel/test_decoding.py)."""

    async def test_a_nul_in_a_json_string_is_400(
        self, client: httpx.AsyncClient, admin_token: str
    ) -> None:
        response = await client.post(
            NOTES, json={**NOTE, "text": "a\x00b"}, headers=bearer(admin_token)
        )

        assert response.status_code == 400
        assert response.json()["code"] == "invalid_characters"
        assert (await client.get(NOTES)).json() == []

    async def test_a_nul_with_an_idempotency_key_is_400(
        self, client: httpx.AsyncClient, admin_token: str
    ) -> None:
        response = await client.post(
            NOTES,
            json={**NOTE, "text": "a\x00b"},
            headers={**bearer(admin_token), "idempotency-key": "k-nul"},
        )

        assert response.status_code == 400
        assert response.json()["code"] == "invalid_characters"

    async def test_an_escaped_backslash_before_u0000_is_plain_text(
        self, client: httpx.AsyncClient, admin_token: str
    ) -> None:
        response = await client.post(
            NOTES, json={**NOTE, "text": "C:\\u0000"}, headers=bearer(admin_token)
        )

        assert response.status_code == 201
        assert response.json()["text"] == "C:\\u0000"

    async def test_a_nul_in_the_path_is_400(self, client: httpx.AsyncClient) -> None:
        response = await client.get(f"{NOTES}/note%00x")

        assert response.status_code == 400
        assert response.json()["code"] == "invalid_characters"

    async def test_a_nul_in_the_query_is_400(self, client: httpx.AsyncClient) -> None:
        response = await client.get(f"{NOTES}/note_1", params={"text": "a\x00"})

        assert response.status_code == 400
        assert response.json()["code"] == "invalid_characters"


def _database_failing_app(failure: Exception) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/work")
    async def work() -> None:
        raise failure

    return app


class _TooManyConnectionsError(Exception):
    """Stands in for asyncpg's error of the same name (only its name is looked at)."""


_TooManyConnectionsError.__name__ = "TooManyConnectionsError"


async def test_a_database_out_of_connections_is_503_with_retry_after() -> None:
    for failure in (
        SQLAlchemyTimeoutError("QueuePool limit of size 10 overflow 10 reached"),
        DBAPIError("SELECT 1", {}, _TooManyConnectionsError("sorry, too many clients")),
    ):
        app = _database_failing_app(failure)
        async with AsyncClient(transport=ASGITransport(app=app), base_url="http://t") as client:
            response = await client.get("/work")
        assert response.status_code == 503, response.text
        assert response.json()["code"] == "database_unavailable"
        assert response.headers["retry-after"] == "1"


async def test_other_database_errors_stay_server_errors() -> None:
    app = _database_failing_app(DBAPIError("SELECT 1", {}, ValueError("syntax")))
    transport = ASGITransport(app=app, raise_app_exceptions=False)
    async with AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/work")
    assert response.status_code == 500
