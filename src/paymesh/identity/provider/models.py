"""What Authlib's hooks see: clients, users, authorization codes and refresh tokens,
loaded on the event loop and handed to the Authlib thread as plain objects."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from authlib.oauth2.rfc6749 import AuthorizationCodeMixin, ClientMixin, TokenMixin
from sqlalchemy import Row

from paymesh.identity import models as tables
from paymesh.identity import redirect_uris
from paymesh.identity.security import secret_matches
from paymesh.kernel.db import utcnow

SECRET_METHODS = ("client_secret_basic", "client_secret_post")
SERVICE_SCOPE = re.compile(r"^[a-z][a-z0-9_]{1,31}(:[a-z]{1,16})?$")


@dataclass
class ClientModel(ClientMixin):  # type: ignore[misc]
    row: tables.Client | Row[Any] | SimpleNamespace
    """The registered client's columns (read only), or a built-in service account."""
    builtin: bool = False
    """A built-in service account (`service-<name>`): it may ask for any service's name
    as a scope."""

    @property
    def client_id(self) -> str:
        return self.row.id

    @property
    def public(self) -> bool:
        return self.row.secret_hash is None

    def get_client_id(self) -> str:
        return self.row.id

    def get_default_redirect_uri(self) -> None:
        return None  # redirect_uri is always required and must match exactly

    def allows_scopes(self, scopes: list[str]) -> bool:
        allowed = set(self.row.scopes)
        if self.builtin:
            return all(scope in allowed or SERVICE_SCOPE.match(scope) for scope in scopes)
        return set(scopes) <= allowed

    def get_allowed_scope(self, scope: str | None) -> str | None:
        requested = (scope or "").split()
        if not self.allows_scopes(requested):
            return None  # invalid_scope: we never silently narrow
        return " ".join(dict.fromkeys(requested))

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uris.matches(list(self.row.redirect_uris), redirect_uri, public=self.public)

    def check_client_secret(self, client_secret: str) -> bool:
        return secret_matches(client_secret, self.row.secret_hash)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if self.public:
            return method == "none"
        return method in SECRET_METHODS

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" and "authorization_code" in self.row.grant_types

    def check_grant_type(self, grant_type: str) -> bool:
        if grant_type == "password" and not self.row.password_grant_allowed:
            return False
        return grant_type in self.row.grant_types


@dataclass
class UserModel:
    row: tables.User
    roles: list[str]
    session_id: str | None = None
    auth_time: dt.datetime | None = None
    amr: list[str] = field(default_factory=list)

    def get_user_id(self) -> str:
        return self.row.id


@dataclass
class CodeModel(AuthorizationCodeMixin):  # type: ignore[misc]
    row: tables.AuthorizationCode

    @property
    def code_challenge(self) -> str:
        return self.row.code_challenge

    @property
    def code_challenge_method(self) -> str:
        return self.row.code_challenge_method

    def get_redirect_uri(self) -> str:
        return self.row.redirect_uri

    def get_scope(self) -> str:
        return self.row.scope

    def get_nonce(self) -> str | None:
        return self.row.nonce

    def get_auth_time(self) -> int:
        return int(self.row.auth_time.timestamp())

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> list[str]:
        return list(self.row.amr)


@dataclass
class RefreshModel(TokenMixin):  # type: ignore[misc]
    row: tables.RefreshToken

    def check_client(self, client: Any) -> bool:
        return bool(self.row.client_id == client.get_client_id())

    def get_scope(self) -> str:
        return self.row.scope

    def get_expires_in(self) -> int:
        return int((self.row.expires_at - self.row.created_at).total_seconds())

    def is_expired(self) -> bool:
        return self.row.expires_at <= utcnow()

    def is_revoked(self) -> bool:
        return self.row.revoked_at is not None or self.row.rotated_at is not None


@dataclass
class AccessModel(TokenMixin):  # type: ignore[misc]
    """A verified access token (a JWT), for revocation and introspection."""

    claims: dict[str, Any]
    revoked: bool = False

    def check_client(self, client: Any) -> bool:
        return bool(self.claims.get("client_id") == client.get_client_id())

    def get_scope(self) -> str:
        return str(self.claims.get("scope") or "")

    def get_expires_in(self) -> int:
        return int(self.claims["exp"]) - int(self.claims["iat"])

    def is_expired(self) -> bool:
        return int(self.claims["exp"]) <= int(utcnow().timestamp())

    def is_revoked(self) -> bool:
        return self.revoked
