"""Traces with OpenTelemetry, exported with OTLP over HTTP/protobuf to any collector
(Jaeger, Tempo, the OpenTelemetry Collector).

Off unless `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set;
the other standard variables apply (`OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER`,
`OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_SDK_DISABLED`, ...). When off, `span()` is a generator
that yields once: nothing is imported from the SDK and no span object is made.

Spans: the gateway's and each service's handling of a request (SERVER, continuing the
caller's `traceparent`), service-to-service calls (CLIENT, kernel/http.py), database
statements (SQLAlchemy's instrumentation on every service engine), the outbox relay's
publishing (PRODUCER, linked to the trace of each event it carries) and every consumer's
handling of an event (CONSUMER, a child of the span that wrote the event: its CloudEvents
`traceparent` extension). While a span is current, `traceparent_var` holds it, so logs,
outgoing calls and new events carry it.

Attributes are ids, amounts, routes and outcomes; never a header, token, body or code.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any


class _Tracing:
    """The process's tracer, when tracing is on."""

    def __init__(self) -> None:
        self.tracer: Any = None
        self.provider: Any = None
        self.engines: list[Any] = []


_state = _Tracing()


def configure_tracing(service_name: str, *, endpoint: str | None = None) -> bool:
    """Start exporting spans when an OTLP endpoint is configured (`endpoint`, else the
    standard variables); True when tracing is on. Once per process."""
    if _state.tracer is not None:
        return True
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    configured = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    if not (endpoint or configured):
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create(
        {"service.name": os.environ.get("OTEL_SERVICE_NAME") or service_name}
    )
    provider = TracerProvider(resource=resource)  # sampler: OTEL_TRACES_SAMPLER, else parent-based
    exporter = (
        OTLPSpanExporter(endpoint=f"{endpoint.rstrip('/')}/v1/traces")
        if endpoint
        else OTLPSpanExporter()  # reads the OTEL_EXPORTER_OTLP_* variables itself
    )
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=1000))
    _state.provider = provider
    _state.tracer = provider.get_tracer("paymesh")
    return True


def shutdown_tracing() -> None:
    """Export what is left and stop (process exit; tests)."""
    if _state.provider is not None:
        _state.provider.shutdown()
    _state.tracer = _state.provider = None
    if _state.engines:
        from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

        SQLAlchemyInstrumentor().uninstrument()
    _state.engines = []


def flush_tracing() -> None:
    """Export the spans still waiting in the batch (a process about to stop)."""
    if _state.provider is not None:
        _state.provider.force_flush(timeout_millis=5000)


def tracing_on() -> bool:
    return _state.tracer is not None


def instrument_engines(engines: Sequence[Any]) -> None:
    """Spans for the statements of these SQLAlchemy (async) engines, when tracing is on.
    The instrumentor is one per process and takes its engines in one call: engines given
    before are instrumented again with the new ones."""
    if _state.tracer is None:
        return
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    for engine in engines:
        sync_engine = getattr(engine, "sync_engine", engine)
        if all(known is not sync_engine for known in _state.engines):
            _state.engines.append(sync_engine)
    instrumentor = SQLAlchemyInstrumentor()
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()
    instrumentor.instrument(
        engines=list(_state.engines),
        tracer_provider=_state.provider,
        # It declares SQLAlchemy < 2.1 while the engine events it uses are unchanged in
        # 2.1 (tests/test_tracing.py sees the statement spans).
        skip_dep_check=True,
    )


def mark_failed(current: Any, description: str | None = None) -> None:
    """Set a span's status to ERROR (a 5xx answer, a handler that raised)."""
    from opentelemetry.trace import Status, StatusCode

    current.set_status(Status(StatusCode.ERROR, description))


_KINDS = ("internal", "server", "client", "producer", "consumer")


_OFF: AbstractContextManager[None] = nullcontext(None)
"""What `span()` gives while tracing is off: one shared object, nothing made per call."""


def span(
    name: str,
    *,
    kind: str = "internal",
    parent: str | None = None,
    links: Sequence[str] = (),
    attributes: Mapping[str, Any] | None = None,
) -> AbstractContextManager[Any]:
    """A span, current while the block runs, with `traceparent_var` set to it. `parent`:
    a W3C traceparent to continue (a request's header, an event's extension; a malformed
    one starts a new trace); otherwise the current span's. `links`: traceparents this span
    relates to (a relay batch's events). Yields None when tracing is off."""
    if _state.tracer is None:
        return _OFF
    return _span(name, kind, parent, links, attributes)


def server_span(method: str, incoming: str, service: str) -> AbstractContextManager[Any]:
    """The SERVER span of one request to `service`, continuing the caller's traceparent;
    `answered` names it once the route is known."""
    return span(
        method,
        kind="server",
        parent=incoming or None,
        attributes={"paymesh.service": service, "http.request.method": method},
    )


def answered(current: Any, method: str, route: str | None, status: int) -> None:
    """Name a server span after the route that took the request, and record the answer
    (a 5xx, or none at all, marks it failed)."""
    if route is not None:
        current.update_name(f"{method} {route}")
        current.set_attribute("http.route", route)
    current.set_attribute("http.response.status_code", status)
    if not status or status >= 500:
        mark_failed(current)


@contextmanager
def _span(
    name: str,
    kind: str,
    parent: str | None,
    links: Sequence[str],
    attributes: Mapping[str, Any] | None,
) -> Iterator[Any]:
    tracer = _state.tracer
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    from paymesh.kernel.observability import traceparent_var  # it imports this module

    propagator = TraceContextTextMapPropagator()
    context = propagator.extract({"traceparent": parent}) if parent else None
    linked = [
        trace.Link(
            trace.get_current_span(propagator.extract({"traceparent": value})).get_span_context()
        )
        for value in links
        if value
    ]
    with tracer.start_as_current_span(
        name,
        context=context,
        kind=getattr(trace.SpanKind, kind.upper()) if kind in _KINDS else trace.SpanKind.INTERNAL,
        links=linked,
        attributes=dict(attributes or {}),
    ) as current:
        found = current.get_span_context()
        token = traceparent_var.set(
            f"00-{found.trace_id:032x}-{found.span_id:016x}-{int(found.trace_flags):02x}"
        )
        try:
            yield current
        finally:
            traceparent_var.reset(token)


def _context_of(context: Any) -> Any:
    from opentelemetry import trace

    return trace.get_current_span(context).get_span_context()
