"""Traces: a real OTLP/HTTP receiver on loopback (decoding the protobuf requests with
`opentelemetry-proto`) takes the spans of one cross-currency payment through the gateway,
and they form one trace from the gateway through payments, risk, forex and the ledger to
the notifications consumer, every parent link intact, with database statements as spans
and no token, password or code in any attribute. Tracing is off in every other test."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import pytest_asyncio
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from paymesh.kernel import tracing
from paymesh.kernel.config import Settings
from tests.payments.support import PASSWORD, PaymentsWorld, payments_world

pytestmark = pytest.mark.asyncio(loop_scope="module")


class Receiver:
    """An OTLP/HTTP trace receiver: what a collector's `/v1/traces` endpoint takes."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.content_types: set[str] = set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.content_types.add(self.headers["content-type"])
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                receiver.take(request)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200 if self.path == "/v1/traces" else 404)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def take(self, request: ExportTraceServiceRequest) -> None:
        for resource_spans in request.resource_spans:
            service = _attributes(resource_spans.resource.attributes).get("service.name")
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.spans.append(
                        {
                            "trace_id": span.trace_id.hex(),
                            "span_id": span.span_id.hex(),
                            "parent_span_id": span.parent_span_id.hex(),
                            "name": span.name,
                            "kind": span.kind,
                            "attributes": _attributes(span.attributes),
                            "resource": service,
                        }
                    )


def _value(value: AnyValue) -> Any:
    return getattr(value, value.WhichOneof("value") or "string_value")


def _attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs}


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    found.thread.start()
    yield found
    found.server.shutdown()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(
    receiver: Receiver,
    tmp_path_factory: pytest.TempPathFactory,
    postgres_database: str | None,
) -> AsyncIterator[PaymentsWorld]:
    assert tracing.configure_tracing("paymesh", endpoint=receiver.url)
    settings = Settings(
        _env_file=None,
        env="test",
        data_dir=tmp_path_factory.mktemp("tracing") / "var",
        database_url=postgres_database,
        access_log=False,
        gateway={"rate_limits": False},
        events={"relay_interval_seconds": 0.05, "outbox_retention_seconds": 3600},
    )
    try:
        async for built in payments_world(settings, postgres_database):
            yield built
    finally:
        tracing.shutdown_tracing()


async def test_one_payment_is_one_trace_from_the_gateway_to_the_notification(
    world: PaymentsWorld, receiver: Receiver
) -> None:
    payer = await world.customer("USD", funds=500_00)
    payee = await world.customer("EUR")
    response = await world.pay(payer, payee, 100_00, type="cross_currency", to_currency="EUR")
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "succeeded"
    trace_id = response.headers["traceparent"].split("-")[1]

    def consumed(spans: list[dict[str, Any]]) -> bool:
        return any(
            span["kind"] == 5  # CONSUMER
            and span["name"].startswith("notifications.")
            and span["attributes"].get("cloudevents.event_type") == "payments.payment.succeeded"
            for span in spans
        )

    spans: list[dict[str, Any]] = []

    def ended(spans: list[dict[str, Any]]) -> bool:
        """Every exported span's parent is exported too: a span is exported when it ends,
        so a consumer still running (audit's, say) has children out before itself."""
        ids = {span["span_id"] for span in spans}
        return all(not s["parent_span_id"] or s["parent_span_id"] in ids for s in spans)

    for _ in range(200):
        tracing._state.provider.force_flush()
        spans = [span for span in receiver.spans if span["trace_id"] == trace_id]
        if consumed(spans) and ended(spans):
            break
        await asyncio.sleep(0.1)
    assert consumed(spans), sorted({span["name"] for span in spans})
    assert receiver.content_types == {"application/x-protobuf"}

    servers = {(s["attributes"].get("paymesh.service"), s["name"]) for s in spans if s["kind"] == 2}
    assert ("gateway", "POST /v1/payments") in servers
    assert ("payments", "POST /v1/payments") in servers
    services = {service for service, _name in servers}
    assert {"gateway", "payments", "risk", "forex", "ledger"} <= services, servers
    assert any(s["kind"] == 3 for s in spans)  # CLIENT: payments calling the others
    assert any("db.system" in s["attributes"] or "db.system.name" in s["attributes"] for s in spans)

    # Parent links intact: one root (the gateway's span), every other span's parent in it.
    ids = {span["span_id"] for span in spans}
    roots = [span for span in spans if not span["parent_span_id"]]
    assert [(root["attributes"].get("paymesh.service"), root["name"]) for root in roots] == [
        ("gateway", "POST /v1/payments")
    ]
    orphans = [s["name"] for s in spans if s["parent_span_id"] and s["parent_span_id"] not in ids]
    assert not orphans

    # Nothing secret in any attribute: no bearer token or password; statements carry
    # placeholders, never the values bound to them.
    token = payer.headers["authorization"].split()[1]
    statements = [
        s["attributes"]["db.statement"] for s in spans if "db.statement" in s["attributes"]
    ]
    assert statements
    for span in receiver.spans:
        text = repr(span["attributes"])
        assert token not in text
        assert token.split(".")[1] not in text  # not even the claims
        assert PASSWORD not in text
        assert "bearer" not in text.lower()
        assert payer.username not in text
