"""Service-to-service calls: httpx with timeouts, request-id and trace propagation, retries.

In the embedded shape a call is an ASGI request straight to the platform's app
(`InProcessHttp`), so it keeps full HTTP semantics (method, path, query, headers, a JSON
body, status codes, problem documents, auth) without a socket and without httpx's client
(URL merging, cookie jar, redirects), which cost more than the called endpoint's own work.
Retries (tenacity, exponential backoff with jitter) apply only to requests that are safe to
repeat: GET/HEAD/PUT/DELETE/OPTIONS, or POST carrying an Idempotency-Key. A keyed request
answered 409 `idempotency_request_in_progress` (the same key is being served elsewhere right
now: the same payment advanced by a request and by the recovery job) is sent again for a
short while, until the service replays the first request's answer.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import ssl
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote, unquote

import httpx
from starlette.types import ASGIApp, Message
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
    wait_random_exponential,
)

from paymesh.kernel.errors import (
    IdempotencyRequestInProgress,
    RemoteServiceError,
    ServiceUnavailable,
)
from paymesh.kernel.jsonutil import dumps
from paymesh.kernel.observability import request_id_var, traceparent_var
from paymesh.kernel.tracing import span

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
RETRYABLE_STATUSES = frozenset({502, 503, 504})


@functools.cache
def shared_tls_context() -> ssl.SSLContext:
    """One TLS context (system CA bundle, certificate and host checks) for every outgoing
    client that has no TLS settings of its own: httpx parses the CA bundle anew for each
    client otherwise (tens of milliseconds, on every start and every short-lived client)."""
    return httpx.create_ssl_context()


IN_PROCESS_HOST = "paymesh.internal"
_PATH_SAFE = "/!$&'()*+,;=:@%-._~"  # RFC 3986 pchar and "/"; "%" keeps the caller's escapes


class InProcessHttp:
    """HTTP requests to an ASGI app in this process, answered as `httpx.Response`s: the
    scope `httpx.ASGITransport` would build (path decoded, raw path as sent, query string,
    host, content type and length), the body in one message, the answer collected whole.
    An exception the app lets out is raised to the caller, as that transport does."""

    def __init__(self, app: ASGIApp, *, host: str = IN_PROCESS_HOST) -> None:
        self.app = app
        self.host = host
        self._host_header = host.encode()

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str],
    ) -> httpx.Response:
        path, _, query = path.partition("?")
        if params:  # they replace a query written in the path, as httpx's client does
            query = str(httpx.QueryParams(params))
        raw_path = quote(path, safe=_PATH_SAFE).encode()
        body = b"" if json is None else dumps(json)
        header_list = [(b"host", self._host_header)]
        header_list += [(name.lower().encode(), value.encode()) for name, value in headers.items()]
        if json is not None:
            header_list.append((b"content-type", b"application/json"))
        if json is not None or method in ("POST", "PUT", "PATCH"):
            header_list.append((b"content-length", str(len(body)).encode()))
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "headers": header_list,
            "scheme": "http",
            "path": unquote(raw_path.decode()),
            "raw_path": raw_path,
            "query_string": query.encode(),
            "server": (self.host, None),  # as httpx sends it: no port in the URL
            "client": ("127.0.0.1", 123),
            "root_path": "",
        }
        sent = False
        answered = asyncio.Event()
        status = 0
        response_headers: list[tuple[bytes, bytes]] = []
        parts: list[bytes] = []

        async def receive() -> Message:
            nonlocal sent
            if sent:
                await answered.wait()
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: Message) -> None:
            nonlocal status, response_headers
            if message["type"] == "http.response.start":
                status = message["status"]
                response_headers = list(message.get("headers", []))
            elif message["type"] == "http.response.body":
                if message.get("body") and method != "HEAD":
                    parts.append(message["body"])
                if not message.get("more_body", False):
                    answered.set()

        await self.app(scope, receive, send)
        if not answered.is_set():
            raise httpx.RemoteProtocolError(f"{method} {path}: the app ended without an answer")
        return httpx.Response(status, headers=response_headers, content=b"".join(parts))


class _RetryableStatus(Exception):
    def __init__(self, response: httpx.Response) -> None:
        self.response = response


def _still_running_elsewhere(response: httpx.Response) -> bool:
    if response.status_code != IdempotencyRequestInProgress.status:
        return False
    try:
        document = response.json()
    except ValueError:
        return False
    return isinstance(document, dict) and document.get("code") == IdempotencyRequestInProgress.code


class ServiceClient:
    """Base for each service's `client.py` HTTP implementation."""

    def __init__(
        self,
        base_url: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        token: Callable[[], str | Awaitable[str]] | None = None,
        timeout_seconds: float = 10.0,
        retries: int = 3,
        in_process: InProcessHttp | None = None,
        in_progress_wait_seconds: float = 3.0,
    ) -> None:
        """`in_process`: the service is an app in this process, called directly (and
        `base_url` and `transport` unused); otherwise httpx over `transport` or the
        network. `in_progress_wait_seconds`: how long a keyed request answered 409
        `idempotency_request_in_progress` is sent again before that 409 is raised (0: it
        is raised at once)."""
        self._in_process = in_process
        self._http: httpx.AsyncClient | None = None
        if in_process is None:
            self._http = httpx.AsyncClient(
                base_url=base_url,
                transport=transport,
                timeout=httpx.Timeout(timeout_seconds),
                verify=shared_tls_context(),
            )
        self._span_host = (
            in_process.host if in_process is not None else httpx.URL(base_url).host or "service"
        )
        self._token = token
        self._retries = retries
        self._in_progress_wait_seconds = in_progress_wait_seconds

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    async def _headers(self, idempotency_key: str | None) -> dict[str, str]:
        headers = {"accept": "application/json"}
        if (request_id := request_id_var.get()) is not None:
            headers["x-request-id"] = request_id
        if (traceparent := traceparent_var.get()) is not None:
            headers["traceparent"] = traceparent
        if self._token is not None:
            token = self._token()
            if inspect.isawaitable(token):
                token = await token
            headers["authorization"] = f"Bearer {token}"
        if idempotency_key is not None:
            headers["idempotency-key"] = idempotency_key
        return headers

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> httpx.Response:
        """Send; return 2xx responses, raise `RemoteServiceError` for problem documents.

        A keyed request whose key is still being served elsewhere is sent again, with
        growing pauses, for up to `in_progress_wait_seconds`: the service then replays the
        first request's answer, so both callers act on one outcome. Past that, the 409 is
        raised for the caller to decide (the work is still running; do not redo it)."""
        method = method.upper()
        response = await self._send(method, path, json, params, idempotency_key)
        if (
            idempotency_key is not None
            and self._in_progress_wait_seconds > 0
            and _still_running_elsewhere(response)
        ):
            try:
                async for attempt in AsyncRetrying(
                    stop=stop_after_delay(self._in_progress_wait_seconds),
                    wait=wait_exponential(multiplier=0.02, max=0.5),
                    retry=retry_if_exception_type(_RetryableStatus),
                    reraise=True,
                ):
                    with attempt:
                        response = await self._send(method, path, json, params, idempotency_key)
                        if _still_running_elsewhere(response):
                            raise _RetryableStatus(response)
            except _RetryableStatus as exhausted:
                response = exhausted.response
        if response.is_success:
            return response
        raise _remote_error(response)

    async def _send(
        self,
        method: str,
        path: str,
        json: Any,
        params: dict[str, Any] | None,
        idempotency_key: str | None,
    ) -> httpx.Response:
        """One request, retried on a transport error or a 502/503/504 when safe to repeat."""
        safe = method in IDEMPOTENT_METHODS or idempotency_key is not None
        attempts = self._retries + 1 if safe else 1
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(attempts),
                wait=wait_random_exponential(multiplier=0.05, max=2.0),
                retry=retry_if_exception_type((httpx.TransportError, _RetryableStatus)),
                reraise=True,
            ):
                with (
                    attempt,
                    span(
                        f"{method} {self._span_host}",
                        kind="client",
                        attributes={"http.request.method": method, "url.path": path},
                    ) as current,
                ):
                    headers = await self._headers(idempotency_key)
                    if self._in_process is not None:
                        response = await self._in_process.request(
                            method, path, json=json, params=params, headers=headers
                        )
                    else:
                        assert self._http is not None
                        response = await self._http.request(
                            method, path, json=json, params=params, headers=headers
                        )
                    if current is not None:
                        current.set_attribute("http.response.status_code", response.status_code)
                    if response.status_code in RETRYABLE_STATUSES and safe:
                        raise _RetryableStatus(response)
        except _RetryableStatus as exhausted:
            return exhausted.response
        except httpx.TransportError as error:
            raise ServiceUnavailable(
                detail=f"{method} {path}: {error.__class__.__name__}"
            ) from None
        return response


def _remote_error(response: httpx.Response) -> RemoteServiceError:
    try:
        document = response.json()
    except ValueError:
        document = {}
    if not isinstance(document, dict):
        document = {}
    extensions = {
        key: value
        for key, value in document.items()
        if key not in {"type", "title", "status", "code", "detail", "instance"}
    }
    return RemoteServiceError(
        status=response.status_code,
        code=str(document.get("code") or "upstream_error"),
        detail=str(document.get("detail") or response.reason_phrase),
        **extensions,
    )
