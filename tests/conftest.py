"""Test fixtures: every test gets a fresh, migrated database on the backend under test.

`PAYMESH_TEST_DATABASE=sqlite` (default): a temporary directory of SQLite files per test.
`PAYMESH_TEST_DATABASE=postgresql`: a database created for the run on the server at
`PAYMESH_TEST_POSTGRES_URL` (default postgresql://postgres@127.0.0.1:5432/postgres); each
test gets its schemas freshly migrated and dropped afterwards. With CI=true an unreachable
PostgreSQL fails the run instead of skipping it.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import os
import secrets
import shutil
import socket
import sqlite3
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path

import asyncpg
import httpx
import pytest
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from sqlalchemy.engine import make_url

from paymesh.identity import keys as identity_keys
from paymesh.identity import security as identity_security
from paymesh.kernel.config import Settings
from paymesh.kernel.observability import configure_logging
from paymesh.kernel.runtime import ServiceRuntime, ServiceSpec
from paymesh.platform import Platform

BACKEND = os.environ.get("PAYMESH_TEST_DATABASE", "sqlite")
POSTGRES_ADMIN_URL = os.environ.get(
    "PAYMESH_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


# Signing keys: identity makes a fresh RSA key on every start, and a test run starts
# identity hundreds of times; generating a 2048-bit key is most of that start. Tests hand out
# keys from a small pool generated in this run (real keys, each made by identity's own
# generate_key), round-robin so consecutive rotations still get distinct keys. Tests of key
# generation itself call the original through `keys.generate_key.__wrapped__`.
_SIGNING_KEY_POOL_SIZE = 4
_signing_keys: dict[str, list[object]] = {}
_signing_key_turns: dict[str, int] = {}
_generate_signing_key = identity_keys.generate_key


@functools.wraps(_generate_signing_key)
def _pooled_signing_key(algorithm: str) -> object:
    pool = _signing_keys.setdefault(algorithm, [])
    turn = _signing_key_turns.get(algorithm, 0)
    _signing_key_turns[algorithm] = turn + 1
    if len(pool) < _SIGNING_KEY_POOL_SIZE:
        pool.append(_generate_signing_key(algorithm))
    return pool[turn % _SIGNING_KEY_POOL_SIZE]


identity_keys.generate_key = _pooled_signing_key  # type: ignore[assignment]


# Migrated SQLite files: every test gets fresh databases, but migrating a service's history
# from scratch (Alembic: a module import per revision, batch table rebuilds) costs far more
# than copying the file it produces. The first time a service is migrated in this run, its
# file is kept (a consistent copy through SQLite's backup API); a later fresh database of the
# same service and history starts as a copy of it. A database that already exists is
# migrated as usual, and tests/*/test_migrations.py call the migrations themselves.
_migrated_templates: dict[tuple[str, str], Path] = {}
_template_directory = Path(tempfile.mkdtemp(prefix="paymesh-migrated-"))
atexit.register(shutil.rmtree, _template_directory, ignore_errors=True)
_migrate_runtime = ServiceRuntime.migrate


def _never_opened(file: Path) -> bool:
    return not any(Path(f"{file}{suffix}").exists() for suffix in ("", "-wal", "-shm", "-journal"))


def _keep_as_template(file: Path, template: Path) -> None:
    source, copy = sqlite3.connect(file), sqlite3.connect(template)
    try:
        source.backup(copy)
    finally:
        source.close()
        copy.close()


async def _migrate_or_copy(runtime: ServiceRuntime) -> None:
    database = runtime.database
    file = Path(database.url.database) if database.is_sqlite and database.url.database else None
    if file is None or not _never_opened(file):
        await _migrate_runtime(runtime)
        return
    key = (runtime.name, str(runtime.spec.migrations))
    template = _migrated_templates.get(key)
    if template is not None:
        shutil.copyfile(template, file)
        return
    await _migrate_runtime(runtime)
    template = _template_directory / f"{len(_migrated_templates)}-{runtime.name}.db"
    _keep_as_template(file, template)
    _migrated_templates[key] = template


ServiceRuntime.migrate = _migrate_or_copy  # type: ignore[method-assign]


# Passwords: argon2id as in production, at its lowest cost (identity hashes a password for
# every user a test makes; at the production cost that was a sixth of identity's tests).
identity_security._passwords = PasswordHash(
    (Argon2Hasher(time_cost=1, memory_cost=1024, parallelism=1),)
)


# Log lines as in production (JSON): structlog's unconfigured default renders every logged
# exception as a syntax-highlighted rich traceback, a tenth of a worker's CPU.
configure_logging("INFO", "json")


def pytest_report_header() -> str:
    return f"paymesh database backend: {BACKEND}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if BACKEND == "postgresql":
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL (runs in the PostgreSQL pass)")
    for item in items:
        if "postgres_only" in item.keywords:
            item.add_marker(skip)


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str | None]:
    if BACKEND != "postgresql":
        yield None
        return
    name = f"paymesh_test_{secrets.token_hex(4)}"
    admin = _asyncpg_dsn(POSTGRES_ADMIN_URL)

    async def execute(sql: str) -> None:
        connection = await asyncpg.connect(admin, timeout=5)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    try:
        asyncio.run(execute(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError) as error:
        message = f"PostgreSQL at {POSTGRES_ADMIN_URL} is not usable: {error!r}"
        if IN_CI:
            pytest.exit(message, returncode=1)
        pytest.skip(message)
    url = make_url(POSTGRES_ADMIN_URL).set(database=name)
    yield url.render_as_string(hide_password=False)
    asyncio.run(execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def settings(tmp_path: Path, postgres_database: str | None) -> Settings:
    return Settings(
        _env_file=None,
        env="test",
        data_dir=tmp_path / "var",
        database_url=postgres_database,
        access_log=False,
        # The gateway's rate limits would refuse the bursts many tests send as one client;
        # tests/gateway turns them on where they are the subject.
        gateway={"rate_limits": False},
        # Published events are kept (marked) so tests can inspect them; production
        # deletes them on publish (retention 0). tests/kernel/test_events.py covers both.
        events={
            "retry_base_seconds": 0.001,
            "relay_interval_seconds": 0.05,
            "outbox_retention_seconds": 3600,
            # Every event a test makes is checked against its service's declared types
            # and data models: the AsyncAPI document cannot drift from the code.
            "check_payloads": True,
        },
    )


async def _drop_schemas(url: str, names: Sequence[str]) -> None:
    connection = await asyncpg.connect(_asyncpg_dsn(url))
    try:
        for name in names:
            await connection.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    finally:
        await connection.close()


PlatformFactory = Callable[..., "asyncio.Future[Platform]"]


@pytest.fixture
async def make_platform(
    settings: Settings, postgres_database: str | None
) -> AsyncIterator[Callable[..., object]]:
    """Build, migrate and start a platform: `await make_platform(["ledger"], specs=[...])`."""
    started: list[Platform] = []

    async def factory(
        services: Sequence[str] = (),
        *,
        specs: Sequence[ServiceSpec] = (),
        run_workers: bool = True,
        settings_override: Settings | None = None,
    ) -> Platform:
        platform = Platform(
            settings_override or settings, list(services), specs=specs, run_workers=run_workers
        )
        if postgres_database:
            await _drop_schemas(postgres_database, list(platform.runtimes))
        await platform.migrate()
        await platform.start()
        started.append(platform)
        return platform

    yield factory
    for platform in started:
        await platform.stop()
    if postgres_database:
        names = [name for platform in started for name in platform.runtimes]
        await _drop_schemas(postgres_database, names)


def free_port() -> int:
    """A loopback port no one listens on now, for a process a test starts."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def http_client(platform: Platform) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=platform), base_url="http://paymesh.test"
    )
