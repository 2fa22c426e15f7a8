"""Identity's hot path, `POST /oauth2/token` with a form body, as a plain ASGI handler.

Every service call and every client of the platform starts here, so it is the identity
endpoint hit most. Same contract as the FastAPI route in api.py (which stays declared for
the OpenAPI document and serves any other kind of body): the same `token_response`, the
same Authlib grants, the same signing keys checked for staleness first, errors in RFC
6749's format. The handler skips only FastAPI's routing, dependency and response work —
as much CPU as the grant itself. The kernel puts the request context (ids, metrics, logs)
and the decoding layer (bounded, UTF-8-checked body) in front, as on every route.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from paymesh.identity.api import token_response
from paymesh.identity.provider.state import ProviderState
from paymesh.kernel.app import FORM_MEDIA, FastRoute
from paymesh.kernel.errors import PaymeshError, render_error
from paymesh.kernel.runtime import ServiceRuntime


def fast_paths(runtime: ServiceRuntime) -> dict[tuple[str, str], FastRoute]:
    async def token(scope: Scope, receive: Receive, send: Send) -> None:
        state: ProviderState = runtime.state["provider"]
        request = Request(scope, receive)
        try:
            await state.keys.reload_if_stale()
            response = await token_response(state, request)
        except PaymeshError as error:
            response = render_error(request, error)
        await response(scope, receive, send)

    return {("POST", "/oauth2/token"): FastRoute(token, FORM_MEDIA)}
