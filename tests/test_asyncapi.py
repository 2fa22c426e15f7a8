"""The AsyncAPI document (`/asyncapi.json`) and its page (`/asyncapi`): a valid AsyncAPI 3.0
document covering every service that writes events, whose message schemas accept the
events a real sign-up writes; a page that shows them with no script; the broker named
without its credentials."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from faststream.specification.asyncapi.v3_0_0.schema import ApplicationSchema
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from sqlalchemy import select

from paymesh import __version__
from paymesh.kernel.asyncapi import asyncapi_document
from paymesh.kernel.config import Settings
from paymesh.kernel.event_catalog import EventCatalog, UndeclaredEvent
from paymesh.platform import SERVICE_MODULES, Platform, load_spec
from tests.conftest import http_client

SILENT_SERVICES = {"audit"}
"""Services that write no events of their own."""

SERVICES = ["identity", "profiles", "ledger", "wallets", "notifications", "audit"]


def every_spec() -> list[Any]:
    return [load_spec(name) for name in SERVICE_MODULES]


def test_every_service_that_writes_events_declares_them() -> None:
    for spec in every_spec():
        if spec.name in SILENT_SERVICES:
            assert spec.events == (), spec.name
        else:
            assert spec.events, f"{spec.name} declares no events ({spec.name}/events.py)"
            names = [event.name for event in spec.events]
            assert len(names) == len(set(names)), spec.name
            EventCatalog(spec.name, spec.events)  # each type in the service's namespace


def test_the_document_is_asyncapi_3_and_covers_every_declared_event() -> None:
    document = asyncapi_document(every_spec(), version=__version__)
    parsed = ApplicationSchema.model_validate(document)  # FastStream's AsyncAPI 3.0 model
    assert parsed.asyncapi == "3.0.0"
    declared = {event.name for spec in every_spec() for event in spec.events}
    assert set(document["channels"]) == declared
    assert set(document["components"]["messages"]) == declared
    for key, operation in document["operations"].items():
        assert operation["action"] == "send"
        channel = operation["channel"]["$ref"].rsplit("/", 1)[-1]
        assert key == f"{operation['tags'][0]['name']}.send.{channel}"
    # Every reference resolves inside the document.
    _validator(document, "identity.user.registered")


def test_the_broker_is_named_without_its_credentials() -> None:
    document = asyncapi_document(
        every_spec(), version="1", broker_url="amqp://guest:s3cret@rabbit.internal:5672/"
    )
    assert document["servers"]["broker"]["host"] == "rabbit.internal:5672"
    assert document["servers"]["broker"]["protocol"] == "amqp"
    assert "s3cret" not in str(document)
    assert "servers" not in asyncapi_document(every_spec(), version="1")


def test_the_catalog_refuses_what_was_not_declared() -> None:
    spec = load_spec("identity")
    catalog = EventCatalog("identity", spec.events)
    with pytest.raises(UndeclaredEvent, match=r"identity\.user\.teleported"):
        catalog.check("identity.user.teleported", {})
    with pytest.raises(ValueError, match="start with identity"):
        EventCatalog("identity", load_spec("ledger").events)


def _validator(document: dict[str, Any], event_type: str) -> Draft202012Validator:
    registry: Registry = Registry().with_resource(
        "urn:paymesh:asyncapi", Resource.from_contents(document, default_specification=DRAFT202012)
    )
    schema = {
        "$ref": f"urn:paymesh:asyncapi#/components/messages/{event_type}/payload",
    }
    return Draft202012Validator(schema, registry=registry)


@pytest.fixture
async def platform(make_platform: Callable[..., Any]) -> Platform:
    built: Platform = await make_platform(SERVICES)
    return built


async def test_real_events_fit_the_published_document(
    platform: Platform, settings: Settings
) -> None:
    """A sign-up through the gateway writes identity's and profiles' events; each one, as
    stored in the outbox, is valid against its message schema in `/asyncapi.json`."""
    async with http_client(platform) as client:
        document = (await client.get("/asyncapi.json")).json()
        response = await client.post(
            "/v1/identity/users",
            json={"username": "asyncapi_dora", "password": "plum-orbit-candle-42"},
        )
        assert response.status_code == 201, response.text
        await _wait_for_profile(client, platform, response.json()["id"])
    checked = set()
    for name, runtime in platform.runtimes.items():
        async with runtime.database.transaction() as session:
            rows = (await session.execute(select(runtime.tables.outbox.c.envelope))).scalars()
            for envelope in rows:
                assert envelope["type"] in document["channels"], envelope["type"]
                errors = list(_validator(document, envelope["type"]).iter_errors(envelope))
                assert not errors, (name, envelope["type"], [e.message for e in errors])
                checked.add(envelope["type"])
    assert {"identity.user.registered", "profiles.profile.created"} <= checked
    # A change of the data breaks the schema: the check can fail.
    bad = {
        "specversion": "1.0",
        "id": "e",
        "source": "/paymesh/identity",
        "type": "identity.user.registered",
        "time": "2026-01-01T00:00:00Z",
        "data": {},
    }
    assert list(_validator(document, "identity.user.registered").iter_errors(bad))


async def _wait_for_profile(client: httpx.AsyncClient, platform: Platform, user_id: str) -> None:
    token = platform.tokens.issue("usr_ops", roles=["ops"])
    for _ in range(200):
        found = await client.get(
            f"/v1/profiles/{user_id}", headers={"authorization": f"Bearer {token}"}
        )
        if found.status_code == 200:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("no profile")


async def test_the_page_shows_every_event_with_no_script(platform: Platform) -> None:
    async with http_client(platform) as client:
        page = await client.get("/asyncapi")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert "<script" not in page.text.lower()
    for spec in every_spec():
        for event in spec.events:
            assert f'id="{event.name}"' in page.text, event.name
