"""`paymesh identity ...`: operator commands for scripts and first start. They work on the
identity database directly (migrating it first), so no server needs to run."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import ValidationError

from paymesh.identity import errors, service
from paymesh.identity.keys import KeyStore
from paymesh.identity.models import kernel_tables, metadata
from paymesh.identity.revocation import TokenRevoker
from paymesh.identity.schemas import ClientCreate, RateLimitTier, UserCreate
from paymesh.identity.security import Cipher
from paymesh.kernel.config import Settings
from paymesh.kernel.db import Database
from paymesh.kernel.events import Outbox
from paymesh.kernel.migrations import migrate
from paymesh.kernel.revocation import RevocationRegistry

T = TypeVar("T")
MIGRATIONS = Path(__file__).parent / "migrations"
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _run(settings: Settings, work: Callable[[Database], Awaitable[T]]) -> T:
    async def main() -> T:
        database = Database.for_service(settings, "identity")
        # Revocations and client-change notices these commands record reach the running
        # servers as the servers' own do: through identity's outbox.
        TokenRevoker(
            Outbox("identity", kernel_tables),
            RevocationRegistry(),
            settings.identity.access_token_ttl_seconds,
        ).attach(database)
        try:
            await migrate(database, MIGRATIONS, metadata)
            return await work(database)
        finally:
            await database.dispose()

    try:
        return asyncio.run(main())
    except errors.IdentityError as error:
        typer.echo(f"error: {error.detail}", err=True)
        raise typer.Exit(1) from None


def _validated(model: Any, **fields: Any) -> Any:
    try:
        return model(**fields)
    except ValidationError as error:
        for problem in error.errors():
            where = ".".join(str(part) for part in problem["loc"])
            typer.echo(f"invalid {where}: {problem['msg']}", err=True)
        raise typer.Exit(2) from None


commands = typer.Typer(help="Identity: users, OAuth2 clients, signing keys.")
_loader: list[Callable[[], Settings]] = []


def _load_settings() -> Settings:
    return _loader[0]() if _loader else Settings()


def build(load_settings: Callable[[], Settings]) -> typer.Typer:
    """The `identity` command group, reading settings with `load_settings`."""
    _loader[:] = [load_settings]
    return commands


@commands.command("create-user")
def create_user(
    username: Annotated[str, typer.Option(help="Login name (case-insensitive).")],
    password: Annotated[str, typer.Option(help="At least 8 characters.")],
    role: Annotated[list[str], typer.Option(help="Role; repeatable.")],
    email: Annotated[str | None, typer.Option(help="Email address.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Create a user with a password and roles."""
    data = _validated(UserCreate, username=username, password=password, roles=role, email=email)

    async def work(database: Database) -> Any:
        async with database.transaction() as session:
            return await service.create_user(session, data)

    user = _run(_load_settings(), work)
    if as_json:
        typer.echo(user.model_dump_json())
    else:
        typer.echo(f"created user {user.username} ({user.id}) with roles {', '.join(user.roles)}")


@commands.command("create-client")
def create_client(
    name: Annotated[str, typer.Option(help="Display name.")],
    grant: Annotated[list[str], typer.Option(help="Grant type; repeatable.")],
    public: Annotated[
        bool, typer.Option("--public/--confidential", help="Public (PKCE, no secret).")
    ],
    redirect_uri: Annotated[list[str] | None, typer.Option(help="Repeatable.")] = None,
    scope: Annotated[list[str] | None, typer.Option(help="Allowed scope; repeatable.")] = None,
    role: Annotated[list[str] | None, typer.Option(help="Service-account role.")] = None,
    client_id: Annotated[str | None, typer.Option(help="Fixed client id.")] = None,
    first_party: Annotated[bool, typer.Option(help="Skip the consent page.")] = False,
    allow_password_grant: Annotated[bool, typer.Option(help="Legacy clients only.")] = False,
    rate_limit_tier: Annotated[
        RateLimitTier | None,
        typer.Option(help="The gateway's limit; default bronze (unlimited for service-<name>)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Register an OAuth2 client. A confidential client's secret is printed once."""
    scopes = [part for item in scope or [] for part in item.split()]
    data = _validated(
        ClientCreate,
        name=name,
        client_id=client_id,
        public=public,
        redirect_uris=redirect_uri or [],
        grant_types=grant,
        scopes=scopes,
        roles=role or [],
        first_party=first_party,
        password_grant_allowed=allow_password_grant,
        rate_limit_tier=rate_limit_tier,
    )

    async def work(database: Database) -> Any:
        async with database.transaction() as session:
            return await service.create_client(session, data)

    client = _run(_load_settings(), work)
    if as_json:
        typer.echo(client.model_dump_json())
        return
    typer.echo(f"client_id: {client.client_id}")
    typer.echo(f"rate_limit_tier: {client.rate_limit_tier}")
    if client.client_secret:
        typer.echo(f"client_secret: {client.client_secret}")
        typer.echo("(the secret is shown once; only its hash is stored)", err=True)


@commands.command("set-client-tier")
def set_client_tier(
    client_id: Annotated[str, typer.Argument(help="The client's id.")],
    tier: Annotated[RateLimitTier, typer.Argument(help="Its new rate-limit tier.")],
    as_json: JsonOption = False,
) -> None:
    """Set the rate-limit tier the API gateway applies to a client. Its access tokens
    carry the tier, so the change takes effect on the next token it gets."""

    async def work(database: Database) -> Any:
        async with database.transaction() as session:
            return await service.set_client_rate_limit_tier(session, client_id, tier)

    before, client = _run(_load_settings(), work)
    if as_json:
        typer.echo(client.model_dump_json())
    else:
        typer.echo(f"client {client.client_id}: rate-limit tier {before} -> {tier}")


@commands.command("rotate-keys")
def rotate_keys(as_json: JsonOption = False) -> None:
    """Publish a new signing key; older keys stay in JWKS until their tokens expire."""
    settings = _load_settings()

    async def work(database: Database) -> dict[str, Any]:
        keys = KeyStore(
            database, Cipher(settings.signing_secret.get_secret_value()), settings.identity
        )
        kid = await keys.rotate()
        return {"kid": kid, "published": [key["kid"] for key in keys.jwks()["keys"]]}

    result = _run(settings, work)
    if as_json:
        typer.echo(json.dumps(result))
    else:
        typer.echo(f"new signing key {result['kid']}; JWKS: {', '.join(result['published'])}")
