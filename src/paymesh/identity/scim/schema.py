"""What identity announces at /scim2/Schemas: RFC 7643's User schema trimmed to the
attributes identity keeps (a client then knows `nickName` or `addresses` would be lost),
and the Group schema. The resource classes come from these schemas (`model_for`)."""

from __future__ import annotations

from typing import Any

from scim2_models import (
    AuthenticationScheme,
    Bulk,
    ChangePassword,
    ETag,
    External,
    Filter,
    Patch,
    Reference,
    Resource,
    ScimProvider,
    ServiceProviderConfig,
    Sort,
)
from scim2_server.utils import load_default_resource_types, load_default_schemas

USER_URN = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_URN = "urn:ietf:params:scim:schemas:core:2.0:Group"
MAX_RESULTS = 200

USER_ATTRIBUTES = {
    "userName": None,
    "name": {"formatted", "givenName", "familyName"},
    "active": None,
    "password": None,
    "emails": {"value", "type", "primary"},
    "phoneNumbers": {"value", "type", "primary"},
    "groups": None,
}
"""Kept attributes, with the sub-attributes kept (None: all). `type` of emails and phone
numbers is accepted (identity providers filter on `type eq "work"`) but not stored."""


def config() -> ServiceProviderConfig:
    return ServiceProviderConfig(
        patch=Patch(supported=True),
        bulk=Bulk(supported=False, max_operations=0, max_payload_size=0),
        filter=Filter(supported=True, max_results=MAX_RESULTS),
        change_password=ChangePassword(supported=False),
        sort=Sort(supported=False),
        etag=ETag(supported=False),
        authentication_schemes=[
            AuthenticationScheme(
                type=AuthenticationScheme.Type.oauthbearertoken,
                name="OAuth Bearer Token",
                description="An access token with the admin role",
                spec_uri=Reference[External]("https://www.rfc-editor.org/rfc/rfc6750"),
                primary=True,
            )
        ],
    )


def provider() -> ScimProvider:
    schemas = load_default_schemas()
    user = schemas[USER_URN]
    user.attributes = [
        attribute for attribute in user.attributes or [] if attribute.name in USER_ATTRIBUTES
    ]
    for attribute in user.attributes:
        kept = USER_ATTRIBUTES[str(attribute.name)]
        if kept is not None:
            attribute.sub_attributes = [
                sub for sub in attribute.sub_attributes or [] if sub.name in kept
            ]
    resource_types = load_default_resource_types()
    resource_types["User"].schema_extensions = []
    return ScimProvider.from_discovery(
        [user, schemas[GROUP_URN]],
        [resource_types["User"], resource_types["Group"]],
        config=config(),
    )


def model(scim: ScimProvider, name: str) -> type[Resource[Any]]:
    found = scim.model_for(name)
    assert found is not None and issubclass(found, Resource), name
    return found
