"""Development tokens (HS256 with the signing secret) work only where they cannot be a
backdoor: PAYMESH_ENV=development (or test) chosen explicitly, or a loopback listener; a
platform reachable from other machines with the public default secret does not start."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from paymesh.cli import app
from paymesh.kernel.config import Settings, get_settings
from paymesh.platform import Platform


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


class TestDevelopmentTokensAllowed:
    @pytest.mark.parametrize(
        ("values", "allowed"),
        [
            ({}, True),  # default env, loopback
            ({"host": "localhost"}, True),
            ({"host": "::1"}, True),
            ({"host": "0.0.0.0", "signing_secret": "s" * 40}, False),
            ({"host": "10.1.2.3", "signing_secret": "s" * 40}, False),
            ({"host": "0.0.0.0", "env": "development", "signing_secret": "s" * 40}, True),
            ({"env": "production", "signing_secret": "s" * 40}, False),
        ],
    )
    def test_rule(self, values: dict[str, object], allowed: bool) -> None:
        assert settings(**values).development_tokens_allowed is allowed

    def test_platform_on_another_interface_accepts_no_development_token(
        self, tmp_path: Path
    ) -> None:
        exposed = settings(host="0.0.0.0", signing_secret="s" * 40, data_dir=tmp_path)
        platform = Platform(exposed, ["ledger"], run_workers=False)
        verifier = platform.runtimes["ledger"].token_verifier
        token = platform.tokens.issue("usr_admin", roles=["admin"])
        with pytest.raises(Exception, match="development tokens are not accepted"):
            verifier.verify(token)


class TestDefaultSecretExposure:
    def test_platform_reachable_from_elsewhere_with_the_default_secret_refuses_to_start(
        self, tmp_path: Path
    ) -> None:
        exposed = settings(host="0.0.0.0", data_dir=tmp_path)
        with pytest.raises(ValueError, match="development default"):
            Platform(exposed, ["ledger"], run_workers=False)

    def test_loopback_with_the_default_secret_starts(self, tmp_path: Path) -> None:
        Platform(settings(data_dir=tmp_path), ["ledger"], run_workers=False)


class TestTokenCommand:
    @pytest.fixture(autouse=True)
    def fresh_settings(self) -> object:
        get_settings.cache_clear()
        yield
        get_settings.cache_clear()

    def test_refused_off_loopback_without_an_explicit_environment(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv("PAYMESH_ENV", raising=False)
        monkeypatch.setenv("PAYMESH_HOST", "0.0.0.0")
        monkeypatch.setenv("PAYMESH_SIGNING_SECRET", "s" * 40)
        result = CliRunner().invoke(app, ["token", "--role", "finance"])
        assert result.exit_code != 0
        assert "development tokens are refused" in result.output

    def test_default_scopes_are_those_the_roles_grant(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        monkeypatch.delenv("PAYMESH_ENV", raising=False)
        monkeypatch.delenv("PAYMESH_HOST", raising=False)
        monkeypatch.setenv("PAYMESH_DATA_DIR", str(tmp_path))
        result = CliRunner().invoke(app, ["token", "--role", "finance"])
        assert result.exit_code == 0, result.output
        caller = Platform(settings(data_dir=tmp_path), ["ledger"], run_workers=False).tokens
        claims = caller.verify(result.output.strip())
        assert claims.roles == {"finance"}
        assert claims.scopes == {"ledger", "ledger:read", "ledger:write"}
