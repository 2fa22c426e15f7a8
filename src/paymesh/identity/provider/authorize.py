"""The authorization endpoint with its login and consent pages.

GET validates the request with Authlib first: an unknown client or an unregistered
redirect URI gets an error page, never a redirect. Then the browser's session decides:
no session (or `prompt=login`) shows the login form; first-party clients skip consent;
others see the consent page. Every POST carries the CSRF token of its cookie.
"""

from __future__ import annotations

import datetime as dt
import hmac
from typing import Any
from urllib.parse import parse_qsl, urlencode

from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import InvalidRequestError
from fastapi import Request
from starlette.responses import Response

from paymesh.identity import errors, repository
from paymesh.identity.authentication import Credentials
from paymesh.identity.models import LoginSession
from paymesh.identity.provider import pages
from paymesh.identity.provider.exchange import Exchange
from paymesh.identity.provider.models import ClientModel, UserModel
from paymesh.identity.provider.state import CSRF_COOKIE, SESSION_COOKIE, ProviderState
from paymesh.identity.security import new_secret, secret_hash
from paymesh.kernel.db import utcnow
from paymesh.kernel.ids import new_id

PATH = "/oauth2/authorize"


async def session_user(
    state: ProviderState, exchange: Exchange, request: Request
) -> UserModel | None:
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    session = await exchange.session()
    login = await repository.get_login_session(session, secret_hash(cookie[:256]))
    if login is None or login.ended_at is not None or login.expires_at <= utcnow():
        return None
    user = await repository.get_user(session, login.user_id)
    if user is None or user.status != "active":
        return None
    roles = await repository.user_roles(session, user.id)
    return UserModel(user, roles, session_id=login.id, auth_time=login.auth_time, amr=login.amr)


async def authorize(
    state: ProviderState,
    request: Request,
    items: list[tuple[str, str]],
    *,
    user: UserModel | None = None,
    decision: str | None = None,
) -> Response:
    exchange = state.exchange(request)
    try:
        response = await _authorize(state, exchange, request, items, user, decision)
    except BaseException:
        await exchange.finish(commit=False)
        raise
    await exchange.finish(commit=response.status_code < 400)
    return response


async def _authorize(
    state: ProviderState,
    exchange: Exchange,
    request: Request,
    items: list[tuple[str, str]],
    user: UserModel | None,
    decision: str | None,
) -> Response:
    prompts = set(dict(items).get("prompt", "").split())
    if user is None and "login" not in prompts:
        user = await session_user(state, exchange, request)
    data = state.request_data(request, PATH, items)
    server = state.server

    def validate() -> Any:
        try:
            return server.get_consent_grant(request=data, end_user=user)
        except OAuth2Error as error:
            return error
        except ValueError:
            # Authlib refuses to build an error whose description would quote control
            # characters from the request (`response_type=%0C`): still a bad link, not a 500.
            return InvalidRequestError("The request holds characters it may not have.")

    grant = await exchange.call(validate)
    if isinstance(grant, OAuth2Error):
        if grant.redirect_uri:
            return server.handle_error_response(None, grant)  # type: ignore[no-any-return]
        return pages.error_page("This sign-in link is not valid", grant.get_error_description())
    client: ClientModel = grant.request.client
    query = urlencode(items)
    csrf = state.csrf_token(request)
    if user is None:
        page = pages.login_page(
            action=PATH, request_query=query, csrf=csrf, client_name=client.row.name
        )
        return _with_csrf(state, page, csrf)
    if decision is None and not client.row.first_party:
        page = pages.consent_page(
            action=PATH,
            request_query=query,
            csrf=csrf,
            client_name=client.row.name,
            scopes=(grant.request.scope or "").split(),
        )
        return _with_csrf(state, page, csrf)
    granted = user if decision in (None, "approve") else None

    def respond() -> Any:
        return server.create_authorization_response(request=data, grant_user=granted, grant=grant)

    response: Response = await exchange.call(respond)
    return response


def _with_csrf(state: ProviderState, response: Response, csrf: str) -> Response:
    state.set_cookie(response, CSRF_COOKIE, csrf, max_age=3600)
    return response


def csrf_valid(request: Request, form_token: str | None) -> bool:
    cookie = request.cookies.get(CSRF_COOKIE)
    if not (cookie and form_token):
        return False
    # As bytes: compare_digest refuses str with non-ASCII characters (a TypeError, a 500).
    return hmac.compare_digest(
        cookie.encode("utf-8", "surrogatepass"), form_token.encode("utf-8", "surrogatepass")
    )


async def submit(state: ProviderState, request: Request) -> Response:
    """POST from the login or consent page."""
    form = await request.form()
    fields = {key: value for key, value in form.multi_items() if isinstance(value, str)}
    items = parse_qsl(fields.get("authorization_request", ""), keep_blank_values=True)
    if not csrf_valid(request, fields.get("csrf_token")):
        return pages.error_page("Session expired", "Reload the sign-in page and try again.", 403)
    action = fields.get("action", "")
    if action in ("approve", "deny"):
        return await authorize(state, request, items, decision=action)
    if action != "login":
        return pages.error_page("Bad request", "Unknown action.", 400)
    return await _login(state, request, items, fields)


async def _login(
    state: ProviderState, request: Request, items: list[tuple[str, str]], fields: dict[str, str]
) -> Response:
    credentials = Credentials(
        username=fields.get("username", "")[:150],
        password=fields.get("password", "")[:1024],
        totp=fields.get("totp") or None,
        address=request.client.host if request.client else "unknown",
    )
    exchange = state.exchange(request)
    try:
        user = await _start_session(state, exchange, credentials)
    except errors.IdentityError as error:
        if isinstance(error, errors.InvalidCredentials | errors.InvalidTotp):
            authenticator = state.authenticator

            async def record(session: Any) -> None:
                await authenticator.record_failure(
                    session, credentials.username, credentials.address
                )

            exchange.after.append(record)
        await exchange.finish(commit=False)
        client_name = await _client_name(state, request, items)
        csrf = state.csrf_token(request)
        page = pages.login_page(
            action=PATH,
            request_query=urlencode(items),
            csrf=csrf,
            client_name=client_name,
            error=error.title,
            username=credentials.username,
            status=429 if isinstance(error, errors.AccountLocked) else 401,
        )
        return _with_csrf(state, page, csrf)
    except BaseException:
        await exchange.finish(commit=False)
        raise
    await exchange.finish(commit=True)
    user_model, cookie = user
    response = await authorize(state, request, items, user=user_model)
    state.set_cookie(
        response, SESSION_COOKIE, cookie, max_age=state.settings.identity.session_ttl_seconds
    )
    return response


async def _start_session(
    state: ProviderState, exchange: Exchange, credentials: Credentials
) -> tuple[UserModel, str]:
    session = await exchange.session()
    row = await state.authenticator.login(session, credentials)
    amr = ["pwd", "otp"] if await state.authenticator.has_totp(session, row.id) else ["pwd"]
    now = utcnow()
    cookie = new_secret()
    login = LoginSession(
        id=new_id("sid"),
        secret_hash=secret_hash(cookie),
        user_id=row.id,
        amr=amr,
        auth_time=now,
        expires_at=now + dt.timedelta(seconds=state.settings.identity.session_ttl_seconds),
    )
    session.add(login)
    await session.flush()
    roles = await repository.user_roles(session, row.id)
    return UserModel(row, roles, session_id=login.id, auth_time=now, amr=amr), cookie


async def _client_name(state: ProviderState, request: Request, items: list[tuple[str, str]]) -> str:
    client_id = dict(items).get("client_id", "")
    async with state.database.transaction() as session:
        row = await repository.get_client_record(session, client_id[:128])
    return row.name if row is not None else "the application"
