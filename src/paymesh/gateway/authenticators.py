"""How the gateway learns who is calling: pluggable authenticators.

Each authenticator looks at a request's headers and either recognises its credentials
(returns the verified `Caller`, or raises `Unauthenticated` when they are bad) or does not
(returns None, and the next one is asked). Bearer JWTs are the first; the merchants
service's HMAC request signatures will be another, added to the gateway's list.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from paymesh.kernel.auth import Caller, TokenVerifier, prepare_verifier


class Authenticator(Protocol):
    async def authenticate(self, headers: Sequence[tuple[bytes, bytes]]) -> Caller | None: ...


class BearerAuthenticator:
    """`Authorization: Bearer <JWT>`, checked by the platform's verifier (every trusted
    issuer, signature, claims, and the revocations in force)."""

    def __init__(self, verifier: TokenVerifier) -> None:
        self.verifier = verifier

    async def authenticate(self, headers: Sequence[tuple[bytes, bytes]]) -> Caller | None:
        token = bearer_token(headers)
        if token is None:
            return None
        await prepare_verifier(self.verifier, token)
        return self.verifier.verify(token)


def bearer_token(headers: Sequence[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return None
    return None
