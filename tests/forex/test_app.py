"""The provider is chosen by configuration (PAYMESH_FOREX_*)."""

from __future__ import annotations

import pytest

from paymesh.forex.app import build_provider
from paymesh.forex.oanda import OandaRates
from paymesh.forex.providers import EcbReferenceRates, StaticRates
from paymesh.kernel.config import Settings


class TestBuildProvider:
    def test_ecb_by_default(self) -> None:
        assert isinstance(build_provider(Settings(_env_file=None).forex), EcbReferenceRates)

    def test_from_the_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("PAYMESH_FOREX_PROVIDER", "oanda")
        monkeypatch.setenv("PAYMESH_FOREX_OANDA_BASE_URL", "http://127.0.0.1:9")
        monkeypatch.setenv("PAYMESH_FOREX_OANDA_API_KEY", "k")
        monkeypatch.setenv("PAYMESH_FOREX_MARKUP_BPS", "25")

        settings = Settings(_env_file=None).forex

        assert isinstance(build_provider(settings), OandaRates)
        assert settings.markup_bps == 25

    def test_static_table(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("PAYMESH_FOREX_PROVIDER", "static")
        monkeypatch.setenv("PAYMESH_FOREX_STATIC_RATES", '{"USD": "1.1", "XYZ": "2"}')

        provider = build_provider(Settings(_env_file=None).forex)

        assert isinstance(provider, StaticRates)
        assert set(provider.per_eur) == {"USD"}  # unknown codes are dropped

    def test_oanda_needs_a_key(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("PAYMESH_FOREX_PROVIDER", "oanda")

        with pytest.raises(ValueError, match="OANDA_API_KEY"):
            build_provider(Settings(_env_file=None).forex)
