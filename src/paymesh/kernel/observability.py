"""Request ids, W3C trace context, JSON logs and Prometheus metrics for every service app.

`RequestContextMiddleware` is plain ASGI (no per-request task switching): it takes or makes
the `X-Request-ID`, continues or starts a `traceparent`, binds both into the log context,
times the request for Prometheus, and turns any unhandled exception into a 500 problem
document carrying the request id while the details go to the log.
"""

from __future__ import annotations

import logging
import random
import re
import sys
import time
from collections.abc import MutableMapping
from contextvars import ContextVar
from typing import Any, TextIO, cast

import structlog
from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from paymesh.kernel.errors import problem_document
from paymesh.kernel.jsonutil import dumps
from paymesh.kernel.tracing import answered, server_span, tracing_on

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
traceparent_var: ContextVar[str | None] = ContextVar("traceparent", default=None)

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_SECRET_KEYS = re.compile(
    r"(pass(word)?|secret|token|authorization|api[_-]?key|otp|totp|pin|cvv|card_?number)",
    re.IGNORECASE,
)

REQUESTS = Counter(
    "paymesh_http_requests_total",
    "HTTP requests handled",
    ["service", "method", "route", "status"],
)
LATENCY = Histogram(
    "paymesh_http_request_duration_seconds",
    "HTTP request latency",
    ["service", "method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


def _redact(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> Any:
    for key in list(event):
        if _SECRET_KEYS.search(key):
            event[key] = "[redacted]"
    return event


class _Stderr:
    """`sys.stderr` as it was when logging was configured, or the current one once that is
    closed: a CLI run inside a test runner (typer's CliRunner) configures logging on a
    buffer it then closes, and every later log line would fail on the closed file."""

    def __init__(self) -> None:
        self._file = sys.stderr

    def _target(self) -> TextIO:
        return sys.stderr if self._file.closed else self._file

    def write(self, text: str) -> int:
        return self._target().write(text)

    def flush(self) -> None:
        self._target().flush()


_ECS_NAMES = {
    "request_id": "http.request.id",
    "trace_id": "trace.id",
    "span_id": "span.id",
    "service": "service.name",
}


def _ecs_fields(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> Any:
    """Our context keys under their Elastic Common Schema names (before the ECS
    formatter nests dotted keys); everything else stays as logged."""
    for ours, ecs in _ECS_NAMES.items():
        if ours in event:
            event[ecs] = event.pop(ours)
    event.pop("level", None)  # the formatter writes `log.level` from the method name
    return event


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    """JSON lines (`json`), Elastic Common Schema JSON lines for Filebeat/Elasticsearch
    (`ecs`, through ecs-logging), or coloured text for a terminal (`console`). Secrets are
    redacted by key in every format."""
    processors: list[Any]
    if fmt == "ecs":
        import ecs_logging

        processors = [
            structlog.contextvars.merge_contextvars,
            _redact,
            structlog.processors.format_exc_info,
            _ecs_fields,
            ecs_logging.StructlogFormatter(),
        ]
    else:
        renderer: Any = (
            structlog.processors.JSONRenderer()
            if fmt == "json"
            else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
        )
        processors = [
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact,
            structlog.processors.format_exc_info,
            renderer,
        ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(file=cast(TextIO, _Stderr())),
        cache_logger_on_first_use=True,
    )


def _random_hex(bits: int) -> str:
    # Identifiers for correlation, not secrets: the fast PRNG is enough.
    return random.getrandbits(bits).to_bytes(bits // 8, "big").hex()


def request_id_or_new(value: str) -> str:
    """The client's `X-Request-ID` when well formed, else a new one."""
    return value if _REQUEST_ID.match(value) else _random_hex(96)


def new_traceparent(trace_id: str | None = None) -> str:
    return f"00-{trace_id or _random_hex(128)}-{_random_hex(64)}-01"


def trace_id_of(traceparent: str | None) -> str | None:
    match = _TRACEPARENT.match(traceparent or "")
    # W3C Trace Context: an all-zero trace-id or parent-id is invalid and must be ignored.
    if match is None or not match.group(1).strip("0") or not match.group(2).strip("0"):
        return None
    return match.group(1)


class _RequestMetrics:
    __slots__ = ("latency", "requests")

    def __init__(self, requests: Counter, latency: Histogram) -> None:
        self.requests = requests
        self.latency = latency

    def observe(self, seconds: float) -> None:
        self.requests.inc()
        self.latency.observe(seconds)


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, service: str, access_log: bool = True) -> None:
        self.app = app
        self.service = service
        self.access_log = access_log
        self.log = structlog.get_logger("paymesh.http")
        # The labelled children, found once: `labels()` takes a lock and builds a key on
        # every call. Bounded, since a client chooses the method it sends.
        self._counted: dict[tuple[str, str, str], _RequestMetrics] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or ())
        request_id = headers.get(b"x-request-id", b"").decode("latin-1")
        if not _REQUEST_ID.match(request_id):
            request_id = _random_hex(96)
        incoming = headers.get(b"traceparent", b"").decode("latin-1")
        if not tracing_on():
            await self._serve(
                scope, receive, send, request_id, new_traceparent(trace_id_of(incoming))
            )
            return
        with server_span(scope["method"], incoming, self.service) as current:
            status = await self._serve(
                scope, receive, send, request_id, traceparent_var.get() or new_traceparent()
            )
            answered(current, scope["method"], _route_template(scope), status)

    async def _serve(
        self, scope: Scope, receive: Receive, send: Send, request_id: str, traceparent: str
    ) -> int:
        """Handle the request in its context (ids bound for logs, metrics, access log);
        the response's status."""
        scope.setdefault("state", {})["request_id"] = request_id
        request_token = request_id_var.set(request_id)
        trace_token = traceparent_var.set(traceparent)
        structlog.contextvars.bind_contextvars(
            request_id=request_id,
            trace_id=trace_id_of(traceparent),
            span_id=traceparent[36:52],
            service=self.service,
        )
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_context(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [
                    *message["headers"],
                    (b"x-request-id", request_id.encode()),
                    (b"traceparent", traceparent.encode()),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_context)
        except Exception:
            self.log.exception("unhandled_error", path=scope.get("path"))
            if not response_started:
                await self._send_internal_error(scope, send_with_context, request_id)
        finally:
            elapsed = time.perf_counter() - started
            self._metrics(scope["method"], _route_template(scope), status).observe(elapsed)
            if self.access_log:
                self.log.info(
                    "http_request",
                    method=scope["method"],
                    path=scope.get("path"),
                    status=status,
                    duration_ms=round(elapsed * 1000, 2),
                )
            structlog.contextvars.clear_contextvars()
            request_id_var.reset(request_token)
            traceparent_var.reset(trace_token)
        return status

    def _metrics(self, method: str, route: str, status: int) -> _RequestMetrics:
        key = (method, route, str(status))
        found = self._counted.get(key)
        if found is None:
            found = _RequestMetrics(
                REQUESTS.labels(self.service, method, route, key[2]),
                LATENCY.labels(self.service, method, route),
            )
            if len(self._counted) < 4096:
                self._counted[key] = found
        return found

    @staticmethod
    async def _send_internal_error(scope: Scope, send: Send, request_id: str) -> None:
        body = dumps(
            problem_document(
                code="internal_error",
                status=500,
                title="Internal error",
                detail="The server failed; quote the request_id when reporting it.",
                instance=scope.get("path"),
                request_id=request_id,
            )
        )
        await send(
            {
                "type": "http.response.start",
                "status": 500,
                "headers": [
                    (b"content-type", b"application/problem+json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    finder = getattr(scope.get("endpoint"), "route_template_for", None)
    if finder is not None:  # a hand-documented app (SCIM): its own path templates
        return str(finder(scope.get("path", "")))
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"
