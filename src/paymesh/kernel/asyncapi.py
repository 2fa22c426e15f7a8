"""The AsyncAPI 3.0 document of every event Paymesh publishes, and a page to read it.

Built from the services' declared event types (`ServiceSpec.events`, kernel/event_catalog.py):
the same Pydantic models the outbox checks events against when
`PAYMESH_EVENTS_CHECK_PAYLOADS` is on, so the document describes what is really written.
Each event type is a channel whose message is the CloudEvents 1.0 envelope (structured
JSON, `application/cloudevents+json`) with `data` described by its model; each service has
a `send` operation per event type it writes. Where the channel lives on each broker is
said in the channel's description (RabbitMQ routing key, NATS subject, Kafka topic and key);
the `servers` entry names the broker of `PAYMESH_BROKER_URL`, without its credentials.

The page (`/asyncapi`) is rendered here from the document, as plain HTML with no script, so
it works offline and under a Content-Security-Policy that allows nothing but its own style.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from jinja2 import Environment
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from paymesh.kernel.runtime import ServiceSpec

CONTENT_TYPE = "application/cloudevents+json"
SCHEMA_REF = "#/components/schemas/{model}"

_PROTOCOLS = {"amqp": "amqp", "amqps": "amqps", "nats": "nats", "tls": "nats", "kafka": "kafka"}

_EXTENSIONS = {
    "actor": "The verified subject (user or client) whose request wrote the event.",
    "actorclient": "The OAuth2 client of that request, when there was one.",
    "actorroles": "The actor's roles, space-separated.",
    "requestid": "The request id of the HTTP request that wrote the event.",
    "traceparent": "W3C trace context of that request (CloudEvents distributed tracing).",
}


def asyncapi_document(
    specs: Sequence[ServiceSpec],
    *,
    version: str,
    broker_url: str | None = None,
    namespace: str = "paymesh",
) -> dict[str, Any]:
    declared = [(spec, event) for spec in specs for event in spec.events]
    models: dict[type[BaseModel], None] = dict.fromkeys(event.data for _spec, event in declared)
    refs, definitions = models_json_schema(
        [(model, "serialization") for model in models], ref_template=SCHEMA_REF
    )
    schemas: dict[str, Any] = dict(definitions.get("$defs", {}))
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for spec, event in declared:
        key = event.name
        data_ref = refs[(event.data, "serialization")]
        messages[key] = {
            "name": event.name,
            "title": event.name,
            "summary": event.summary,
            "contentType": CONTENT_TYPE,
            "payload": _envelope_schema(spec.name, event.name, data_ref),
        }
        channels[key] = {
            "address": event.name,
            "title": event.name,
            "summary": event.summary,
            "description": _where(spec.name, event.name, namespace),
            "messages": {key: {"$ref": f"#/components/messages/{key}"}},
        }
        operations[f"{spec.name}.send.{key}"] = {
            "action": "send",
            "title": f"{spec.name} writes {event.name}",
            "channel": {"$ref": f"#/channels/{key}"},
            "messages": [{"$ref": f"#/channels/{key}/messages/{key}"}],
            "tags": [{"name": spec.name}],
        }
    document: dict[str, Any] = {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Paymesh events",
            "version": version,
            "description": (
                "Every event a Paymesh service writes to its outbox, delivered at least once "
                "to each consuming service (which drops repeats through its inbox). Messages "
                "are CloudEvents 1.0 in structured JSON mode."
            ),
            "tags": [{"name": spec.name, "description": spec.description} for spec in specs],
        },
        "defaultContentType": CONTENT_TYPE,
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }
    if broker_url:
        document["servers"] = {"broker": _server(broker_url)}
    return document


def _envelope_schema(service: str, event_type: str, data_ref: dict[str, Any]) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "specversion": {"type": "string", "const": "1.0"},
        "id": {"type": "string", "description": "Unique per event; consumers dedupe on it."},
        "source": {"type": "string", "const": f"/paymesh/{service}"},
        "type": {"type": "string", "const": event_type},
        "time": {"type": "string", "format": "date-time"},
        "subject": {
            "type": ["string", "null"],
            "description": "The id of the thing the event is about.",
        },
        "datacontenttype": {"type": "string", "const": "application/json"},
        "data": data_ref,
    }
    for name, description in _EXTENSIONS.items():
        properties[name] = {"type": "string", "description": description}
    return {
        "type": "object",
        "required": ["specversion", "id", "source", "type", "time", "data"],
        "properties": properties,
    }


def _where(service: str, event_type: str, namespace: str) -> str:
    return (
        f"RabbitMQ: routing key `{event_type}` on the topic exchange `{namespace}.events`. "
        f"NATS JetStream: subject `{namespace}.events.{event_type}` in the stream "
        f"`{namespace}-{service}`. Kafka: topic `{namespace}.events.{service}`, keyed by the "
        "event's subject. In one process: the in-process bus."
    )


def _server(broker_url: str) -> dict[str, Any]:
    parts = urlsplit(broker_url)
    host = parts.netloc.rsplit("@", 1)[-1]  # never the credentials
    return {
        "host": host,
        "protocol": _PROTOCOLS.get(parts.scheme, parts.scheme),
        "description": "PAYMESH_BROKER_URL",
    }


# --- the page ------------------------------------------------------------------------------

PAGE_SECURITY_POLICY = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'"

_PAGE = Environment(autoescape=True).from_string(
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{{ info.title }} {{ info.version }}</title>
<style>
body{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:70rem;padding:0 1rem;color:#222}
code{background:#f3f3f3;padding:0 .2em} table{border-collapse:collapse;margin:.4rem 0 1rem}
td,th{border:1px solid #ddd;padding:.2rem .5rem;text-align:left;vertical-align:top}
section{border-top:1px solid #ccc;margin-top:1.2rem} .where{color:#555;font-size:.9em}
</style></head><body>
<h1>{{ info.title }} <small>{{ info.version }}</small></h1>
<p>{{ info.description }}</p>
<p>The machine-readable document: <a href="asyncapi.json">asyncapi.json</a> (AsyncAPI 3.0).
{% if server %}Broker: <code>{{ server.protocol }}://{{ server.host }}</code>.{% endif %}</p>
<ul>{% for service in services %}<li><a href="#{{ service.name }}">{{ service.name }}</a>
({{ service.events|length }})</li>{% endfor %}</ul>
{% for service in services %}<section id="{{ service.name }}"><h2>{{ service.name }}</h2>
<p>{{ service.description }}</p>
{% for event in service.events %}<h3 id="{{ event.name }}"><code>{{ event.name }}</code></h3>
<p>{{ event.summary }}</p><p class="where">{{ event.where }}</p>
{{ fields(event.data) }}
{% endfor %}</section>{% endfor %}
<section><h2>Shared shapes</h2>{% for name, schema in nested %}
<h3 id="schema-{{ name }}">{{ name }}</h3>{{ fields(schema) }}{% endfor %}</section>
</body></html>
"""
)

_FIELDS = Environment(autoescape=True).from_string(
    """{% if rows %}<table><tr><th>data field</th><th>type</th><th>required</th>
<th>description</th></tr>{% for row in rows %}<tr><td><code>{{ row.name }}</code></td>
<td>{% if row.link %}<a href="#schema-{{ row.link }}">{{ row.type }}</a>{% else %}{{ row.type }}
{% endif %}</td><td>{{ "yes" if row.required else "" }}</td><td>{{ row.description }}</td></tr>
{% endfor %}</table>{% else %}<p><em>No data fields.</em></p>{% endif %}"""
)


def asyncapi_page(document: dict[str, Any]) -> str:
    schemas: dict[str, Any] = document["components"]["schemas"]
    messages: dict[str, Any] = document["components"]["messages"]
    channels: dict[str, Any] = document["channels"]
    by_service: dict[str, list[dict[str, Any]]] = {}
    for operation in document["operations"].values():
        key = operation["channel"]["$ref"].rsplit("/", 1)[-1]
        data_ref = messages[key]["payload"]["properties"]["data"]
        by_service.setdefault(operation["tags"][0]["name"], []).append(
            {
                "name": key,
                "summary": messages[key]["summary"],
                "where": channels[key]["description"],
                "data": _resolve(data_ref, schemas),
            }
        )
    data_names = {
        message["payload"]["properties"]["data"].get("$ref", "").rsplit("/", 1)[-1]
        for message in messages.values()
    }
    tags = {tag["name"]: tag.get("description", "") for tag in document["info"].get("tags", [])}
    services = [
        {"name": name, "description": tags.get(name, ""), "events": events}
        for name, events in by_service.items()
    ]

    def fields(schema: dict[str, Any]) -> Any:
        return _FIELDS.render(rows=_rows(schema))

    return _PAGE.render(
        info=document["info"],
        server=document.get("servers", {}).get("broker"),
        services=services,
        nested=[(name, schema) for name, schema in schemas.items() if name not in data_names],
        fields=fields,
    )


def _resolve(schema: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    return schemas[ref.rsplit("/", 1)[-1]] if isinstance(ref, str) else schema


def _rows(schema: dict[str, Any]) -> list[dict[str, Any]]:
    required = set(schema.get("required", ()))
    rows = []
    for name, field in schema.get("properties", {}).items():
        kind, link = _type_of(field)
        rows.append(
            {
                "name": name,
                "type": kind,
                "link": link,
                "required": name in required,
                "description": field.get("description", ""),
            }
        )
    return rows


def _type_of(field: dict[str, Any]) -> tuple[str, str | None]:
    """A short type for the table, and the shared shape it links to, if any."""
    if "$ref" in field:
        name = field["$ref"].rsplit("/", 1)[-1]
        return name, name
    for union in ("anyOf", "oneOf"):
        if union in field:
            parts = [_type_of(option) for option in field[union]]
            link = next((found for _kind, found in parts if found), None)
            return " | ".join(kind for kind, _found in parts), link
    kind = field.get("type", "any")
    if kind == "array":
        inner, link = _type_of(field.get("items", {}))
        return f"list of {inner}", link
    if "const" in field:
        return f"{kind} = {field['const']!r}", None
    if "enum" in field:
        return " | ".join(repr(value) for value in field["enum"]), None
    if field.get("format"):
        return f"{kind} ({field['format']})", None
    return str(kind), None
