"""Every service route runs inside a unit of work, and POSTs honour Idempotency-Key.

`ServiceRoute` wraps FastAPI's handler: the database session (opened on first use through
`SessionDep`) commits only when the endpoint returns a non-error response, before the
response is sent; errors roll it back. With an `Idempotency-Key` header, the stored
response is written in that same transaction.

A route that needs a caller (it depends on `current_caller` or `require(...)`) verifies the
bearer token before anything reads the body, so an anonymous client cannot make the
server read, buffer or parse a body it will refuse anyway. The body itself is bounded and
checked by the decoding layer (`kernel/decoding.py`) when it is read.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from fastapi import Depends, Request
from fastapi import routing as fastapi_routing
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from paymesh.kernel import auth
from paymesh.kernel.auth import Caller, current_caller, verified_caller
from paymesh.kernel.errors import PaymeshError, Unauthenticated, render_error
from paymesh.kernel.idempotency import (
    REPLAYED_HEADERS,
    StoredResponse,
    check_key,
    request_fingerprint,
)

if TYPE_CHECKING:
    from paymesh.kernel.runtime import ServiceRuntime


READ_METHODS = frozenset({"GET", "HEAD"})


class UnitOfWork:
    """The request's transaction. GET and HEAD read: on SQLite their sessions never queue
    behind a writer (and cannot write); every other method may write."""

    def __init__(
        self, runtime: ServiceRuntime, *, read_only: bool = False, actor: Caller | None = None
    ) -> None:
        self.runtime = runtime
        self.read_only = read_only
        self.actor = actor
        self._session: AsyncSession | None = None

    async def session(self) -> AsyncSession:
        # The transaction begins with the session's first statement (autobegin): each
        # explicit step on an AsyncSession is a greenlet round trip.
        if self._session is None:
            database = self.runtime.database
            factory = database.read_sessions if self.read_only else database.sessions
            self._session = factory()
            if self.actor is not None:
                # Events written in this transaction name who acted (kernel/events.py).
                self._session.info["actor"] = self.actor
        return self._session

    @property
    def started(self) -> bool:
        return self._session is not None

    async def commit(self) -> None:
        session = self._session
        if session is None or self.read_only:
            # A read has nothing to commit: `close` ends its transaction (a rollback,
            # which costs a read what a commit would).
            return
        await session.commit()
        self.runtime.database.after_commit(session)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()  # rolls back anything not committed
            self._session = None


async def request_session(request: Request) -> AsyncSession:
    """The request's transaction; committed by the route after the endpoint returns."""
    unit: UnitOfWork = request.state.unit_of_work
    return await unit.session()


SessionDep = Annotated[AsyncSession, Depends(request_session)]

T = TypeVar("T")


def state_dependency(name: str, kind: type[T]) -> Callable[[Request], Coroutine[Any, Any, T]]:
    """A FastAPI dependency giving the object the service's setup keeps in
    `runtime.state[name]`: `Annotated[Cases, Depends(state_dependency("cases", Cases))]`."""

    async def dependency(request: Request) -> T:
        found = request.app.state.runtime.state[name]
        if not isinstance(found, kind):
            raise TypeError(f"runtime.state[{name!r}] is not a {kind.__name__}")
        return found

    return dependency


Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class ServiceRoute(APIRoute):
    def get_route_handler(self) -> Handler:
        endpoint = self._request_handler()
        needs_caller = requires_caller(self.dependant)
        idempotent_path = honours_idempotency_key(self.path) and not getattr(
            self.endpoint, OWN_IDEMPOTENCY, False
        )

        async def handler(request: Request) -> Response:
            if needs_caller:
                await _authenticated(request)
            # Read here, not inside FastAPI, so the decoding layer's refusals (413, 400)
            # reach the error handler as themselves rather than as FastAPI's generic 400.
            await request.body()
            key = request.headers.get("idempotency-key")
            if key is not None and request.method == "POST" and idempotent_path:
                return await _idempotent(request, endpoint, check_key(key))
            return await _in_unit_of_work(request, endpoint)

        return handler

    def _request_handler(self) -> Handler:
        """FastAPI's handler for this route; for a route whose dependencies all take just
        the request (the kernel's `require(...)`, `SessionDep`, `state_dependency`, a
        service's getter), one that awaits them itself, in their declared order, and
        leaves FastAPI its parameters, body and response. FastAPI re-derives every
        dependency's facts (cache key, scopes, generator or coroutine) on each request: a
        sixth of an authenticated one-row read's CPU. A route with any other kind of
        dependency (sub-dependencies, parameters, `yield`, a class) keeps FastAPI's solver
        whole, as do all routes while the app has dependency overrides."""
        plain = super().get_route_handler()
        route: Any = self
        context = fastapi_routing._effective_route_context_var.get()
        if context is not None and context.original_route is self:
            route = context  # this route as included in a router, with its dependencies
        dependant: Dependant = route.dependant
        dependencies = dependant.dependencies
        if not dependencies or not all(_takes_only_the_request(d) for d in dependencies):
            return plain
        calls: list[tuple[str, Callable[[Request], Awaitable[Any]]]] = [
            (d.name, d.call) for d in dependencies if d.name is not None and d.call is not None
        ]
        endpoint = dependant.call
        assert endpoint is not None
        keeps_request = dependant.request_param_name is not None
        request_name = dependant.request_param_name or _REQUEST_PARAMETER

        async def call_endpoint(**values: Any) -> Any:
            request = values[request_name] if keeps_request else values.pop(request_name)
            return await endpoint(**values, **request.scope[_SOLVED])

        flat_dependant = dataclasses.replace(
            dependant, dependencies=[], call=call_endpoint, request_param_name=request_name
        )
        token = fastapi_routing._effective_route_context_var.set(
            _WithDependant(self, route, flat_dependant)
        )
        try:
            flat = super().get_route_handler()
        finally:
            fastapi_routing._effective_route_context_var.reset(token)
        overrides = route.dependency_overrides_provider

        async def handler(request: Request) -> Response:
            if overrides is not None and overrides.dependency_overrides:
                return await plain(request)
            solved: dict[str, Any] = {}
            made: dict[Any, Any] = {}
            for name, call in calls:
                if call not in made:
                    made[call] = await call(request)
                solved[name] = made[call]
            request.scope[_SOLVED] = solved
            return await flat(request)

        return handler


class _WithDependant:
    """`route` as FastAPI's handler builder reads it, with another dependant."""

    def __init__(self, original: APIRoute, route: Any, dependant: Dependant) -> None:
        self.original_route = original
        self.dependant = dependant
        self._route = route

    def __getattr__(self, name: str) -> Any:
        return getattr(self._route, name)


_SOLVED = "paymesh.dependencies"
_REQUEST_PARAMETER = "paymesh_request"


def _takes_only_the_request(dependant: Dependant) -> bool:
    """Whether FastAPI would do nothing for this dependency but await it with the request."""
    return (
        dependant.name is not None
        and inspect.iscoroutinefunction(dependant.call)
        and not dependant.dependencies
        and not dependant.path_params
        and not dependant.query_params
        and not dependant.header_params
        and not dependant.cookie_params
        and not dependant.body_params
        and dependant.request_param_name is not None
        and dependant.websocket_param_name is None
        and dependant.http_connection_param_name is None
        and dependant.response_param_name is None
        and dependant.background_tasks_param_name is None
        and dependant.security_scopes_param_name is None
        and not dependant.own_oauth_scopes
        and dependant.use_cache
        and len(inspect.signature(dependant.call).parameters) == 1
    )


OWN_IDEMPOTENCY = "__paymesh_own_idempotency__"
E = TypeVar("E", bound=Callable[..., Any])


def own_idempotency(endpoint: E) -> E:
    """Mark a route that applies `Idempotency-Key` itself. For work that spans several
    transactions and calls to other services (a payment): the kernel's replay store claims
    the key in the request's transaction and holds it, and its connection, to the end —
    a connection per request in flight, which a burst of such requests runs out of."""
    setattr(endpoint, OWN_IDEMPOTENCY, True)
    return endpoint


def honours_idempotency_key(path: str) -> bool:
    """The platform's API (`/v1/...`) replays POSTs by Idempotency-Key. The OAuth2 and
    OpenID endpoints follow their RFCs, which have no such header: a token response must
    never be stored and handed out again."""
    return path.startswith("/v1/")


def requires_caller(dependant: Dependant) -> bool:
    """Whether the route, through any of its dependencies, needs an authenticated caller."""
    pending = [dependant]
    while pending:
        current = pending.pop()
        if _authenticates(current.call):
            return True
        pending.extend(current.dependencies)
    return False


def _authenticates(call: object) -> bool:
    if call is current_caller or call is verified_caller:
        return True
    # The dependencies `auth.require(...)` builds.
    return getattr(call, "__module__", None) == auth.__name__ and getattr(
        call, "__qualname__", ""
    ).startswith("require.")


async def _authenticated(request: Request) -> None:
    if await verified_caller(request) is None:
        raise Unauthenticated()


async def _in_unit_of_work(request: Request, endpoint: Handler) -> Response:
    runtime: ServiceRuntime = request.app.state.runtime
    unit = UnitOfWork(
        runtime, read_only=request.method in READ_METHODS, actor=_known_caller(request)
    )
    request.state.unit_of_work = unit
    try:
        response = await endpoint(request)
        if response.status_code < 400:
            await unit.commit()
        return response
    finally:
        await unit.close()


async def _idempotent(request: Request, endpoint: Handler, key: str) -> Response:
    runtime: ServiceRuntime = request.app.state.runtime
    store = runtime.idempotency
    caller = await verified_caller(request)
    scope = caller.idempotency_scope if caller else "anonymous"
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    fingerprint = request_fingerprint(request.method, target, await request.body())
    with store.running(scope, key):
        unit = UnitOfWork(runtime, actor=caller)
        request.state.unit_of_work = unit
        try:
            # One writer transaction: the work and its stored response commit together.
            stored = await store.claim(unit.session, scope, key, fingerprint)
            if stored is not None:
                return replay_response(stored)
            try:
                response = await endpoint(request)
            except PaymeshError as error:
                if error.status >= 500:
                    raise
                response = render_error(request, error)
            if response.status_code >= 500:
                return response  # not an outcome: nothing stored, a retry runs again
            outcome = stored_response(response)
            if response.status_code < 400:
                await store.complete(await unit.session(), scope, key, fingerprint, outcome)
                await unit.commit()
            else:
                await unit.close()  # the refused request's own writes roll back
                await store.complete_refusal(scope, key, fingerprint, outcome)
            return response
        finally:
            await unit.close()


def _known_caller(request: Request) -> Caller | None:
    """The caller already verified for this request (routes that need one are verified
    before the unit of work starts)."""
    caller = getattr(request.state, "caller", None)
    return caller if isinstance(caller, Caller) else None


def stored_response(response: Response) -> StoredResponse:
    """What a request's Idempotency-Key keeps of its answer: status, body and the headers
    a replay repeats."""
    headers = {
        name: response.headers[name] for name in REPLAYED_HEADERS if name in response.headers
    }
    return StoredResponse(status=response.status_code, headers=headers, body=bytes(response.body))


def replay_response(stored: StoredResponse) -> Response:
    """A stored answer, replayed: `Idempotent-Replayed: true`."""
    headers: dict[str, Any] = dict(stored.headers)
    headers["Idempotent-Replayed"] = "true"
    media_type = headers.pop("content-type", None)
    return Response(
        content=stored.body, status_code=stored.status, headers=headers, media_type=media_type
    )
