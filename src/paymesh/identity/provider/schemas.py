"""The OAuth2 / OpenID Connect wire shapes, for the OpenAPI document: the forms the
endpoints read and the JSON they answer. Authlib parses and writes the real messages; these
models only describe them (RFC 6749, 7009, 7662, OpenID Connect Core)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

HTML = "text/html"
FORM = "application/x-www-form-urlencoded"


class TokenRequest(BaseModel):
    """Form of `POST /oauth2/token`. Confidential clients authenticate with HTTP Basic
    (`client_secret_basic`) or `client_id` + `client_secret` in the form; public clients
    send `client_id` alone."""

    grant_type: Literal["authorization_code", "refresh_token", "client_credentials", "password"]
    code: str | None = Field(default=None, description="authorization_code")
    redirect_uri: str | None = Field(default=None, description="authorization_code")
    code_verifier: str | None = Field(
        default=None, description="authorization_code: the PKCE verifier (S256)"
    )
    refresh_token: str | None = Field(default=None, description="refresh_token")
    scope: str | None = Field(default=None, description="Space-separated scopes.")
    username: str | None = Field(default=None, description="password (legacy clients)")
    password: str | None = Field(default=None, description="password (legacy clients)")
    totp: str | None = Field(default=None, description="password: a TOTP or recovery code")
    client_id: str | None = None
    client_secret: str | None = None


class TokenResponse(BaseModel):
    token_type: Literal["Bearer"]
    access_token: str = Field(description="An RFC 9068 JWT (`typ: at+jwt`).")
    expires_in: int = Field(description="Seconds.")
    scope: str
    refresh_token: str | None = Field(default=None, description="Rotated on each use.")
    id_token: str | None = Field(default=None, description="With the `openid` scope.")


class OAuth2Error(BaseModel):
    """RFC 6749 5.2 (and RFC 6750 3.1 at userinfo) error body, `application/json`."""

    model_config = ConfigDict(extra="allow")
    error: str = Field(description="e.g. `invalid_request`, `invalid_client`, `invalid_grant`")
    error_description: str | None = None


class TokenForm(BaseModel):
    """Form of `POST /oauth2/introspect` and `POST /oauth2/revoke`."""

    token: str
    token_type_hint: Literal["access_token", "refresh_token"] | None = None
    client_id: str | None = None
    client_secret: str | None = None


class Introspection(BaseModel):
    """RFC 7662 2.2: `{"active": false}` alone for a token that is not active."""

    model_config = ConfigDict(extra="allow")
    active: bool
    token_type: str | None = None
    scope: str | None = None
    client_id: str | None = None
    sub: str | None = None
    roles: list[str] | None = None
    aud: str | list[str] | None = None
    iss: str | None = None
    exp: int | None = None
    iat: int | None = None
    jti: str | None = None


class UserInfo(BaseModel):
    """The claims the token's scopes release (OpenID Connect Core 5.3)."""

    model_config = ConfigDict(extra="allow")
    sub: str


class Jwks(BaseModel):
    keys: list[dict[str, Any]]


class LoginForm(BaseModel):
    """Form posted by the login and consent pages (`POST /oauth2/authorize`)."""

    csrf_token: str = Field(description="From the page (and its cookie).")
    authorization_request: str = Field(description="The authorization request's query.")
    action: Literal["login", "approve", "deny"]
    username: str | None = None
    password: str | None = None
    totp: str | None = None


class LogoutForm(BaseModel):
    """Form of `POST /oauth2/logout` (the confirmation page posts `csrf_token`)."""

    csrf_token: str | None = None
    id_token_hint: str | None = None
    post_logout_redirect_uri: str | None = None
    state: str | None = None


AUTHORIZE_PARAMETERS = [
    ("response_type", "`code`", ["code"]),
    ("client_id", "The client.", None),
    ("redirect_uri", "One of the client's registered redirect URIs (exact match).", None),
    ("scope", "Space-separated scopes (`openid` for an ID token).", None),
    ("state", "Returned unchanged to the redirect URI.", None),
    ("nonce", "Put into the ID token.", None),
    ("code_challenge", "PKCE: BASE64URL(SHA-256(code_verifier)); required.", None),
    ("code_challenge_method", "`S256`", ["S256"]),
    ("prompt", "`login` forces the login form; `none`, `consent`.", None),
]


def authorize_parameters() -> list[dict[str, Any]]:
    """The query of `GET /oauth2/authorize` (RFC 6749 4.1.1, RFC 7636, OIDC Core 3.1.2.1).
    None is required by the document: a missing one gets the error page or redirect."""
    parameters = []
    for name, description, values in AUTHORIZE_PARAMETERS:
        schema: dict[str, Any] = {"type": "string"}
        if values:
            schema["enum"] = values
        parameters.append(
            {"name": name, "in": "query", "required": False, "description": description}
            | {"schema": schema}
        )
    return parameters


def form_body(model: type[BaseModel]) -> dict[str, Any]:
    """`requestBody` of an endpoint that reads a form described by `model`."""
    return {"required": True, "content": {FORM: {"schema": model.model_json_schema()}}}


def html(description: str) -> dict[str, Any]:
    """A response that is one of the provider's HTML pages."""
    return {"description": description, "content": {HTML: {"schema": {"type": "string"}}}}


def oauth2_error(description: str) -> dict[str, Any]:
    return {"description": description, "model": OAuth2Error}


INVALID_CLIENT = {
    "description": "`invalid_client`: client authentication failed (RFC 6749 5.2).",
    "model": OAuth2Error,
    "content": {"application/problem+json": {}},
    "x-problem-codes": ["invalid_client"],
}


REDIRECT = {
    "description": "Redirect (`Location`) to the client's redirect URI, with `code` and "
    "`state`, or with `error` (RFC 6749 4.1.2).",
    "headers": {"Location": {"schema": {"type": "string"}}},
}
