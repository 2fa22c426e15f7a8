"""Settings from PAYMESH_ variables, and where each service's data lives."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import text

from paymesh.kernel.config import DEVELOPMENT_SIGNING_SECRET, Settings
from paymesh.kernel.db import resolve_database_url
from paymesh.platform import Platform
from tests.conftest import BACKEND
from tests.kernel.support import runtime_of


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("PAYMESH_") and not name.startswith("PAYMESH_TEST_"):
            monkeypatch.delenv(name)
    yield


def load() -> Settings:
    return Settings(_env_file=None)  # type: ignore[call-arg]


class TestServiceDatabaseUrl:
    def test_a_service_variable_overrides_the_shared_url_for_that_service_only(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("PAYMESH_DATABASE_URL", "postgresql://db.internal/paymesh")
        monkeypatch.setenv("PAYMESH_LEDGER_DATABASE_URL", "postgresql://ledger-db.internal/ledger")

        settings = load()
        ledger_url, ledger_schema = resolve_database_url(settings, "ledger")
        wallets_url, wallets_schema = resolve_database_url(settings, "wallets")

        assert settings.ledger.database_url == "postgresql://ledger-db.internal/ledger"
        assert (ledger_url.host, ledger_url.database) == ("ledger-db.internal", "ledger")
        assert (wallets_url.host, wallets_url.database) == ("db.internal", "paymesh")
        assert (ledger_schema, wallets_schema) == ("ledger", "wallets")

    def test_nested_ledger_settings_come_from_the_environment(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("PAYMESH_LEDGER_BATCH_MAX_TRANSFERS", "123")

        assert load().ledger.batch_max_transfers == 123

    def test_event_settings_and_plain_names_with_underscores_are_read(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("PAYMESH_EVENTS_MAX_ATTEMPTS", "9")
        monkeypatch.setenv("PAYMESH_LOG_LEVEL", "DEBUG")
        monkeypatch.setenv("PAYMESH_HTTP_TIMEOUT_SECONDS", "2.5")
        monkeypatch.setenv("PAYMESH_HTTP_IN_PROGRESS_WAIT_SECONDS", "0.5")

        settings = load()

        assert settings.events.max_attempts == 9
        assert settings.log_level == "DEBUG"
        assert settings.http_timeout_seconds == 2.5
        assert settings.http_in_progress_wait_seconds == 0.5


class TestSqliteDatabases:
    def test_by_default_each_service_gets_its_own_file_under_the_data_dir(
        self, tmp_path: Path
    ) -> None:
        settings = Settings(_env_file=None, data_dir=tmp_path)  # type: ignore[call-arg]

        ledger, ledger_schema = resolve_database_url(settings, "ledger")
        wallets, _ = resolve_database_url(settings, "wallets")

        assert ledger.drivername == "sqlite+aiosqlite"
        assert Path(str(ledger.database)) == tmp_path / "ledger.db"
        assert Path(str(wallets.database)) == tmp_path / "wallets.db"
        assert ledger_schema is None

    def test_a_shared_sqlite_url_becomes_one_file_per_service(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("PAYMESH_DATABASE_URL", "sqlite:///data/paymesh.db")

        ledger, _ = resolve_database_url(load(), "ledger")
        wallets, _ = resolve_database_url(load(), "wallets")

        assert ledger.database == "data/paymesh-ledger.db"
        assert wallets.database == "data/paymesh-wallets.db"
        assert ledger.drivername == "sqlite+aiosqlite"

    def test_a_service_sqlite_url_is_used_as_given(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("PAYMESH_DATABASE_URL", "sqlite:///data/paymesh.db")
        monkeypatch.setenv("PAYMESH_LEDGER_DATABASE_URL", "sqlite:///fast/ledger.sqlite")

        ledger, _ = resolve_database_url(load(), "ledger")

        assert ledger.database == "fast/ledger.sqlite"

    def test_an_in_memory_sqlite_url_is_refused(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("PAYMESH_DATABASE_URL", "sqlite:///:memory:")

        with pytest.raises(ValueError, match="file"):
            resolve_database_url(load(), "ledger")

    def test_an_unsupported_database_is_refused(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("PAYMESH_DATABASE_URL", "mysql://db/paymesh")

        with pytest.raises(ValueError, match="unsupported"):
            resolve_database_url(load(), "ledger")


class TestPostgresDatabases:
    def test_each_service_gets_a_schema_named_after_it(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("PAYMESH_DATABASE_URL", "postgresql://postgres@db:5432/paymesh")

        url, schema = resolve_database_url(load(), "ledger")

        assert url.drivername == "postgresql+asyncpg"
        assert url.database == "paymesh"
        assert schema == "ledger"


class TestServiceStorage:
    async def test_the_running_service_lives_where_the_settings_say(
        self, idle_sample: Platform
    ) -> None:
        database = runtime_of(idle_sample).database
        async with database.transaction() as session:
            if BACKEND == "postgresql":
                schema = await session.scalar(text("SELECT current_schema()"))
                tables = set(
                    (
                        await session.execute(
                            text(
                                "SELECT table_name FROM information_schema.tables "
                                "WHERE table_schema = 'sample'"
                            )
                        )
                    ).scalars()
                )
                assert schema == "sample"
                assert {"note", "effect", "outbox_event", "idempotency_record"} <= tables
            else:
                assert database.url.database == str(idle_sample.settings.data_dir / "sample.db")
                assert os.path.isfile(str(database.url.database))  # noqa: ASYNC240 - a test


class TestProductionSecret:
    def test_production_with_the_default_signing_secret_raises(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("PAYMESH_ENV", "production")

        with pytest.raises(ValidationError, match="PAYMESH_SIGNING_SECRET"):
            load()

    def test_production_with_an_own_secret_starts(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("PAYMESH_ENV", "production")
        monkeypatch.setenv("PAYMESH_SIGNING_SECRET", "a-long-secret-of-our-own-0123456789")

        settings = load()

        assert settings.env == "production"
        assert settings.signing_secret.get_secret_value() != DEVELOPMENT_SIGNING_SECRET

    def test_development_keeps_the_default_secret(self) -> None:
        settings = load()

        assert settings.env == "development"
        assert settings.signing_secret.get_secret_value() == DEVELOPMENT_SIGNING_SECRET

    def test_the_secret_is_not_shown_in_the_settings_repr(self) -> None:
        assert DEVELOPMENT_SIGNING_SECRET not in repr(load())


class TestIdempotencyRetention:
    def test_a_retention_under_24_hours_is_refused(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("PAYMESH_IDEMPOTENCY_TTL_SECONDS", "3600")

        with pytest.raises(ValidationError):
            load()


class TestFaultInjection:
    @pytest.mark.parametrize(
        ("variable", "step"),
        [
            ("PAYMESH_PAYMENTS_CRASH_AT", "ledger_posted"),
            ("PAYMESH_RISK_CRASH_AT", "decisions_batch_written"),
        ],
    )
    @pytest.mark.parametrize("env", ["development", "production"])
    def test_a_crash_point_is_refused_outside_tests(
        self, monkeypatch: pytest.MonkeyPatch, variable: str, step: str, env: str
    ) -> None:
        monkeypatch.setenv("PAYMESH_ENV", env)
        monkeypatch.setenv("PAYMESH_SIGNING_SECRET", "a-long-secret-of-our-own-0123456789")
        monkeypatch.setenv(variable, step)

        with pytest.raises(ValidationError, match=variable):
            load()

    def test_a_crash_point_is_taken_in_tests(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("PAYMESH_ENV", "test")
        monkeypatch.setenv("PAYMESH_RISK_CRASH_AT", "decisions_batch_written")

        assert load().risk.crash_at == "decisions_batch_written"
