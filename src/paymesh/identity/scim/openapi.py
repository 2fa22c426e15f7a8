"""`/scim2` in the OpenAPI document, written by hand: scim2-server's ASGI app serves it,
and FastAPI cannot see into that. Bodies are `application/scim+json` (RFC 7644 3.1); the
schemas are the resources as identity keeps them (`schema.py`), loosely: SCIM clients
read the exact attributes from `/scim2/Schemas`. Bulk and `/Me` answer 501 and are left
out, as is creating or deleting groups (the groups are the fixed roles: 400)."""

from __future__ import annotations

from typing import Any

from paymesh.identity.scim.schema import MAX_RESULTS

SCIM = "application/scim+json"
PREFIX = "/scim2"
REF = "#/components/schemas/"
TAGS = ["identity: SCIM"]
SECURITY: list[dict[str, list[str]]] = [{"bearer": []}]

STRING: dict[str, Any] = {"type": "string"}
URNS: dict[str, Any] = {"type": "array", "items": STRING}
META: dict[str, Any] = {
    "type": "object",
    "properties": {
        "resourceType": STRING,
        "created": STRING,
        "lastModified": STRING,
        "location": STRING,
        "version": STRING,
    },
}
MULTI_VALUED = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {"value": STRING, "type": STRING, "primary": {"type": "boolean"}},
    },
}
MEMBERS = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {"value": STRING, "display": STRING, "$ref": STRING},
        "required": ["value"],
    },
}


def _object(properties: dict[str, Any], required: list[str], description: str) -> dict[str, Any]:
    return {
        "type": "object",
        "description": description,
        "properties": properties,
        "required": required,
    }


SCHEMAS: dict[str, Any] = {
    "ScimError": _object(
        {"schemas": URNS, "status": STRING, "scimType": STRING, "detail": STRING},
        ["schemas", "status"],
        "RFC 7644 3.12 error; `status` is the HTTP status as a string.",
    ),
    "ScimUser": _object(
        {
            "schemas": URNS,
            "id": {**STRING, "readOnly": True},
            "externalId": STRING,
            "meta": {**META, "readOnly": True},
            "userName": STRING,
            "name": {
                "type": "object",
                "properties": {"formatted": STRING, "givenName": STRING, "familyName": STRING},
            },
            "active": {"type": "boolean"},
            "password": {**STRING, "writeOnly": True},
            "emails": MULTI_VALUED,
            "phoneNumbers": MULTI_VALUED,
            "groups": {**MEMBERS, "readOnly": True, "description": "The user's roles."},
        },
        ["schemas", "userName"],
        "A user (RFC 7643 4.1) with the attributes identity keeps; others are a 400.",
    ),
    "ScimGroup": _object(
        {
            "schemas": URNS,
            "id": {**STRING, "readOnly": True},
            "meta": {**META, "readOnly": True},
            "displayName": STRING,
            "members": MEMBERS,
        },
        ["schemas", "displayName"],
        "A role (customer, merchant, ops, finance, auditor, admin) and its users.",
    ),
    "ScimListResponse": _object(
        {
            "schemas": URNS,
            "totalResults": {"type": "integer"},
            "startIndex": {"type": "integer"},
            "itemsPerPage": {"type": "integer"},
            "Resources": {"type": "array", "items": {"type": "object"}},
        },
        ["schemas", "totalResults"],
        "RFC 7644 3.4.2 list response.",
    ),
    "ScimPatchOp": _object(
        {
            "schemas": URNS,
            "Operations": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "op": {"type": "string", "enum": ["add", "remove", "replace"]},
                        "path": STRING,
                        "value": {},
                    },
                    "required": ["op"],
                },
            },
        },
        ["schemas", "Operations"],
        "RFC 7644 3.5.2: `active`, `name`, `emails`, `phoneNumbers`, group `members`.",
    ),
    "ScimSearchRequest": _object(
        {
            "schemas": URNS,
            "filter": STRING,
            "startIndex": {"type": "integer"},
            "count": {"type": "integer"},
            "attributes": URNS,
            "excludedAttributes": URNS,
        },
        ["schemas"],
        "RFC 7644 3.4.3 search with POST.",
    ),
    "ScimDiscovery": _object(
        {"schemas": URNS, "id": STRING, "meta": META},
        ["schemas"],
        "A service provider configuration, resource type or schema (RFC 7643 5-7).",
    ),
}

QUERY = [
    ("filter", 'e.g. `userName eq "alice"`; `eq`, `co`, `sw`, `and`, `or`, ...', STRING),
    ("startIndex", "1-based index of the first result.", {"type": "integer", "minimum": 1}),
    ("count", f"Page size (at most {MAX_RESULTS}).", {"type": "integer", "minimum": 0}),
    ("attributes", "Comma-separated attributes to return.", STRING),
    ("excludedAttributes", "Comma-separated attributes to leave out.", STRING),
]
ID = {"name": "id", "in": "path", "required": True, "schema": STRING}


def _body(schema: str) -> dict[str, Any]:
    return {"required": True, "content": {SCIM: {"schema": {"$ref": REF + schema}}}}


def _answer(description: str, schema: str | None) -> dict[str, Any]:
    if schema is None:
        return {"description": description}
    return {"description": description, "content": {SCIM: {"schema": {"$ref": REF + schema}}}}


def _errors(*statuses: int) -> dict[str, Any]:
    reasons = {
        400: "SCIM error: `invalidFilter`, `invalidSyntax`, `invalidValue`, `mutability`, ...",
        401: "SCIM error: no valid bearer token (`WWW-Authenticate`).",
        403: "SCIM error: the token does not carry the admin role.",
        404: "SCIM error: no such resource.",
        409: "SCIM error `uniqueness`: the userName or email is taken.",
    }
    return {str(status): _answer(reasons[status], "ScimError") for status in statuses}


def _operation(
    operation_id: str,
    summary: str,
    ok: tuple[int, str, str | None],
    errors: tuple[int, ...],
    *,
    body: str | None = None,
    parameters: list[dict[str, Any]] | None = None,
    authenticated: bool = True,
    also: tuple[int, str, str | None] | None = None,
) -> dict[str, Any]:
    answers = {
        str(status): _answer(text, schema)
        for status, text, schema in ([ok, also] if also else [ok])
    }
    operation: dict[str, Any] = {
        "tags": TAGS,
        "summary": summary,
        "operationId": operation_id,
        "responses": answers | _errors(*((401, 403) if authenticated else ()), *errors),
    }
    if authenticated:
        operation["security"] = SECURITY
    if body is not None:
        operation["requestBody"] = _body(body)
    if parameters:
        operation["parameters"] = parameters
    return operation


def _query(*names: str) -> list[dict[str, Any]]:
    return [
        {"name": key, "in": "query", "required": False, "description": text, "schema": schema}
        for key, text, schema in QUERY
        if key in names
    ]


def _search(name: str, resource: str) -> dict[str, Any]:
    return _operation(
        f"scim_{name}_search",
        f"{resource}s, filtered and paged",
        (200, "A list response.", "ScimListResponse"),
        (400,),
        parameters=_query(*(key for key, _text, _schema in QUERY)),
    )


def _resources(name: str, resource: str, schema: str, *, creatable: bool) -> dict[str, Any]:
    collection: dict[str, Any] = {"get": _search(name, resource)}
    if creatable:
        collection["post"] = _operation(
            f"scim_{name}_create",
            f"Create a {resource.lower()}",
            (201, f"The {resource.lower()}.", schema),
            (400, 409),
            body=schema,
        )
    one = {
        "parameters": [ID],
        "get": _operation(f"scim_{name}_get", f"One {resource.lower()}", (200, "", schema), (404,)),
        "put": _operation(
            f"scim_{name}_replace",
            f"Replace a {resource.lower()}",
            (200, f"The {resource.lower()}.", schema),
            (400, 404, 409),
            body=schema,
        ),
        "patch": _operation(
            f"scim_{name}_patch",
            f"Change a {resource.lower()}",
            (204, "Changed.", None),
            (400, 404, 409),
            body="ScimPatchOp",
            parameters=_query("attributes", "excludedAttributes"),
            also=(200, f"Changed: the {resource.lower()}, when attributes were asked.", schema),
        ),
    }
    if creatable:
        one["delete"] = _operation(
            f"scim_{name}_delete", f"Delete a {resource.lower()}", (204, "Deleted.", None), (404,)
        )
    search = {
        "post": _operation(
            f"scim_{name}_search_post",
            f"{resource}s, searched with POST",
            (200, "A list response.", "ScimListResponse"),
            (400,),
            body="ScimSearchRequest",
        )
    }
    endpoint = f"{PREFIX}/{resource}s"
    return {endpoint: collection, f"{endpoint}/{{id}}": one, f"{endpoint}/.search": search}


def _discovery(name: str, summary: str) -> dict[str, Any]:
    listing = _operation(
        f"scim_{name.lower()}_list", summary, (200, "A list response.", "ScimListResponse"), ()
    )
    one = _operation(
        f"scim_{name.lower()}_get", f"{summary}: one", (200, "", "ScimDiscovery"), (404,)
    )
    return {
        f"{PREFIX}/{name}": {"get": listing},
        f"{PREFIX}/{name}/{{id}}": {"get": one} | {"parameters": [ID]},
    }


def paths() -> dict[str, Any]:
    """The `/scim2` paths of the OpenAPI document."""
    documented: dict[str, Any] = {
        f"{PREFIX}/ServiceProviderConfig": {
            "get": _operation(
                "scim_service_provider_config",
                "What this SCIM service supports (no token needed)",
                (200, "RFC 7643 5.", "ScimDiscovery"),
                (),
                authenticated=False,
            )
        },
        **_discovery("ResourceTypes", "The resource types: User and Group"),
        **_discovery("Schemas", "The User and Group schemas as identity keeps them"),
        **_resources("users", "User", "ScimUser", creatable=True),
        **_resources("groups", "Group", "ScimGroup", creatable=False),
        f"{PREFIX}/.search": {
            "post": _operation(
                "scim_search_post",
                "Users and groups, searched with POST",
                (200, "A list response.", "ScimListResponse"),
                (400,),
                body="ScimSearchRequest",
            )
        },
    }
    return documented
