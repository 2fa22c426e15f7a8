"""Service-to-service calls: httpx with timeouts, request-id and trace propagation, retries.

In the embedded shape the transport is httpx's ASGI transport on the platform app, so a call
keeps full HTTP semantics (status codes, headers, problem documents, auth) without a socket.
Retries (tenacity, exponential backoff with jitter) apply only to requests that are safe to
repeat: GET/HEAD/PUT/DELETE/OPTIONS, or POST carrying an Idempotency-Key.
"""

from __future__ import annotations

import functools
import inspect
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from paymesh.kernel.errors import RemoteServiceError, ServiceUnavailable
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


class _RetryableStatus(Exception):
    def __init__(self, response: httpx.Response) -> None:
        self.response = response


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
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url,
            transport=transport,
            timeout=httpx.Timeout(timeout_seconds),
            verify=shared_tls_context(),
        )
        self._token = token
        self._retries = retries

    async def aclose(self) -> None:
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
        """Send; return 2xx responses, raise `RemoteServiceError` for problem documents."""
        method = method.upper()
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
                        f"{method} {self._http.base_url.host or 'service'}",
                        kind="client",
                        attributes={"http.request.method": method, "url.path": path},
                    ) as current,
                ):
                    response = await self._http.request(
                        method,
                        path,
                        json=json,
                        params=params,
                        headers=await self._headers(idempotency_key),
                    )
                    if current is not None:
                        current.set_attribute("http.response.status_code", response.status_code)
                    if response.status_code in RETRYABLE_STATUSES and safe:
                        raise _RetryableStatus(response)
        except _RetryableStatus as exhausted:
            response = exhausted.response
        except httpx.TransportError as error:
            raise ServiceUnavailable(
                detail=f"{method} {path}: {error.__class__.__name__}"
            ) from None
        if response.is_success:
            return response
        raise _remote_error(response)


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
