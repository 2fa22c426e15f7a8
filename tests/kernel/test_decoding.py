"""The request-decoding layer (kernel/decoding.py) in front of every service app: bounded
bodies read only after authentication, text without NUL or lone surrogates wherever it
comes from, strict JSON; and database errors that log no parameter values."""

from __future__ import annotations

import base64
import dataclasses
import io
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Annotated, Any

import httpx
import pytest
import structlog
from fastapi import Depends, Request
from sqlalchemy import text
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from paymesh.kernel.app import service_router
from paymesh.kernel.auth import Caller, require
from paymesh.kernel.routing import SessionDep
from paymesh.kernel.runtime import ServiceRuntime
from paymesh.platform import Platform
from tests.conftest import http_client
from tests.kernel.sample.app import SPEC, notes
from tests.kernel.support import bearer

KIB = 1024
LIMIT = 64 * KIB
LARGE_LIMIT = 256 * KIB
BASE = "/v1/sample/decoding"
PROTECTED = f"{BASE}/protected"
PUBLIC = f"{BASE}/public"
LARGE = f"{BASE}/large"
FORM = f"{BASE}/form"
PLAIN = f"{BASE}/plain"
XML = f"{BASE}/xml"
PROBLEM = "application/problem+json"

router = service_router(prefix=BASE)
Admin = Annotated[Caller, Depends(require(roles=["admin"]))]


@router.post("/protected")
async def protected(body: dict[str, Any], _caller: Admin) -> dict[str, Any]:
    return {"keys": sorted(body)}


@router.post("/public")
async def public(body: dict[str, Any]) -> dict[str, Any]:
    return body


@router.post("/large")
async def large(body: dict[str, Any]) -> dict[str, int]:
    return {"keys": len(body)}


@router.post("/form")
async def form(request: Request) -> dict[str, str]:
    fields = await request.form()
    return {key: value for key, value in fields.multi_items() if isinstance(value, str)}


@router.post("/xml")
async def xml(request: Request) -> dict[str, int]:
    return {"bytes": len(await request.body())}


@router.post("/database-error")
async def database_error(session: SessionDep, body: dict[str, str]) -> dict[str, str]:
    await session.execute(text("SELECT id FROM no_such_table WHERE id = :id"), body)
    return body


@router.post("/duplicate-note")
async def duplicate_note(session: SessionDep, body: dict[str, str]) -> dict[str, str]:
    row = {"id": body["id"], "text": body["id"], "amount": 1, "currency": "USD"}
    await session.execute(notes.insert().values(**row))
    await session.execute(notes.insert().values(**row))
    return body


def _plain_fast_paths(_runtime: ServiceRuntime) -> dict[tuple[str, str], Any]:
    """A fast path that reads the body and lets every error escape, as a careless plain
    ASGI handler would: the decoding layer must still answer its refusals."""

    async def plain(scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        await JSONResponse({"bytes": len(message["body"])})(scope, receive, send)

    return {("POST", PLAIN): plain}


DECODING_SPEC = dataclasses.replace(
    SPEC,
    routers=[*SPEC.routers, router],
    body_limits={("POST", LARGE): LARGE_LIMIT},
    fast_paths=_plain_fast_paths,
)


@pytest.fixture
async def platform(make_platform: Callable[..., Any], settings: Any) -> Platform:
    small = settings.model_copy(update={"max_body_bytes": LIMIT})
    built: Platform = await make_platform(specs=[DECODING_SPEC], settings_override=small)
    return built


@pytest.fixture
async def client(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(platform) as client:
        yield client


@pytest.fixture
def admin(platform: Platform) -> dict[str, str]:
    return bearer(platform.tokens.issue("usr_admin", roles=["admin"]))


class CountingBody:
    """A streamed (chunked) request body that records how much the server pulled."""

    def __init__(self, total_bytes: int, chunk_bytes: int = 16 * KIB) -> None:
        self.total_bytes = total_bytes
        self.chunk = b"{" + b" " * (chunk_bytes - 1)
        self.pulled_bytes = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self.pulled_bytes < self.total_bytes:
            self.pulled_bytes += len(self.chunk)
            yield self.chunk


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    document: dict[str, Any] = response.json()
    assert document["code"] == code, document
    assert document["status"] == status
    return document


def json_body(text: str | bytes) -> dict[str, Any]:
    content = text.encode() if isinstance(text, str) else text
    return {"content": content, "headers": {"content-type": "application/json"}}


class TestBodyLimit:
    async def test_a_declared_length_over_the_limit_is_413_before_reading(
        self, client: httpx.AsyncClient, admin: dict[str, str]
    ) -> None:
        body = CountingBody(4 * LIMIT)
        headers = {**admin, "content-length": str(4 * LIMIT), "content-type": "application/json"}

        response = await client.post(PROTECTED, content=body, headers=headers)

        problem = assert_problem(response, 413, "payload_too_large")
        assert problem["request_id"] == response.headers["x-request-id"]
        assert body.pulled_bytes == 0

    async def test_a_chunked_body_over_the_limit_is_413_and_reading_stops_at_the_limit(
        self, client: httpx.AsyncClient, admin: dict[str, str]
    ) -> None:
        body = CountingBody(16 * LIMIT)

        response = await client.post(
            PROTECTED, content=body, headers={**admin, "content-type": "application/json"}
        )

        assert_problem(response, 413, "payload_too_large")
        assert LIMIT < body.pulled_bytes <= LIMIT + len(body.chunk)

    async def test_a_public_route_is_bounded_too(self, client: httpx.AsyncClient) -> None:
        response = await client.post(PUBLIC, content=CountingBody(2 * LIMIT))

        assert_problem(response, 413, "payload_too_large")

    async def test_a_body_at_the_limit_is_taken(self, client: httpx.AsyncClient) -> None:
        padding = "x" * (LIMIT - len('{"a":""}'))
        content = f'{{"a":"{padding}"}}'.encode()
        assert len(content) == LIMIT

        response = await client.post(PUBLIC, **json_body(content))

        assert response.status_code == 200, response.text

    async def test_a_route_with_a_larger_limit_takes_more(self, client: httpx.AsyncClient) -> None:
        content = f'{{"a":"{"x" * 2 * LIMIT}"}}'

        taken = await client.post(LARGE, **json_body(content))
        refused = await client.post(LARGE, **json_body(f'{{"a":"{"x" * LARGE_LIMIT}"}}'))

        assert taken.status_code == 200, taken.text
        assert_problem(refused, 413, "payload_too_large")

    async def test_a_plain_asgi_handler_gets_the_same_refusal(
        self, client: httpx.AsyncClient
    ) -> None:
        taken = await client.post(PLAIN, **json_body('{"a": 1}'))
        refused = await client.post(PLAIN, **json_body(f'{{"a":"{"x" * LIMIT}"}}'))

        assert taken.json() == {"bytes": 8}
        assert_problem(refused, 413, "payload_too_large")

    async def test_a_content_length_that_is_not_a_number_is_400(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.post(
            PUBLIC, content=CountingBody(10), headers={"content-length": "ten"}
        )

        assert_problem(response, 400, "invalid_content_length")


class TestAuthenticationComesFirst:
    async def test_an_anonymous_multi_megabyte_post_is_401_without_reading_the_body(
        self, client: httpx.AsyncClient
    ) -> None:
        body = CountingBody(8 * 1024 * KIB)

        response = await client.post(
            PROTECTED, content=body, headers={"content-type": "application/json"}
        )

        assert_problem(response, 401, "unauthenticated")
        assert body.pulled_bytes == 0

    async def test_a_bad_token_is_401_without_reading_the_body(
        self, client: httpx.AsyncClient
    ) -> None:
        body = CountingBody(8 * 1024 * KIB)

        response = await client.post(PROTECTED, content=body, headers=bearer("not-a-token"))

        assert_problem(response, 401, "unauthenticated")
        assert body.pulled_bytes == 0

    async def test_with_an_idempotency_key_too(self, client: httpx.AsyncClient) -> None:
        body = CountingBody(8 * 1024 * KIB)

        response = await client.post(
            PROTECTED, content=body, headers={"idempotency-key": "k-anonymous"}
        )

        assert_problem(response, 401, "unauthenticated")
        assert body.pulled_bytes == 0

    async def test_an_authenticated_caller_is_served(
        self, client: httpx.AsyncClient, admin: dict[str, str]
    ) -> None:
        response = await client.post(PROTECTED, json={"b": 1, "a": 2}, headers=admin)

        assert response.status_code == 200, response.text
        assert response.json() == {"keys": ["a", "b"]}


class TestInvalidCharacters:
    @pytest.mark.parametrize(
        "content",
        [
            b'{"a": "x\\u0000y"}',
            b'{"a\\u0000": 1}',
            b'{"a": ["\\ud800"]}',
            b'{"a": "\\udfff\\ud800"}',
            b'{"a": "\xed\xa0\x80"}',
            b'{"a": "\xff"}',
        ],
        ids=["nul", "nul-key", "lone-high", "reversed-pair", "encoded-surrogate", "not-utf8"],
    )
    async def test_a_json_body_is_400(self, client: httpx.AsyncClient, content: bytes) -> None:
        response = await client.post(PUBLIC, **json_body(content))

        assert_problem(response, 400, "invalid_characters")

    async def test_a_surrogate_pair_is_one_character(self, client: httpx.AsyncClient) -> None:
        response = await client.post(PUBLIC, **json_body('{"a": "\\ud83d\\ude00"}'))

        assert response.json() == {"a": "\U0001f600"}

    async def test_an_escaped_backslash_before_u0000_is_text(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.post(PUBLIC, **json_body('{"a": "C:\\\\u0000"}'))

        assert response.json() == {"a": "C:\\u0000"}

    @pytest.mark.parametrize(
        "content_type",
        [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/scim+json",
            None,
        ],
    )
    async def test_every_json_media_type_is_checked(
        self, client: httpx.AsyncClient, content_type: str | None
    ) -> None:
        headers = {} if content_type is None else {"content-type": content_type}

        response = await client.post(PUBLIC, content=b'{"a": "\\u0000"}', headers=headers)

        assert_problem(response, 400, "invalid_characters")

    @pytest.mark.parametrize(
        "content_type",
        ["application/x-www-form-urlencoded", "Application/X-WWW-Form-Urlencoded"],
    )
    @pytest.mark.parametrize("content", [b"a=x%00y", b"a%00=1", b"a=%ED%A0%80", b"a=%FF"])
    async def test_a_form_field_is_400(
        self, client: httpx.AsyncClient, content_type: str, content: bytes
    ) -> None:
        response = await client.post(FORM, content=content, headers={"content-type": content_type})

        assert_problem(response, 400, "invalid_characters")

    async def test_a_plain_form_is_served(self, client: httpx.AsyncClient) -> None:
        response = await client.post(FORM, data={"a": "caf\u00e9 100%"})

        assert response.json() == {"a": "caf\u00e9 100%"}

    async def test_a_multipart_field_is_400(self, client: httpx.AsyncClient) -> None:
        response = await client.post(FORM, files={"a": (None, b"x\x00y")})

        assert_problem(response, 400, "invalid_characters")

    async def test_a_plain_multipart_form_is_served(self, client: httpx.AsyncClient) -> None:
        response = await client.post(FORM, files={"a": (None, "caf\u00e9".encode())})

        assert response.json() == {"a": "caf\u00e9"}

    @pytest.mark.parametrize("query", ["text=a%00", "a%00=1", "text=%ED%A0%80", "text=%C3"])
    async def test_a_query_value_is_400(self, client: httpx.AsyncClient, query: str) -> None:
        response = await client.get(f"/v1/sample/notes?{query}")

        assert_problem(response, 400, "invalid_characters")

    async def test_a_path_is_400(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/v1/sample/notes/a%00b")

        problem = assert_problem(response, 400, "invalid_characters")
        assert "instance" not in problem
        assert problem["request_id"] == response.headers["x-request-id"]

    async def test_a_unicode_query_and_path_are_served(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/v1/sample/notes/caf\u00e9", params={"text": "\u00e9"})

        assert_problem(response, 404, "not_found")


class TestBasicCredentials:
    @pytest.mark.parametrize(
        "credentials",
        [
            b"//46/w==",
            base64.b64encode(b"client\x00id:secret"),
            base64.b64encode(b"client%00id:secret"),
            base64.b64encode(b"client:%ff"),
            b"not base64!",
        ],
        ids=["not-utf8", "nul", "encoded-nul", "encoded-not-utf8", "not-base64"],
    )
    async def test_undecodable_credentials_are_401_invalid_client(
        self, client: httpx.AsyncClient, credentials: bytes
    ) -> None:
        response = await client.post(
            PUBLIC, json={}, headers={"authorization": "Basic " + credentials.decode()}
        )

        problem = assert_problem(response, 401, "invalid_client")
        assert problem["error"] == "invalid_client"
        assert response.headers["www-authenticate"].startswith("Basic")


class TestStrictJson:
    @pytest.mark.parametrize(
        "content",
        [
            b'{"a": 1, "a": 2}',
            b'{"a": {"b": 1, "c": 2, "b": 1}}',
            b'{"a": [{"x": 1}, {"y": 1, "y": 1}]}',
        ],
        ids=["top", "nested", "in-a-list"],
    )
    async def test_a_duplicate_key_is_400(self, client: httpx.AsyncClient, content: bytes) -> None:
        response = await client.post(PUBLIC, **json_body(content))

        assert_problem(response, 400, "duplicate_json_key")

    async def test_the_same_key_in_two_objects_is_fine(self, client: httpx.AsyncClient) -> None:
        content = '{"a": [{"x": 1}, {"x": 2}], "x": 3}'

        response = await client.post(PUBLIC, **json_body(content))

        assert response.json() == {"a": [{"x": 1}, {"x": 2}], "x": 3}

    @pytest.mark.parametrize(
        "content",
        [b'{"a": NaN}', b'{"a": Infinity}', b'{"a": -Infinity}', b'{"a": 1e400}'],
    )
    async def test_non_finite_numbers_are_400(
        self, client: httpx.AsyncClient, content: bytes
    ) -> None:
        response = await client.post(PUBLIC, **json_body(content))

        assert_problem(response, 400, "malformed_json")

    async def test_deep_nesting_is_a_4xx(self, client: httpx.AsyncClient) -> None:
        content = b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}"

        response = await client.post(PUBLIC, **json_body(content))

        assert_problem(response, 400, "malformed_json")

    async def test_another_media_type_is_415(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            PUBLIC, content=b'{"a": 1}', headers={"content-type": "text/plain"}
        )

        assert_problem(response, 415, "unsupported_media_type")

    @pytest.mark.parametrize("media", ["application/xml", "TEXT/XML", "application/soap+xml"])
    async def test_an_xml_body_reaches_its_route(
        self, client: httpx.AsyncClient, media: str
    ) -> None:
        content = "<Document>Müller</Document>".encode()

        response = await client.post(XML, content=content, headers={"content-type": media})

        assert response.status_code == 200, response.text
        assert response.json() == {"bytes": len(content)}

    @pytest.mark.parametrize("content", [b"<a>\x00</a>", b"<a>\xff\xfe</a>"])
    async def test_an_xml_body_with_nul_or_bad_utf8_is_400(
        self, client: httpx.AsyncClient, content: bytes
    ) -> None:
        response = await client.post(
            XML, content=content, headers={"content-type": "application/xml"}
        )

        assert_problem(response, 400, "invalid_characters")


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """Everything structlog writes while the test runs."""
    buffer = io.StringIO()
    previous = structlog.get_config()
    structlog.configure(
        logger_factory=structlog.PrintLoggerFactory(file=buffer),
        cache_logger_on_first_use=False,
    )
    yield buffer
    structlog.configure(**previous)


class TestDatabaseErrorLog:
    async def test_the_log_names_the_statement_but_no_value(
        self, client: httpx.AsyncClient, log_lines: io.StringIO
    ) -> None:
        secret = "alice-secret-4711@example.com"

        response = await client.post(f"{BASE}/database-error", json={"id": secret})

        problem = assert_problem(response, 500, "internal_error")
        assert problem["request_id"] == response.headers["x-request-id"]
        log = log_lines.getvalue()
        assert "no_such_table" in log, log
        assert problem["request_id"] in log
        assert secret not in log
        assert secret not in response.text

    async def test_a_unique_violation_logs_no_key_value(
        self, client: httpx.AsyncClient, log_lines: io.StringIO
    ) -> None:
        secret = "note_alice-secret-4711"

        response = await client.post(f"{BASE}/duplicate-note", json={"id": secret})

        problem = assert_problem(response, 500, "internal_error")
        log = log_lines.getvalue()
        assert problem["request_id"] in log
        assert "IntegrityError" in log, log
        assert secret not in log
