"""Identity's HTTP API: the OpenID Connect discovery document and the OAuth2 endpoints at
the paths WSO2 Identity Server uses (`/oauth2/token`, `/oauth2/authorize`, `/oauth2/jwks`,
...). The OAuth2 endpoints answer errors in RFC 6749's JSON format, as clients expect.
`/v1/identity` (users, clients, TOTP, SCIM) lives beside them."""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlencode

from authlib.oauth2.rfc6749 import InvalidRequestError
from fastapi import Depends, Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from paymesh.identity import repository, revocation
from paymesh.identity.provider import authorize as authorization
from paymesh.identity.provider import pages
from paymesh.identity.provider import schemas as wire
from paymesh.identity.provider.state import SESSION_COOKIE, ProviderState
from paymesh.identity.security import secret_hash
from paymesh.identity.service import USER_SCOPES, user_claims
from paymesh.kernel.app import service_router
from paymesh.kernel.auth import caller_from_claims
from paymesh.kernel.db import utcnow
from paymesh.kernel.decoding import FORM, media_kind
from paymesh.kernel.errors import BadRequest, Unauthenticated

well_known = service_router(prefix="/.well-known", tags=["identity"])
oauth = service_router(prefix="/oauth2", tags=["identity"])
router = service_router(prefix="/v1/identity", tags=["identity"])


async def provider_state(request: Request) -> ProviderState:
    state: ProviderState = request.app.state.runtime.state["provider"]
    await state.keys.reload_if_stale()
    return state


State = Annotated[ProviderState, Depends(provider_state)]


def discovery_document(state: ProviderState) -> dict[str, Any]:
    issuer = state.issuer
    methods = ["client_secret_basic", "client_secret_post", "none"]
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/oauth2/authorize",
        "token_endpoint": f"{issuer}/oauth2/token",
        "jwks_uri": f"{issuer}/oauth2/jwks",
        "userinfo_endpoint": f"{issuer}/oauth2/userinfo",
        "introspection_endpoint": f"{issuer}/oauth2/introspect",
        "revocation_endpoint": f"{issuer}/oauth2/revoke",
        "end_session_endpoint": f"{issuer}/oauth2/logout",
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": [
            "authorization_code",
            "refresh_token",
            "client_credentials",
            "password",
        ],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [state.settings.identity.signing_algorithm],
        "token_endpoint_auth_methods_supported": methods,
        "revocation_endpoint_auth_methods_supported": methods,
        "introspection_endpoint_auth_methods_supported": methods[:2],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": list(USER_SCOPES),
        "claims_supported": [
            "sub",
            "iss",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "nonce",
            "at_hash",
            "sid",
            "amr",
            "preferred_username",
            "name",
            "given_name",
            "family_name",
            "email",
            "email_verified",
            "phone_number",
            "updated_at",
        ],
        "prompt_values_supported": ["none", "login", "consent"],
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
    }


@well_known.get("/openid-configuration", summary="OpenID Connect discovery")
async def openid_configuration(state: State) -> dict[str, Any]:
    """The provider's metadata (OpenID Connect Discovery 1.0)."""
    return discovery_document(state)


@well_known.get("/oauth-authorization-server", summary="OAuth 2.0 server metadata (RFC 8414)")
async def authorization_server_metadata(state: State) -> dict[str, Any]:
    """The same metadata under the RFC 8414 name."""
    return discovery_document(state)


@oauth.get(
    "/jwks", summary="The public keys that verify identity's tokens", response_model=wire.Jwks
)
async def jwks(state: State) -> Response:
    """JWKS (RFC 7517): the current signing key and retired ones whose tokens may still
    be valid. Cache it, and fetch it again when a token names an unknown `kid`."""
    return JSONResponse(state.keys.jwks(), headers={"cache-control": "public, max-age=60"})


@oauth.get(
    "/authorize",
    summary="Authorization endpoint (login and consent pages)",
    response_class=HTMLResponse,
    responses={
        200: wire.html("The login page, or the consent page for clients not first-party."),
        302: wire.REDIRECT,
        400: wire.html("Error page: unknown client or unregistered redirect URI."),
    },
    openapi_extra={"parameters": wire.authorize_parameters()},
)
async def authorize_get(request: Request, state: State) -> Response:
    """Authorization code flow with PKCE (S256). Shows the login form, then consent for
    clients that are not first-party, then redirects to the registered redirect URI."""
    return await authorization.authorize(state, request, list(request.query_params.multi_items()))


@oauth.post(
    "/authorize",
    summary="Login and consent form submissions",
    response_class=HTMLResponse,
    responses={
        200: wire.html("The consent page, or the login page again."),
        302: wire.REDIRECT,
        400: wire.html("Error page: unknown action, or the sign-in link is not valid."),
        401: wire.html("The login page again: wrong username, password or one-time code."),
        403: wire.html("Error page: the CSRF token does not match its cookie."),
        429: wire.html("The login page again: too many failed logins lock the username."),
    },
    openapi_extra={"requestBody": wire.form_body(wire.LoginForm)},
)
async def authorize_post(request: Request, state: State) -> Response:
    """What the login and consent pages post (CSRF-protected): `action=login` with the
    credentials, or `approve` / `deny`. Redirects to the client once the user is signed
    in (and agreed); five failed logins in 15 minutes lock the username (429)."""
    return await authorization.submit(state, request)


MAX_FORM_FIELDS = 1000
"""As Starlette's form parser allows."""


async def _form_items(request: Request) -> list[tuple[str, str]]:
    if media_kind(request.headers.get("content-type", "").encode("latin-1")) == FORM:
        # The standard library's parser: a third of Starlette's cost per token request.
        # The decoding layer has already refused a body that is not UTF-8 once decoded.
        body = (await request.body()).decode("utf-8", errors="replace")
        try:
            return parse_qsl(body, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
        except ValueError:
            raise BadRequest(detail=f"more than {MAX_FORM_FIELDS} form fields") from None
    form = await request.form()
    return [(key, value) for key, value in form.multi_items() if isinstance(value, str)]


_ERROR_DESCRIPTION_SAFE = re.compile(r"[\x20-\x21\x23-\x26\x28-\x5b\x5d-\x7e]*")
"""RFC 6749 5.2's characters for `error_description`, less `'` (the name is quoted with
it); Authlib refuses any other, so a name outside them is not echoed."""


def _repeated_name(items: list[tuple[str, str]]) -> str | None:
    seen: set[str] = set()
    for name, _ in items:
        if name in seen:
            return name[:64]
        seen.add(name)
    return None


async def _endpoint(
    state: ProviderState, request: Request, path: str, name: str | None
) -> Response:
    items = await _form_items(request)
    repeated = _repeated_name(items)
    if repeated is not None:
        # RFC 6749 3.2: parameters MUST NOT be included more than once (Authlib would
        # take the first of two grant types, scopes or secrets without a word).
        refusal = InvalidRequestError(
            f"the parameter {repeated!r} is repeated"
            if _ERROR_DESCRIPTION_SAFE.fullmatch(repeated)
            else "a parameter is repeated"
        )
        refused: Response = state.server.handle_error_response(None, refusal)
        return refused
    data = state.request_data(request, path, items)
    exchange = state.exchange(request)
    server = state.server
    try:
        if name is None:
            response: Response = await exchange.call(lambda: server.create_token_response(data))
        else:
            response = await exchange.call(lambda: server.create_endpoint_response(name, data))
    except BaseException:
        await exchange.finish(commit=False)
        raise
    await exchange.finish(commit=response.status_code < 400)
    return response


@oauth.post(
    "/token",
    summary="Token endpoint",
    response_model=wire.TokenResponse,
    responses={
        400: wire.oauth2_error("RFC 6749 error, e.g. `invalid_grant`, `invalid_request`."),
        401: wire.INVALID_CLIENT,
    },
    openapi_extra={"requestBody": wire.form_body(wire.TokenRequest)},
)
async def token(request: Request, state: State) -> Response:
    """Grants: `authorization_code` (PKCE S256 required), `refresh_token` (rotated; a
    reused one revokes its family), `client_credentials`, and `password` for clients
    flagged for it. Errors follow RFC 6749 5.2."""
    return await token_response(state, request)


async def token_response(state: ProviderState, request: Request) -> Response:
    """The token endpoint's answer, on this route and on identity's fast path
    (`fastpath.py`), which serves form-encoded token requests without FastAPI."""
    return await _endpoint(state, request, "/oauth2/token", None)


@oauth.post(
    "/introspect",
    summary="Token introspection (RFC 7662)",
    response_model=wire.Introspection,
    responses={
        400: wire.oauth2_error("RFC 6749 error, e.g. `invalid_request`."),
        401: wire.INVALID_CLIENT,
    },
    openapi_extra={"requestBody": wire.form_body(wire.TokenForm)},
)
async def introspect(request: Request, state: State) -> Response:
    """For confidential clients: their own tokens; service accounts: any token."""
    return await _endpoint(state, request, "/oauth2/introspect", "introspection")


@oauth.post(
    "/revoke",
    summary="Token revocation (RFC 7009)",
    response_model=None,
    responses={
        200: {"description": "Revoked (or unknown: RFC 7009 answers 200 either way)."},
        400: wire.oauth2_error("RFC 6749 error, e.g. `invalid_request`."),
        401: wire.INVALID_CLIENT,
    },
    openapi_extra={"requestBody": wire.form_body(wire.TokenForm)},
)
async def revoke(request: Request, state: State) -> Response:
    """Revoke an access token (by its `jti`) or a refresh token (its whole family)."""
    return await _endpoint(state, request, "/oauth2/revoke", "revocation")


def _bearer_error(error: str, description: str, status: int = 401) -> Response:
    header = f'Bearer error="{error}", error_description="{description}"'
    return JSONResponse(
        {"error": error, "error_description": description},
        status_code=status,
        headers={"www-authenticate": header, "cache-control": "no-store"},
    )


USERINFO: dict[str, Any] = {
    "summary": "OpenID Connect UserInfo",
    "response_model": wire.UserInfo,
    "responses": {
        401: wire.oauth2_error("RFC 6750: no token, or not valid (`WWW-Authenticate`)."),
        403: wire.oauth2_error("RFC 6750 `insufficient_scope`: the `openid` scope is needed."),
    },
    "openapi_extra": {"security": [{"bearer": []}]},
}


@oauth.get("/userinfo", operation_id="oauth2_userinfo_get", **USERINFO)
@oauth.post("/userinfo", operation_id="oauth2_userinfo_post", **USERINFO)
async def userinfo(request: Request, state: State) -> Response:
    """The signed-in user's claims, as released by the token's scopes (`openid` needed)."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return _bearer_error("invalid_request", "a bearer access token is required")
    try:
        claims = state.signer.verify_access_token(value.strip())
        state.server.revoker.registry.check(caller_from_claims(claims))
    except Unauthenticated:
        return _bearer_error("invalid_token", "the access token is not valid")
    scopes = set(str(claims.get("scope") or "").split())
    if "openid" not in scopes:
        return _bearer_error("insufficient_scope", "the openid scope is required", 403)
    async with state.database.transaction() as session:
        if await repository.access_token_revoked(session, str(claims.get("jti"))):
            return _bearer_error("invalid_token", "the access token was revoked")
        user = await repository.get_user(session, str(claims["sub"]))
    if user is None or user.status != "active":
        return _bearer_error("invalid_token", "the user no longer exists or is disabled")
    return JSONResponse(user_claims(user, scopes), headers={"cache-control": "no-store"})


LOGOUT: dict[str, Any] = {
    "summary": "RP-initiated logout",
    "response_class": HTMLResponse,
    "responses": {
        200: wire.html("The confirmation page, or the signed-out page."),
        302: {
            "description": "Redirect to the registered `post_logout_redirect_uri`.",
            "headers": {"Location": {"schema": {"type": "string"}}},
        },
    },
}


@oauth.get(
    "/logout",
    operation_id="oauth2_logout_get",
    openapi_extra={
        "parameters": [
            {"name": name, "in": "query", "required": False, "schema": {"type": "string"}}
            for name in ("id_token_hint", "post_logout_redirect_uri", "state")
        ]
    },
    **LOGOUT,
)
@oauth.post(
    "/logout",
    operation_id="oauth2_logout_post",
    openapi_extra={"requestBody": wire.form_body(wire.LogoutForm)},
    **LOGOUT,
)
async def logout(request: Request, state: State) -> Response:
    """Ends the browser's session at the provider and revokes the refresh tokens issued
    in it. With a valid `id_token_hint`, redirects to a registered
    `post_logout_redirect_uri`; without one, asks the user to confirm (CSRF-protected)."""
    params = dict(request.query_params)
    if request.method == "POST":
        params.update(dict(await _form_items(request)))
    hint = params.get("id_token_hint")
    client_id = state.signer.id_token_client(hint) if hint else None
    confirmed = request.method == "POST" and authorization.csrf_valid(
        request, params.get("csrf_token")
    )
    if client_id is None and not confirmed:
        csrf = state.csrf_token(request)
        page = pages.logout_confirm_page(action="/oauth2/logout", csrf=csrf)
        state.set_cookie(page, "paymesh_csrf", csrf, max_age=3600)
        return page
    await _end_session(state, request)
    target = params.get("post_logout_redirect_uri")
    response: Response = pages.logged_out_page()
    if target and client_id:
        async with state.database.transaction() as session:
            client = await repository.get_client(session, client_id)
        if client is not None and target in client.post_logout_redirect_uris:
            if params.get("state"):
                separator = "&" if "?" in target else "?"
                target += separator + urlencode({"state": params["state"]})
            response = RedirectResponse(target, status_code=302)
    response.delete_cookie(SESSION_COOKIE, path="/oauth2")
    return response


async def _end_session(state: ProviderState, request: Request) -> None:
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return
    async with state.database.transaction() as session:
        login = await repository.get_login_session(session, secret_hash(cookie[:256]))
        if login is not None:
            now = utcnow()
            await repository.end_login_session(session, login.id, now)
            await repository.revoke_session_tokens(session, login.id, now)
            await revocation.revoke(session, "session", login.id)
