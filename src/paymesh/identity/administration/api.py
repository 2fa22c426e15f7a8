"""Admin API (role `admin`): OAuth2 clients under `/v1/identity/clients`, users under
`/v1/identity/users`. Each change is recorded as an `identity.*` event naming the admin."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Query, Request, Response

from paymesh.identity import errors as identity_errors
from paymesh.identity.administration import errors
from paymesh.identity.administration.schemas import (
    ClientRateLimitTier,
    ClientSecret,
    Page,
    UserRoles,
)
from paymesh.identity.administration.service import Admin
from paymesh.identity.schemas import Client, ClientCreate, ClientCreated, User
from paymesh.kernel.app import service_router
from paymesh.kernel.auth import Caller, require
from paymesh.kernel.errors import Forbidden, Unauthenticated, problem_responses
from paymesh.kernel.pagination import InvalidCursor
from paymesh.kernel.routing import SessionDep

clients = service_router(prefix="/v1/identity/clients", tags=["identity: admin"])
users = service_router(prefix="/v1/identity/users", tags=["identity: admin"])

AdminCaller = Annotated[Caller, Depends(require(roles=("admin",), scopes=("identity:admin",)))]
Limit = Annotated[int, Query(ge=1, le=200, description="Page size.")]
Cursor = Annotated[str | None, Query(max_length=512, description="From `next_cursor`.")]
ClientId = Annotated[str, Path(max_length=128)]
UserId = Annotated[str, Path(max_length=40)]
AUTH_ERRORS = (Unauthenticated, Forbidden)


async def admin(request: Request, session: SessionDep, caller: AdminCaller) -> Admin:
    return Admin(session, request.app.state.runtime.outbox, caller.subject)


AdminDep = Annotated[Admin, Depends(admin)]


@clients.post(
    "",
    status_code=201,
    response_model=ClientCreated,
    responses=problem_responses(
        *AUTH_ERRORS, identity_errors.ClientIdTaken, identity_errors.InvalidClientConfiguration
    ),
)
async def create_client(body: ClientCreate, service: AdminDep, response: Response) -> ClientCreated:
    """Register a confidential or public client with its redirect URIs (exact match),
    grants, scopes and (for client-credentials service accounts) roles. A confidential
    client's `client_secret` is in this response only; the database keeps its hash."""
    response.headers["cache-control"] = "no-store"
    return await service.create_client(body)


@clients.get(
    "",
    response_model=Page[Client],
    responses=problem_responses(*AUTH_ERRORS, InvalidCursor),
)
async def list_clients(service: AdminDep, limit: Limit = 50, cursor: Cursor = None) -> Page[Client]:
    """Clients, oldest first; follow `next_cursor` for the next page."""
    return await service.list_clients(limit, cursor)


@clients.get(
    "/{client_id}",
    response_model=Client,
    responses=problem_responses(*AUTH_ERRORS, identity_errors.ClientNotFound),
)
async def get_client(client_id: ClientId, service: AdminDep) -> Client:
    """One client (never its secret)."""
    return await service.get_client(client_id)


@clients.post(
    "/{client_id}/disable",
    response_model=Client,
    responses=problem_responses(*AUTH_ERRORS, identity_errors.ClientNotFound),
)
async def disable_client(client_id: ClientId, service: AdminDep) -> Client:
    """The client gets no more tokens and its refresh tokens are revoked."""
    return await service.set_client_status(client_id, "disabled")


@clients.post(
    "/{client_id}/enable",
    response_model=Client,
    responses=problem_responses(*AUTH_ERRORS, identity_errors.ClientNotFound),
)
async def enable_client(client_id: ClientId, service: AdminDep) -> Client:
    """Let a disabled client get tokens again."""
    return await service.set_client_status(client_id, "active")


@clients.put(
    "/{client_id}/rate-limit-tier",
    response_model=Client,
    responses=problem_responses(*AUTH_ERRORS, identity_errors.ClientNotFound),
)
async def set_client_rate_limit_tier(
    client_id: ClientId, body: ClientRateLimitTier, service: AdminDep
) -> Client:
    """Set the tier the API gateway rate-limits the client by: `unlimited`, `gold`,
    `silver` or `bronze`. Access tokens carry it as their `tier` claim, so the change takes
    effect on the next token the client gets; tokens already issued keep their tier until
    they expire. An unknown tier is a 422 and changes nothing."""
    return await service.set_client_rate_limit_tier(client_id, body.rate_limit_tier)


@clients.delete(
    "/{client_id}",
    status_code=204,
    responses=problem_responses(*AUTH_ERRORS, identity_errors.ClientNotFound),
)
async def delete_client(client_id: ClientId, service: AdminDep) -> Response:
    """Remove the client; its refresh tokens are revoked."""
    await service.delete_client(client_id)
    return Response(status_code=204)


@clients.post(
    "/{client_id}/secret",
    response_model=ClientSecret,
    responses=problem_responses(
        *AUTH_ERRORS, identity_errors.ClientNotFound, errors.PublicClientHasNoSecret
    ),
)
async def rotate_client_secret(
    client_id: ClientId, service: AdminDep, response: Response
) -> ClientSecret:
    """A new secret for a confidential client, shown once; the old one stops working."""
    response.headers["cache-control"] = "no-store"
    return await service.rotate_client_secret(client_id)


@users.get(
    "",
    response_model=Page[User],
    responses=problem_responses(*AUTH_ERRORS, InvalidCursor),
)
async def list_users(service: AdminDep, limit: Limit = 50, cursor: Cursor = None) -> Page[User]:
    """Users, oldest first; follow `next_cursor` for the next page."""
    return await service.list_users(limit, cursor)


@users.get(
    "/{user_id}",
    response_model=User,
    responses=problem_responses(*AUTH_ERRORS, identity_errors.UserNotFound),
)
async def get_user(user_id: UserId, service: AdminDep) -> User:
    """One user with their roles."""
    return await service.get_user(user_id)


@users.post(
    "/{user_id}/disable",
    response_model=User,
    responses=problem_responses(
        *AUTH_ERRORS, identity_errors.UserNotFound, errors.AdminCannotLockThemselvesOut
    ),
)
async def disable_user(user_id: UserId, service: AdminDep) -> User:
    """The user can no longer log in; their refresh tokens are revoked. Not yourself."""
    return await service.set_user_status(user_id, "disabled")


@users.post(
    "/{user_id}/enable",
    response_model=User,
    responses=problem_responses(*AUTH_ERRORS, identity_errors.UserNotFound),
)
async def enable_user(user_id: UserId, service: AdminDep) -> User:
    """Let a disabled user log in again."""
    return await service.set_user_status(user_id, "active")


@users.put(
    "/{user_id}/roles",
    response_model=User,
    responses=problem_responses(
        *AUTH_ERRORS, identity_errors.UserNotFound, errors.AdminCannotLockThemselvesOut
    ),
)
async def set_user_roles(user_id: UserId, body: UserRoles, service: AdminDep) -> User:
    """Replace the user's roles. A change revokes the user's tokens issued before it (they
    carry the old roles): the user signs in again to get the new ones. An admin cannot drop
    their own admin role (someone must be left to manage access)."""
    return await service.set_user_roles(user_id, list(body.roles))
