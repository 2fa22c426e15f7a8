"""The one request-decoding layer every service app passes (`create_service_app` and the
fast paths wrap their apps in it): what a request may carry before any route sees it.

* Bodies are bounded: a `Content-Length` above the route's limit is refused at once, a
  streamed body is counted while it arrives, and never more than the limit is held
  (413 `payload_too_large`). The limit is `PAYMESH_MAX_BODY_BYTES` unless the service
  declares more for a (method, path) in `ServiceSpec.body_limits`.
* Bodies are read lazily: only when the route asks, so a route that authenticates first
  (`ServiceRoute`, the ledger fast path) answers 401 without reading a byte.
* Text is UTF-8 without NUL (U+0000) or lone surrogates, wherever it comes from: the path,
  the query, Basic credentials, and bodies — JSON (any `+json` type, or no type at all, as
  FastAPI reads it), forms and multipart, whatever the letter case of `Content-Type`.
  PostgreSQL cannot store NUL and UTF-8 cannot encode a surrogate; both would otherwise
  surface as 500s deep inside a query (400 `invalid_characters`).
* JSON bodies are strict (`jsonutil.check_json`): a duplicate key at any depth is 400
  `duplicate_json_key` (the last one must not silently win), NaN and Infinity are
  400 `malformed_json`. XML bodies (`application/xml`, `text/xml`, any `+xml` type: the
  partner banks' ISO 20022 reports) are checked as text here; the route that reads one
  parses it with defusedxml, DTDs and entities forbidden, and validates it against its
  schema. Other media types are 415: Paymesh speaks JSON, forms and, to banks, XML.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any, NoReturn
from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from paymesh.kernel.errors import MalformedJson, PaymeshError, problem_response
from paymesh.kernel.jsonutil import (
    DuplicateKey,
    InvalidText,
    UnacceptableJson,
    check_json,
    has_unsafe_characters,
)

MEBIBYTE = 1024 * 1024


class PayloadTooLarge(PaymeshError):
    code = "payload_too_large"
    status = 413
    title = "The request body is larger than this route accepts"


class InvalidCharacters(PaymeshError):
    code = "invalid_characters"
    status = 400
    title = "The request holds text that is not UTF-8, or holds NUL or a lone surrogate"


class DuplicateJsonKey(PaymeshError):
    code = "duplicate_json_key"
    status = 400
    title = "A JSON object in the body has the same key twice"


class UnsupportedMediaType(PaymeshError):
    code = "unsupported_media_type"
    status = 415
    title = "The body must be JSON, a form, or multipart form data"


class InvalidContentLength(PaymeshError):
    code = "invalid_content_length"
    status = 400
    title = "The Content-Length header is not a length"


class InvalidClientCredentials(PaymeshError):
    """Basic credentials that cannot name any client. Answered as RFC 6749 5.2 expects
    (`error: invalid_client`, 401) inside the problem document, since only OAuth2 clients
    send Basic credentials to Paymesh."""

    code = "invalid_client"
    status = 401
    title = "The client credentials cannot be decoded"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, error="invalid_client", error_description=detail)


DECODING_ERRORS: tuple[type[PaymeshError], ...] = (
    PayloadTooLarge,
    InvalidCharacters,
    DuplicateJsonKey,
    UnsupportedMediaType,
    MalformedJson,
)
"""For `problem_responses(...)` of routes that take a body."""

JSON, FORM, MULTIPART, XML, OTHER = "json", "form", "multipart", "xml", "other"


def media_kind(content_type: bytes | None) -> str:
    """Which decoder a body gets; media types are case-insensitive (RFC 9110 8.3.1)."""
    if content_type is None:
        return JSON  # FastAPI reads a body without Content-Type as JSON
    media = content_type.split(b";", 1)[0].strip().lower()
    if media == b"application/json" or (
        media.startswith(b"application/") and media.endswith(b"+json")
    ):
        return JSON
    if media == b"application/x-www-form-urlencoded":
        return FORM
    if media == b"multipart/form-data":
        return MULTIPART
    if media in (b"application/xml", b"text/xml") or (
        media.startswith(b"application/") and media.endswith(b"+xml")
    ):
        return XML
    return OTHER


def check_text(data: bytes, where: str) -> None:
    """`data` is UTF-8 without NUL (UTF-8 itself rules out encoded surrogates)."""
    if b"\x00" in data:
        raise InvalidCharacters(detail=f"The {where} holds the NUL character (U+0000)")
    if not data.isascii():
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidCharacters(detail=f"The {where} is not valid UTF-8") from None


def check_urlencoded(data: bytes, where: str) -> None:
    """A query string or form body, checked as its decoded fields will be."""
    check_text(unquote_to_bytes(data) if b"%" in data else data, where)


def check_path(path: str) -> None:
    if "\x00" in path or (not path.isascii() and has_unsafe_characters(path)):
        raise InvalidCharacters(detail="The path holds NUL or a lone surrogate")


def check_basic_credentials(authorization: bytes) -> None:
    """Basic credentials must decode to UTF-8 `client_id:secret` (each form-urlencoded,
    RFC 6749 2.3.1) without NUL; anything else is 401 invalid_client, never a 500."""
    scheme, _, token = authorization.strip().partition(b" ")
    if scheme.lower() != b"basic":
        return
    try:
        decoded = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidClientCredentials("The Basic credentials are not base64") from None
    try:
        check_text(decoded, "Basic credentials")
        for part in decoded.split(b":", 1):
            check_urlencoded(part, "Basic credentials")
    except InvalidCharacters as error:
        raise InvalidClientCredentials(error.detail) from None


def check_body(kind: str, body: bytes) -> None:
    if not body:
        return
    if kind == JSON:
        check_json_body(body)
    elif kind == FORM:
        check_urlencoded(body, "form body")
    elif kind == MULTIPART:
        # Paymesh takes no file uploads: every part is text.
        check_text(body, "multipart body")
    elif kind == XML:
        check_text(body, "XML body")
    else:
        raise UnsupportedMediaType()


def check_json_body(body: bytes) -> None:
    try:
        check_json(body)
    except DuplicateKey as error:
        raise DuplicateJsonKey(detail=str(error), key=error.key) from None
    except InvalidText as error:
        raise InvalidCharacters(detail=str(error)) from None
    except UnacceptableJson as error:
        raise MalformedJson(detail=str(error)) from None


class BoundedBody:
    """The app's `receive`: on the first call, reads the whole body (never more than
    `limit` bytes plus the chunk that crossed it, else 413), checks it, and hands it over
    as one message."""

    def __init__(self, receive: Receive, limit: int, kind: str) -> None:
        self._receive = receive
        self._limit = limit
        self._kind = kind
        self._delivered = False
        self.refusal: PaymeshError | None = None

    async def __call__(self) -> Message:
        if self._delivered:
            return await self._receive()
        chunks = bytearray()
        while True:
            message = await self._receive()
            if message["type"] != "http.request":
                return message  # http.disconnect
            chunk: bytes = message.get("body", b"")
            if len(chunks) + len(chunk) > self._limit:
                self._refuse(PayloadTooLarge(detail=f"The body exceeds {self._limit} bytes"))
            if not message.get("more_body", False):
                break
            chunks += chunk
        if chunks:
            chunks += chunk
            body = bytes(chunks)
        else:
            body = chunk  # one message: no copy
        try:
            check_body(self._kind, body)
        except PaymeshError as error:
            self._refuse(error)
        self._delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    def _refuse(self, error: PaymeshError) -> NoReturn:
        self.refusal = error
        raise error


class RequestDecoding:
    """ASGI middleware: refuses what cannot be decoded before the app runs, and gives the
    app a bounded, checked body (`BoundedBody`)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        body_limits: Mapping[tuple[str, str], int] | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_limits = dict(body_limits or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            body = self._prepare(scope, receive)
        except PaymeshError as error:
            await send_refusal(scope, receive, send, error)
            return
        started = False

        async def send_tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, body, send_tracked)
        except PaymeshError as error:
            # Routes render the body's refusal themselves; a plain ASGI app may not.
            if started or error is not body.refusal:
                raise
            await send_refusal(scope, receive, send, error)

    def _prepare(self, scope: Scope, receive: Receive) -> BoundedBody:
        check_path(scope["path"])
        query: bytes = scope.get("query_string", b"")
        if query:
            check_urlencoded(query, "query string")
        content_type = content_length = None
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value
            elif name == b"content-length":
                content_length = value
            elif name == b"authorization":
                check_basic_credentials(value)
        limit = self.body_limits.get((scope["method"], scope["path"]), self.max_body_bytes)
        if content_length is not None and _declared_length(content_length) > limit:
            raise PayloadTooLarge(detail=f"The body exceeds {limit} bytes (Content-Length)")
        return BoundedBody(receive, limit, media_kind(content_type))


def _declared_length(value: bytes) -> int:
    if not value.strip().isdigit():
        raise InvalidContentLength()
    return int(value)


async def send_refusal(scope: Scope, receive: Receive, send: Send, error: PaymeshError) -> None:
    """Answer `error` as a problem document, outside any framework."""
    path: str = scope.get("path", "")
    document: dict[str, Any] = error.problem(instance=None if has_unsafe_characters(path) else path)
    request_id = scope.get("state", {}).get("request_id")
    if request_id:
        document["request_id"] = request_id
    headers = {}
    if isinstance(error, InvalidClientCredentials):
        headers["WWW-Authenticate"] = 'Basic realm="paymesh"'
    await problem_response(document, headers)(scope, receive, send)
