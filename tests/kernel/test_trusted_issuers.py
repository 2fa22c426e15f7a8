"""The gateway's verifier of access tokens from several OpenID issuers (kernel/oidc.py):
Paymesh identity, and external providers trusted in `settings.gateway.issuers`.

The independent provider is oidc-provider (npm, tests/kernel/issuer, installed by `make
test` when node is present; in CI it must be): its client-credentials tokens, and forgeries
of them. Tokens no provider would issue come from `LocalIssuer`, keys of our own behind a
discovery document on loopback. Both are reached over real HTTP, as in production.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI
from joserfc.jwk import KeySet, RSAKey

from paymesh.kernel.auth import CachedVerifier, Caller, DevelopmentTokens, current_caller
from paymesh.kernel.config import Settings, TrustedIssuerSettings
from paymesh.kernel.errors import ServiceUnavailable, Unauthenticated, install_error_handlers
from paymesh.kernel.oidc import (
    MAX_FORCED_FETCHES,
    JwksVerifier,
    MultiIssuerVerifier,
    decode_access_token,
)
from paymesh.kernel.revocation import Revocation, RevocationRegistry
from tests.kernel.issuers import (
    PROVIDER_AUDIENCE,
    PROVIDER_CLIENT_ID,
    PROVIDER_KID,
    LocalIssuer,
    SigningKey,
    accepted,
    compact,
    ec_key,
    hs256_with,
    node_or_skip,
    oidc_provider,
    parts,
    provider_token,
    refused,
    rsa_key,
    sign,
)

IDENTITY_ISSUER = "http://paymesh.test"
OTHER_AUDIENCE = "https://other-api.example"


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """oidc-provider's issuer URL; started once for the module."""
    node = node_or_skip()
    with oidc_provider(node, tmp_path_factory.mktemp("oidc-provider") / "server.log") as issuer:
        yield issuer


@pytest.fixture(scope="module")
def keys() -> dict[str, SigningKey]:
    return {
        "a": rsa_key("a"),
        "b": rsa_key("b"),
        "foreign-a": rsa_key("a"),  # someone else's key under the published key id
        "ec": ec_key("ec"),
        "identity": rsa_key("identity-1"),
    }


@pytest.fixture
def local(keys: dict[str, SigningKey]) -> Iterator[LocalIssuer]:
    issuer = LocalIssuer(published=[keys["a"], keys["ec"]])
    yield issuer
    issuer.close()


def trusted(issuer: str, **fields: Any) -> TrustedIssuerSettings:
    return TrustedIssuerSettings(issuer=issuer, audience=PROVIDER_AUDIENCE, **fields)


def identity_verifier(key: SigningKey) -> JwksVerifier:
    async def fetch() -> dict[str, Any]:
        return {"keys": [key.as_dict(private=False)]}

    return JwksVerifier(fetch, issuer=IDENTITY_ISSUER, audience="paymesh")


def gateway_verifier(
    *entries: TrustedIssuerSettings,
    identity: JwksVerifier | None = None,
    development: DevelopmentTokens | None = None,
) -> MultiIssuerVerifier:
    settings = Settings(
        _env_file=None, env="test", gateway={"issuers": [entry.model_dump() for entry in entries]}
    )
    return MultiIssuerVerifier.from_settings(settings, identity, development)


class TestIndependentProviderTokens:
    async def test_client_credentials_token_is_accepted_once_trusted(self, provider: str) -> None:
        verifier = gateway_verifier(trusted(provider, require_at_jwt=True, tier="gold"))

        caller = await accepted(verifier, provider_token(provider))

        assert caller.subject == PROVIDER_CLIENT_ID
        assert caller.client_id == PROVIDER_CLIENT_ID
        assert not caller.delegated
        assert caller.roles == {"auditor"}
        assert caller.scopes == {"ledger:read"}
        assert (caller.issuer, caller.tier, verifier.tier_of(caller)) == (provider, "gold", "gold")
        assert caller.expires_at is not None and caller.expires_at > time.time()

    async def test_realm_access_roles_are_mapped(self, provider: str) -> None:
        verifier = gateway_verifier(trusted(provider, roles_claim="realm_access.roles"))

        caller = await accepted(verifier, provider_token(provider, "ledger:read ledger:write"))

        assert caller.roles == {"finance", "auditor"}
        assert caller.scopes == {"ledger:read", "ledger:write"}

    async def test_refused_when_its_issuer_is_not_configured(
        self, provider: str, local: LocalIssuer, keys: dict[str, SigningKey]
    ) -> None:
        token = provider_token(provider)
        for verifier in (
            gateway_verifier(identity=identity_verifier(keys["identity"])),
            gateway_verifier(trusted(local.issuer)),
        ):
            assert "not trusted" in await refused(verifier, token)
        assert local.discovery_requests == 0, "an untrusted issuer must cost no fetch"

    async def test_wrong_audience_is_refused(self, provider: str) -> None:
        verifier = gateway_verifier(TrustedIssuerSettings(issuer=provider, audience=OTHER_AUDIENCE))

        assert "aud" in await refused(verifier, provider_token(provider))

    async def test_tampered_payload_is_refused(self, provider: str) -> None:
        verifier = gateway_verifier(trusted(provider))
        header, claims, signature = parts(provider_token(provider))
        forged = compact(header, claims | {"roles": ["admin"]}).rsplit(".", 1)[0]

        assert "BadSignature" in await refused(verifier, f"{forged}.{signature}")

    async def test_unsigned_token_is_refused(self, provider: str) -> None:
        verifier = gateway_verifier(trusted(provider))
        header, claims, _ = parts(provider_token(provider))

        for alg in ("none", "None", "NONE"):
            token = compact(header | {"alg": alg}, claims)
            assert "algorithm" in await refused(verifier, token)

    async def test_hs256_signed_with_the_public_key_is_refused(self, provider: str) -> None:
        verifier = gateway_verifier(trusted(provider))
        header, claims, _ = parts(provider_token(provider))
        async with httpx.AsyncClient() as client:
            published = (await client.get(f"{provider}/jwks")).json()
        public = RSAKey.import_key(published["keys"][0])
        assert public.kid == PROVIDER_KID

        for secret in (public.as_pem(private=False), public.as_der(private=False)):
            assert "algorithm" in await refused(verifier, hs256_with(secret, header, claims))
            # Even a caller that asks for HS256 gets asymmetric algorithms only.
            with pytest.raises(Unauthenticated):
                decode_access_token(
                    hs256_with(secret, header, claims),
                    KeySet([public]),
                    issuer=provider,
                    audience=None,
                    algorithms=["HS256", "RS256"],
                )

    async def test_foreign_key_reusing_the_published_kid_is_refused(
        self, provider: str, keys: dict[str, SigningKey]
    ) -> None:
        verifier = gateway_verifier(trusted(provider))
        _, claims, _ = parts(provider_token(provider))
        impostor = RSAKey.import_key(
            keys["foreign-a"].as_dict(private=True) | {"kid": PROVIDER_KID}
        )

        token = sign(impostor, claims | {"roles": ["admin"]})

        assert "BadSignature" in await refused(verifier, token)

    async def test_revocations_still_apply(self, provider: str) -> None:
        revocations = RevocationRegistry()
        verifier = CachedVerifier(gateway_verifier(trusted(provider)), revocations=revocations)
        token = provider_token(provider)
        assert (await accepted(verifier, token)).client_id == PROVIDER_CLIENT_ID

        now = time.time()
        revocations.apply([Revocation("client", PROVIDER_CLIENT_ID, now + 1, now + 900)])

        assert "revoked" in await refused(verifier, token)

    async def test_answers_are_problem_documents(
        self, provider: str, local: LocalIssuer, keys: dict[str, SigningKey]
    ) -> None:
        app = FastAPI()
        install_error_handlers(app)
        app.state.token_verifier = CachedVerifier(gateway_verifier(trusted(provider, tier="gold")))

        @app.get("/whoami")
        async def whoami(caller: Caller = Depends(current_caller)) -> dict[str, Any]:
            return {"client_id": caller.client_id, "issuer": caller.issuer, "tier": caller.tier}

        untrusted = sign(keys["a"], local.claims())
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://gateway.test"
        ) as client:
            ok = await client.get(
                "/whoami", headers={"authorization": f"Bearer {provider_token(provider)}"}
            )
            refusal = await client.get("/whoami", headers={"authorization": f"Bearer {untrusted}"})

        assert ok.status_code == 200, ok.text
        assert ok.json() == {"client_id": PROVIDER_CLIENT_ID, "issuer": provider, "tier": "gold"}
        assert refusal.status_code == 401
        assert refusal.headers["content-type"].startswith("application/problem+json")
        assert refusal.json()["code"] == "unauthenticated"


class TestTokenChecks:
    async def test_a_valid_token_is_accepted(
        self, local: LocalIssuer, keys: dict[str, SigningKey]
    ) -> None:
        caller = await accepted(
            gateway_verifier(trusted(local.issuer)), sign(keys["a"], local.claims())
        )

        assert (caller.subject, caller.issuer, caller.tier) == (
            "svc-reports",
            local.issuer,
            "bronze",
        )

    @pytest.mark.parametrize(
        ("claims", "expected"),
        [
            ({"iat": -900, "exp": -120}, "ExpiredToken"),
            ({"nbf": 120}, "InvalidClaim"),
            ({"iat": 120}, "InvalidClaim"),
            ({"exp": None}, "MissingClaim"),
            ({"aud": OTHER_AUDIENCE}, "InvalidClaim"),
            ({"aud": [OTHER_AUDIENCE, "third"]}, "InvalidClaim"),
        ],
        ids=["expired", "not-yet-valid", "issued-in-the-future", "no-exp", "audience", "audiences"],
    )
    async def test_claims_out_of_bounds_are_refused(
        self,
        local: LocalIssuer,
        keys: dict[str, SigningKey],
        claims: dict[str, Any],
        expected: str,
    ) -> None:
        now = int(time.time())
        relative = {
            name: now + value if name in ("iat", "exp", "nbf") and value is not None else value
            for name, value in claims.items()
        }
        token_claims = {k: v for k, v in local.claims(**relative).items() if v is not None}

        detail = await refused(
            gateway_verifier(trusted(local.issuer)), sign(keys["a"], token_claims)
        )

        assert expected in detail

    async def test_small_clock_skew_and_audience_lists_are_accepted(
        self, local: LocalIssuer, keys: dict[str, SigningKey]
    ) -> None:
        now = int(time.time())
        claims = local.claims(
            exp=now - 5, nbf=now + 5, iat=now + 5, aud=[OTHER_AUDIENCE, PROVIDER_AUDIENCE]
        )

        caller = await accepted(gateway_verifier(trusted(local.issuer)), sign(keys["a"], claims))

        assert caller.expires_at == now - 5

    async def test_any_audience_when_none_is_configured(
        self, local: LocalIssuer, keys: dict[str, SigningKey]
    ) -> None:
        verifier = gateway_verifier(TrustedIssuerSettings(issuer=local.issuer))

        await accepted(verifier, sign(keys["a"], local.claims(aud=OTHER_AUDIENCE)))

    async def test_only_the_issuers_algorithms_are_accepted(
        self, local: LocalIssuer, keys: dict[str, SigningKey]
    ) -> None:
        es256_only = gateway_verifier(trusted(local.issuer, algorithms=["ES256"]))
        rsa_only = gateway_verifier(trusted(local.issuer, algorithms=["RS256", "PS256"]))
        claims = local.claims()

        await accepted(es256_only, sign(keys["ec"], claims, alg="ES256"))
        assert "algorithm" in await refused(es256_only, sign(keys["a"], claims))
        assert "algorithm" in await refused(rsa_only, sign(keys["ec"], claims, alg="ES256"))
        await accepted(rsa_only, sign(keys["a"], claims, alg="PS256"))
        await accepted(rsa_only, sign(keys["a"], claims))

    async def test_the_kid_must_name_a_published_key_of_the_right_type(
        self, local: LocalIssuer, keys: dict[str, SigningKey]
    ) -> None:
        verifier = gateway_verifier(trusted(local.issuer))
        claims = local.claims()
        signature = sign(keys["a"], claims).rsplit(".", 1)[1]
        without_kid = parts(sign(keys["a"], claims))[0]
        without_kid.pop("kid")

        assert "no key id" in await refused(
            verifier, compact(without_kid, claims).rsplit(".", 1)[0] + f".{signature}"
        )
        assert "unknown signing key" in await refused(verifier, sign(keys["b"], claims))
        # An EC signature presented under the RSA key's id.
        mislabelled = sign(keys["ec"], claims, alg="ES256", kid="a")
        assert "invalid token" in await refused(verifier, mislabelled)

    async def test_typ_at_jwt_only_when_required(
        self, local: LocalIssuer, keys: dict[str, SigningKey]
    ) -> None:
        lenient = gateway_verifier(trusted(local.issuer))
        strict = gateway_verifier(trusted(local.issuer, require_at_jwt=True))
        claims = local.claims()
        plain = sign(keys["a"], claims, typ="JWT")

        await accepted(lenient, plain)
        await accepted(lenient, sign(keys["a"], claims, typ=None))
        assert "typ" in await refused(strict, plain)
        await accepted(strict, sign(keys["a"], claims))
        for other in ("logout+jwt", "dpop+jwt"):
            assert "typ" in await refused(lenient, sign(keys["a"], claims, typ=other))
        # Keycloak's ID tokens are plain JWTs too, marked by a claim.
        keycloak_id_token = sign(keys["a"], local.claims(typ="ID"), typ="JWT")
        assert "not an access token" in await refused(lenient, keycloak_id_token)

    async def test_issuer_must_match_exactly(
        self, local: LocalIssuer, keys: dict[str, SigningKey]
    ) -> None:
        verifier = gateway_verifier(trusted(local.issuer))

        for issuer in (local.issuer + "/", local.issuer.upper(), None):
            claims = {k: v for k, v in local.claims(iss=issuer).items() if v is not None}
            assert "issuer" in await refused(verifier, sign(keys["a"], claims))


class TestClaimMapping:
    async def test_groups_become_roles(
        self, local: LocalIssuer, keys: dict[str, SigningKey]
    ) -> None:
        verifier = gateway_verifier(trusted(local.issuer, roles_claim="groups"))
        claims = local.claims(roles=["admin"], groups=["finance", 7, "auditor"])

        caller = await accepted(verifier, sign(keys["a"], claims))

        assert caller.roles == {"finance", "auditor"}

    async def test_realm_access_roles_and_azp(
        self, local: LocalIssuer, keys: dict[str, SigningKey]
    ) -> None:
        verifier = gateway_verifier(
            trusted(local.issuer, roles_claim="realm_access.roles", client_id_claim="azp")
        )
        claims = local.claims(
            sub="9f1c-service-account",
            client_id=None,
            azp="keycloak-app",
            realm_access={"roles": ["ops", "default-roles-paymesh"]},
            resource_access={"account": {"roles": ["admin"]}},
        )

        caller = await accepted(verifier, sign(keys["a"], claims))

        assert caller.roles == {"ops", "default-roles-paymesh"}
        assert (caller.subject, caller.client_id) == ("9f1c-service-account", "keycloak-app")

    async def test_missing_or_malformed_roles_are_no_roles(
        self, local: LocalIssuer, keys: dict[str, SigningKey]
    ) -> None:
        verifier = gateway_verifier(trusted(local.issuer, roles_claim="realm_access.roles"))
        for realm_access in (None, "admin", {"roles": "not admin"}, {"roles": {"admin": 1}}):
            claims = local.claims(realm_access=realm_access)
            caller = await accepted(verifier, sign(keys["a"], claims))
            assert "admin" not in caller.roles, realm_access

    async def test_scp_list_and_client_acting_as_itself(
        self, local: LocalIssuer, keys: dict[str, SigningKey]
    ) -> None:
        verifier = gateway_verifier(trusted(local.issuer))
        claims = local.claims(scp=["ledger:read", "ledger:write"], client_id="okta-app")
        del claims["scope"], claims["sub"]

        caller = await accepted(verifier, sign(keys["a"], claims))

        assert caller.scopes == {"ledger:read", "ledger:write"}
        assert (caller.subject, caller.client_id, caller.delegated) == (
            "okta-app",
            "okta-app",
            False,
        )

    async def test_the_tier_is_the_issuers_not_the_tokens(
        self, local: LocalIssuer, keys: dict[str, SigningKey]
    ) -> None:
        verifier = gateway_verifier(trusted(local.issuer, tier="silver"))

        caller = await accepted(verifier, sign(keys["a"], local.claims(tier="unlimited")))

        assert caller.tier == "silver"


class TestSigningKeys:
    async def test_a_rotated_key_is_fetched_on_first_sight(
        self, local: LocalIssuer, keys: dict[str, SigningKey]
    ) -> None:
        verifier = gateway_verifier(trusted(local.issuer))
        await accepted(verifier, sign(keys["a"], local.claims()))
        assert (local.discovery_requests, local.jwks_requests) == (1, 1)

        local.published = [keys["b"], keys["a"]]
        caller = await accepted(verifier, sign(keys["b"], local.claims(sub="after-rotation")))

        assert caller.subject == "after-rotation"
        assert (local.discovery_requests, local.jwks_requests) == (1, 2)

    async def test_unknown_kids_force_a_bounded_number_of_fetches(
        self, local: LocalIssuer, keys: dict[str, SigningKey]
    ) -> None:
        verifier = gateway_verifier(trusted(local.issuer))
        await accepted(verifier, sign(keys["a"], local.claims()))
        made_up = sign(keys["a"], local.claims(), kid="made-up")

        for _ in range(3):
            assert "unknown signing key" in await refused(verifier, made_up)
        assert local.jwks_requests == 2, "the same unknown kid again waits for the cool-down"

        for number in range(MAX_FORCED_FETCHES + 10):
            await refused(verifier, sign(keys["a"], local.claims(), kid=f"junk-{number}"))
        # The first sight of "a" and of "made-up" were forced fetches of the same window.
        assert local.jwks_requests == MAX_FORCED_FETCHES

    async def test_discovery_naming_another_issuer_is_refused(
        self, local: LocalIssuer, keys: dict[str, SigningKey]
    ) -> None:
        local.discovery_issuer = "https://attacker.example"
        verifier = gateway_verifier(trusted(local.issuer))

        with pytest.raises(ServiceUnavailable):
            await accepted(verifier, sign(keys["a"], local.claims()))
        assert local.jwks_requests == 0

    async def test_discovery_url_is_configurable(
        self, local: LocalIssuer, keys: dict[str, SigningKey]
    ) -> None:
        realm = f"{local.issuer}/realms/paymesh"
        local.discovery_issuer = realm
        verifier = gateway_verifier(
            trusted(realm, discovery_url=f"{local.issuer}/.well-known/openid-configuration")
        )

        caller = await accepted(verifier, sign(keys["a"], local.claims(iss=realm)))

        assert caller.issuer == realm


class TestIssuerRouting:
    async def test_identity_tokens_carry_their_tier(
        self, local: LocalIssuer, keys: dict[str, SigningKey]
    ) -> None:
        verifier = gateway_verifier(
            trusted(local.issuer), identity=identity_verifier(keys["identity"])
        )
        claims = local.claims(iss=IDENTITY_ISSUER, aud="paymesh", roles=["admin"])

        gold = await accepted(verifier, sign(keys["identity"], claims | {"tier": "gold"}))
        default = await accepted(verifier, sign(keys["identity"], claims))
        external = await accepted(verifier, sign(keys["a"], local.claims()))

        assert (gold.issuer, gold.tier, gold.roles) == (IDENTITY_ISSUER, "gold", {"admin"})
        assert (default.tier, verifier.tier_of(default)) == ("bronze", "bronze")
        assert (external.issuer, external.tier) == (local.issuer, "bronze")

    async def test_development_tokens_still_route_to_their_verifier(
        self, local: LocalIssuer
    ) -> None:
        development = DevelopmentTokens("a-test-secret-of-32-bytes-or-more!", "paymesh", "paymesh")
        verifier = gateway_verifier(trusted(local.issuer), development=development)

        caller = await accepted(verifier, development.issue("usr_1", roles=["finance"]))

        assert (caller.subject, caller.issuer, caller.tier) == ("usr_1", "paymesh", "bronze")

    async def test_one_issuers_key_cannot_sign_for_another(
        self, local: LocalIssuer, keys: dict[str, SigningKey]
    ) -> None:
        verifier = gateway_verifier(
            trusted(local.issuer), identity=identity_verifier(keys["identity"])
        )
        as_identity = local.claims(iss=IDENTITY_ISSUER, aud="paymesh")
        identity_key_as_external = RSAKey.import_key(
            keys["identity"].as_dict(private=True) | {"kid": "a"}
        )

        assert "unknown signing key" in await refused(verifier, sign(keys["a"], as_identity))
        assert "BadSignature" in await refused(
            verifier, sign(identity_key_as_external, local.claims())
        )

    async def test_garbage_is_refused(self) -> None:
        verifier = gateway_verifier(identity=identity_verifier(rsa_key("x")))
        for token in ("abc", "a.b.c", compact({"alg": "RS256"}, {}), "e30.W10.", "e30.bnVsbA."):
            await refused(verifier, token)

    def test_an_issuer_configured_twice_is_an_error(self) -> None:
        with pytest.raises(ValueError, match="twice"):
            gateway_verifier(trusted("https://kc.example"), trusted("https://kc.example"))

    async def test_issuers_come_from_the_environment(
        self,
        local: LocalIssuer,
        keys: dict[str, SigningKey],
        monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path,
    ) -> None:
        monkeypatch.chdir(tmp_path)  # no stray .env
        monkeypatch.setenv(
            "PAYMESH_GATEWAY_ISSUERS",
            f'[{{"issuer": "{local.issuer}", "roles_claim": "groups", "tier": "gold"}}]',
        )
        verifier = MultiIssuerVerifier.from_settings(Settings(), identity=None)

        caller = await accepted(verifier, sign(keys["a"], local.claims(groups=["ops"])))

        assert verifier.issuers == {local.issuer}
        assert (caller.roles, caller.tier) == ({"ops"}, "gold")
