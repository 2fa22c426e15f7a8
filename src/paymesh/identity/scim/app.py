"""Mounts scim2-server's ASGI application at `/scim2`, over `IdentityScimStorage`, for
callers with an `admin` bearer token (identity's tokens, or development tokens outside
production). Refusals are SCIM error documents (401 with WWW-Authenticate, 403)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter
from scim2_models import (
    ForbiddenException,
    ScimProvider,
    UnauthorizedException,
)
from scim2_server.applications.asgi import ASGIApplication, Receive, Scope, Send
from scim2_server.requests import ScimRequest
from scim2_server.responses import ScimResponse
from starlette.convertors import PathConvertor, register_url_convertor

from paymesh.identity.scim import openapi
from paymesh.identity.scim.schema import provider
from paymesh.identity.scim.storage import ACTOR, IdentityScimStorage
from paymesh.kernel.auth import TokenVerifier, prepare_verifier
from paymesh.kernel.errors import PaymeshError
from paymesh.kernel.openapi import DocumentedRoute
from paymesh.kernel.runtime import ServiceRuntime

MOUNT = "/scim2"
URL_CHARACTERS = ":/?#[]@!$&'()*+,;=-._~%"
"""RFC 3986's reserved and unreserved characters (and `%`): kept as they are."""


class ScimApplication(ASGIApplication):
    """scim2-server's ASGI app at `/scim2` (no `/v2`), checking admin bearer tokens."""

    def __init__(
        self, storage: IdentityScimStorage, scim: ScimProvider, verifier: TokenVerifier
    ) -> None:
        super().__init__(storage, scim)
        self.verifier = verifier

    @staticmethod
    def get_base_url(scope: Scope) -> str:
        headers = dict(scope["headers"])
        host = headers.get(b"host", b"").decode() or "localhost"
        return f"{scope['scheme']}://{host}{MOUNT}"

    @staticmethod
    def get_path(scope: Scope) -> str:
        path: str = scope["path"]
        return path.removeprefix(MOUNT) or "/"

    def finalize_response(self, request: ScimRequest, response: ScimResponse) -> ScimResponse:
        """The `Location` scim2-server adds is the request's URL, decoded; encoded again, so
        that `/scim2/Users/x%0A` is a 404 and not a header uvicorn must refuse (a dropped
        connection)."""
        response.headers.setdefault("Location", quote(request.url, safe=URL_CHARACTERS))
        return super().finalize_response(request, response)

    async def dispatch_request(self, request: ScimRequest) -> ScimResponse:
        subject = await self.authenticate(request) if self.needs_auth(request) else None
        reset = ACTOR.set(subject)
        try:
            request.subject = subject
            return await self.handler.handle(request)
        finally:
            ACTOR.reset(reset)

    async def authenticate(self, request: ScimRequest) -> str:
        """The admin's subject, or a SCIM 401 (no or bad token) / 403 (not an admin)."""
        return await self.admin_subject(request.header("Authorization") or "")

    async def admin_subject(self, authorization: str) -> str:
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise UnauthorizedException(detail="a bearer access token is required")
        try:
            await prepare_verifier(self.verifier, token)
            caller = self.verifier.verify(token)
        except PaymeshError:
            raise UnauthorizedException(detail="the access token is not valid") from None
        if not caller.has_any(roles=("admin",), scopes=("identity:admin",)):
            raise ForbiddenException(
                detail="SCIM needs the admin role (a user's token: with identity:admin scope)"
            )
        return caller.subject


class ScimEndpoint:
    """The ASGI endpoint of the `/scim2/...` route: builds the SCIM app once per runtime."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app: Any = scope["app"]
        runtime: ServiceRuntime = app.state.runtime
        scim = runtime.state.get("scim")
        if scim is None:
            described = provider()
            storage = IdentityScimStorage(runtime.database, runtime.outbox, described)
            scim = ScimApplication(storage, described, app.state.token_verifier)
            runtime.state["scim"] = scim
        if scope.get("method") in BODY_METHODS and not await _is_admin(scim, scope):
            # Refused anyway (scim2-server answers 401/403 itself): read none of the body
            # an unauthorized caller sent.
            receive = _no_body
        await scim(scope, receive, send)


BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


async def _is_admin(scim: ScimApplication, scope: Scope) -> bool:
    headers = dict(scope.get("headers") or ())
    authorization = headers.get(b"authorization", b"").decode("latin-1")
    try:
        await scim.admin_subject(authorization)
    except (UnauthorizedException, ForbiddenException):
        return False
    return True


async def _no_body() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


class AnyPathConvertor(PathConvertor):
    """Starlette's `path` stops at a newline (`.*`); a decoded `%0A` in a SCIM id must
    still reach SCIM (and get its 404), not fall out to the platform's fallback."""

    regex = "(?s:.*)"


register_url_convertor("scim_path", AnyPathConvertor())

router = APIRouter()
router.routes.append(
    DocumentedRoute(
        f"{MOUNT}/{{path:scim_path}}",
        endpoint=ScimEndpoint(),
        paths=openapi.paths(),
        schemas=openapi.SCHEMAS,
    )
)
