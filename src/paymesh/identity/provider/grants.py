"""Identity's grants on Authlib: authorization code with mandatory S256 PKCE, refresh
tokens with rotation and reuse detection, client credentials, and the password grant
for flagged legacy clients; ID tokens for every grant that names a user with `openid`."""

from __future__ import annotations

from typing import Any

import structlog
from authlib.oauth2.rfc6749 import (
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Request,
    grants,
)
from authlib.oauth2.rfc7636 import CodeChallenge
from sqlalchemy.ext.asyncio import AsyncSession

from paymesh.identity import errors, repository, revocation
from paymesh.identity import models as tables
from paymesh.identity.authentication import Authenticator, Credentials
from paymesh.identity.provider.exchange import Exchange, current
from paymesh.identity.provider.models import ClientModel, CodeModel, RefreshModel, UserModel
from paymesh.identity.security import secret_hash
from paymesh.identity.service import user_claims
from paymesh.identity.tokens import TokenSigner
from paymesh.kernel.db import utcnow

log = structlog.get_logger("paymesh.identity")

USER_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]
SECRET_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]


class S256CodeChallenge(CodeChallenge):  # type: ignore[misc]
    """PKCE for every client, confidential ones too, and only with S256."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: send 'code_challenge' (S256).")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("'code_challenge_method' must be S256.")
        super().validate_code_challenge(grant, redirect_uri)

    def validate_code_verifier(self, grant: Any, result: Any) -> None:
        if not grant.request.form.get("code_verifier"):
            raise InvalidRequestError("Missing 'code_verifier'.")
        super().validate_code_verifier(grant, result)


async def load_user(exchange: Exchange, user_id: str, **context: Any) -> UserModel | None:
    session = await exchange.session()
    row = await repository.get_user(session, user_id)
    if row is None or row.status != "active":
        return None
    return UserModel(row, await repository.user_roles(session, user_id), **context)


def check_scopes(grant: Any) -> None:
    """Every requested scope must be one the client may ask for."""
    client: ClientModel = grant.request.client
    requested = (grant.request.payload.scope or "").split()
    if not client.allows_scopes(requested):
        raise InvalidScopeError()


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = USER_AUTH_METHODS

    @staticmethod
    def validate_authorization_redirect_uri(request: OAuth2Request, client: ClientModel) -> str:
        redirect_uri = request.payload.redirect_uri
        if not redirect_uri:
            raise InvalidRequestError("Missing 'redirect_uri'.")
        if not client.check_redirect_uri(redirect_uri):
            raise InvalidRequestError("The 'redirect_uri' is not registered for this client.")
        return str(redirect_uri)

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        user: UserModel = request.user
        data = request.payload.data
        now = utcnow()
        row = tables.AuthorizationCode(
            code_hash=secret_hash(code),
            client_id=request.client.get_client_id(),
            user_id=user.row.id,
            session_id=user.session_id,
            redirect_uri=request.payload.redirect_uri,
            scope=request.scope or "",
            nonce=data.get("nonce"),
            code_challenge=data["code_challenge"],
            code_challenge_method=data["code_challenge_method"],
            auth_time=user.auth_time or now,
            amr=list(user.amr),
            created_at=now,
            expires_at=now + current().values["code_ttl"],
        )
        exchange = current()

        async def insert() -> None:
            (await exchange.session()).add(row)

        exchange.run(insert())

    def query_authorization_code(self, code: str, client: ClientModel) -> CodeModel | None:
        exchange = current()
        row = exchange.run(_get_code(exchange, secret_hash(code)))
        if row is None or row.client_id != client.client_id:
            return None
        if row.used_at is not None:
            # RFC 6749 4.1.2: a code used twice was stolen; revoke what it granted.
            log.warning("authorization_code_reused", client_id=client.client_id)
            if row.family_id is not None:
                exchange.after.append(_revoke_family(row.family_id))
            return None
        if row.expires_at <= utcnow():
            return None
        return CodeModel(row)

    def delete_authorization_code(self, authorization_code: CodeModel) -> None:
        exchange = current()
        used = exchange.run(_use_code(exchange, authorization_code.row.code_hash))
        if not used:
            raise InvalidGrantError("The code was already used.")

    def authenticate_user(self, authorization_code: CodeModel) -> UserModel | None:
        row = authorization_code.row
        exchange = current()
        return exchange.run(
            load_user(
                exchange,
                row.user_id,
                session_id=row.session_id,
                auth_time=row.auth_time,
                amr=list(row.amr),
            )
        )


async def _get_code(exchange: Exchange, code_hash: str) -> tables.AuthorizationCode | None:
    return await repository.get_code(await exchange.session(), code_hash)


async def _use_code(exchange: Exchange, code_hash: str) -> bool:
    family_id = exchange.values.get("family_id")
    return await repository.use_code(await exchange.session(), code_hash, family_id, utcnow())


def _revoke_family(family_id: str) -> Any:
    async def revoke(session: AsyncSession) -> None:
        await repository.revoke_family(session, family_id, utcnow())
        await revocation.revoke(session, "family", family_id)

    return revoke


class RefreshTokenGrant(grants.RefreshTokenGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = USER_AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token: str) -> RefreshModel | None:
        exchange = current()

        async def get() -> tables.RefreshToken | None:
            return await repository.get_refresh_token(
                await exchange.session(), secret_hash(refresh_token)
            )

        row = exchange.run(get())
        if row is None:
            return None
        if row.rotated_at is not None and row.revoked_at is None:
            # Reuse of a rotated token: someone else holds a copy. End the whole family.
            log.warning("refresh_token_reused", client_id=row.client_id, family_id=row.family_id)
            exchange.after.append(_revoke_family(row.family_id))
            return None
        if row.revoked_at is not None or row.expires_at <= utcnow():
            return None
        exchange.values["family_id"] = row.family_id
        return RefreshModel(row)

    def authenticate_user(self, refresh_token: RefreshModel) -> UserModel | None:
        row = refresh_token.row
        exchange = current()
        return exchange.run(
            load_user(
                exchange,
                row.user_id,
                session_id=row.session_id,
                auth_time=row.auth_time,
                amr=list(row.amr),
            )
        )

    def revoke_old_credential(self, refresh_token: RefreshModel) -> None:
        exchange = current()

        async def rotate() -> bool:
            session = await exchange.session()
            return await repository.rotate_refresh_token(session, refresh_token.row.id, utcnow())

        if not exchange.run(rotate()):
            raise InvalidGrantError("The refresh token was already used.")


class ClientCredentialsGrant(grants.ClientCredentialsGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = SECRET_AUTH_METHODS

    def validate_requested_scope(self) -> None:
        check_scopes(self)


class PasswordGrant(grants.ResourceOwnerPasswordCredentialsGrant):  # type: ignore[misc]
    """Only for clients registered with `password_grant_allowed` (legacy apps)."""

    TOKEN_ENDPOINT_AUTH_METHODS = USER_AUTH_METHODS

    def validate_requested_scope(self) -> None:
        check_scopes(self)

    def authenticate_user(self, username: str, password: str) -> UserModel:
        exchange = current()
        credentials = Credentials(
            username=username[:150],
            password=password[:1024],
            totp=self.request.form.get("totp"),
            address=exchange.address,
        )
        user, error = exchange.run(
            _password_login(exchange, self.server.authenticator, credentials)
        )
        if error is not None:
            raise InvalidGrantError(error.title)
        assert user is not None
        return user


async def _password_login(
    exchange: Exchange, authenticator: Authenticator, credentials: Credentials
) -> tuple[UserModel | None, errors.IdentityError | None]:
    try:
        row = await authenticator.login(await exchange.session(), credentials)
    except (errors.InvalidCredentials, errors.InvalidTotp) as error:
        exchange.after.append(_failure(authenticator, credentials))
        return None, error
    except errors.IdentityError as error:
        return None, error
    roles = await repository.user_roles(await exchange.session(), row.id)
    return UserModel(row, roles, auth_time=utcnow(), amr=["pwd"]), None


def _failure(authenticator: Authenticator, credentials: Credentials) -> Any:
    async def record(session: AsyncSession) -> None:
        await authenticator.record_failure(session, credentials.username, credentials.address)

    return record


class OpenIDTokens:
    """Adds an ID token (OIDC Core 3.1.3.6, with `nonce` and `at_hash`) when a user's
    token response carries the `openid` scope."""

    def __init__(self, signer: TokenSigner) -> None:
        self.signer = signer

    def __call__(self, grant: Any) -> None:
        grant.register_hook("after_create_token_response", self.add_id_token)

    def add_id_token(self, grant: Any, response: Any) -> None:
        _status, token, _headers = response
        user: UserModel | None = grant.request.user
        scopes = set(str(token.get("scope") or "").split())
        if user is None or "openid" not in scopes:
            return
        code: CodeModel | None = grant.request.authorization_code
        token["id_token"] = self.signer.id_token(
            client_id=grant.request.client.get_client_id(),
            user_claims=user_claims(user.row, scopes),
            access_token=token.get("access_token"),
            nonce=code.get_nonce() if code else None,
            auth_time=int(user.auth_time.timestamp()) if user.auth_time else None,
            session_id=user.session_id,
            amr=list(user.amr),
        )
