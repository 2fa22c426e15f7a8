"""OpenID providers for tests/kernel/test_trusted_issuers.py, both on loopback over real
HTTP: oidc-provider (npm, tests/kernel/issuer) as the independent one, and `LocalIssuer`,
a discovery document and JWKS served from keys the test holds, to mint the tokens no
provider would issue (expired, not yet valid, other claim shapes, a rotation)."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from paymesh.kernel.auth import Caller
from paymesh.kernel.errors import Unauthenticated
from tests.conftest import IN_CI, free_port

PROVIDER_DIR = Path(__file__).parent / "issuer"
PROVIDER_AUDIENCE = "https://api.paymesh.example"
PROVIDER_CLIENT_ID = "reporting-app"
PROVIDER_CLIENT_SECRET = "reporting-secret-for-tests"
PROVIDER_KID = "issuer-1"

SigningKey = RSAKey | ECKey


def node_or_skip() -> str:
    """node, once `npm ci` has run in tests/kernel/issuer; a skip otherwise, a failure in CI."""
    node = shutil.which("node")
    if node is None or not (PROVIDER_DIR / "node_modules" / "oidc-provider").is_dir():
        message = "node and tests/kernel/issuer/node_modules are needed (make test runs npm ci)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return node


@contextmanager
def oidc_provider(node: str, log: Path) -> Iterator[str]:
    """oidc-provider on a free loopback port; yields its issuer once it says "listening"."""
    port = free_port()
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [node, "server.mjs", str(port), PROVIDER_CLIENT_ID, PROVIDER_CLIENT_SECRET],
            cwd=PROVIDER_DIR,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while b"listening" not in log.read_bytes():
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"oidc-provider did not start:\n{log.read_text()}")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@functools.cache
def provider_token(issuer: str, scope: str = "ledger:read") -> str:
    """A client-credentials access token from oidc-provider (one per scope: tests that
    need a fresh one change what they sign, not what the provider issued)."""
    response = httpx.post(
        f"{issuer}/token",
        data={"grant_type": "client_credentials", "scope": scope},
        auth=(PROVIDER_CLIENT_ID, PROVIDER_CLIENT_SECRET),
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def parts(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    header, payload, signature = token.split(".")
    return json.loads(unb64(header)), json.loads(unb64(payload)), signature


def compact(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}.{b64(signature)}"


def hs256_with(secret: bytes, header: dict[str, Any], claims: dict[str, Any]) -> str:
    """The "key confusion" forgery: HS256 with a public key (PEM) as the HMAC secret."""
    header = {**header, "alg": "HS256"}
    signing_input = compact(header, claims).rsplit(".", 1)[0].encode()
    return compact(header, claims, hmac.new(secret, signing_input, hashlib.sha256).digest())


def rsa_key(kid: str) -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": kid, "use": "sig"})


def ec_key(kid: str) -> ECKey:
    return ECKey.generate_key("P-256", parameters={"kid": kid, "use": "sig"})


def sign(key: SigningKey, claims: dict[str, Any], *, alg: str = "RS256", **header: Any) -> str:
    """A token signed by `key`; header fields given as None are left out."""
    fields = {"alg": alg, "typ": "at+jwt", "kid": key.kid} | header
    fields = {name: value for name, value in fields.items() if value is not None}
    return jwt.encode(fields, claims, key, algorithms=[alg])


@dataclass
class LocalIssuer:
    """A discovery document and a JWKS on loopback, from keys the test publishes."""

    published: list[SigningKey] = field(default_factory=list)
    discovery_issuer: str | None = None
    """What the discovery document says the issuer is (a mismatch is refused)."""
    discovery_requests: int = 0
    jwks_requests: int = 0
    issuer: str = ""

    def __post_init__(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/.well-known/openid-configuration":
                    owner.discovery_requests += 1
                    body: dict[str, Any] = {
                        "issuer": owner.discovery_issuer or owner.issuer,
                        "jwks_uri": f"{owner.issuer}/keys",
                    }
                elif self.path == "/keys":
                    owner.jwks_requests += 1
                    body = {"keys": [key.as_dict(private=False) for key in owner.published]}
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.issuer = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": "svc-reports",
            "aud": PROVIDER_AUDIENCE,
            "iat": now,
            "exp": now + 300,
            "jti": f"jti-{time.monotonic_ns()}",
            "client_id": "svc-reports",
            "scope": "ledger:read",
            "roles": ["auditor"],
        }
        return {**claims, **overrides}


async def accepted(verifier: Any, token: str) -> Caller:
    """What a request goes through: the async `prepare` (key fetches), then `verify`."""
    await verifier.prepare(token)
    caller: Caller = verifier.verify(token)
    return caller


async def refused(verifier: Any, token: str) -> str:
    """The detail of the 401 a token gets."""
    with pytest.raises(Unauthenticated) as refusal:
        await accepted(verifier, token)
    assert refusal.value.status == 401
    return refusal.value.detail
