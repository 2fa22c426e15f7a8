"""`paymesh`: run the platform whole or one service at a time, migrate, mint dev tokens."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

import typer
import uvicorn
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from paymesh import __version__
from paymesh.audit import commands as audit_commands
from paymesh.distributed import DistributedError, Launch
from paymesh.gateway.routes import RouteTable, describe
from paymesh.identity import commands as identity_commands
from paymesh.kernel.config import Settings, get_settings
from paymesh.kernel.observability import configure_logging
from paymesh.notifications.simulators import MailCatcher
from paymesh.notifications.simulators.mounting import push_simulator, sms_simulator
from paymesh.platform import SERVICE_MODULES, Platform, load_spec
from paymesh.providers.simulators.bank import build_app as build_bank_simulator
from paymesh.providers.simulators.bank import uvicorn_tls_options
from paymesh.providers.simulators.kyc import build_app as build_kyc_simulator
from paymesh.risk import commands as risk_commands

app = typer.Typer(help="Paymesh payment services platform.", no_args_is_help=True)
console = Console(stderr=True)

HostOption = Annotated[str | None, typer.Option(help="Interface to listen on.")]
PortOption = Annotated[int | None, typer.Option(help="TCP port.")]
NoMigrateOption = Annotated[
    bool, typer.Option("--no-migrate", help="Do not apply pending migrations on start.")
]


def _settings() -> Settings:
    try:
        settings = get_settings()
    except ValidationError as error:
        # A clear message instead of a traceback: bad configuration is the operator's to fix.
        for problem in error.errors():
            field = "_".join(str(part) for part in problem["loc"]).upper()
            where = f"PAYMESH_{field}: " if field else ""
            typer.echo(f"configuration error: {where}{problem['msg']}", err=True)
        raise typer.Exit(2) from None
    configure_logging(settings.log_level, settings.log_format)
    return settings


app.add_typer(identity_commands.build(_settings), name="identity")
app.add_typer(risk_commands.build(_settings), name="risk")
app.add_typer(audit_commands.build(_settings), name="audit")
gateway_commands = typer.Typer(help="The API gateway: its route table.", no_args_is_help=True)
app.add_typer(gateway_commands, name="gateway")


@gateway_commands.command("routes")
def gateway_routes(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
) -> None:
    """The gateway's route table: path prefix, service, policy, timeout, body limit."""
    settings = _settings()
    try:
        table = RouteTable.from_specs([load_spec(name) for name in SERVICE_MODULES], settings)
    except ValueError as error:
        typer.echo(f"configuration error: {error}", err=True)
        raise typer.Exit(2) from None
    rows = describe(table)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table_view = Table(title="Gateway routes (most specific first wins)")
    for column in rows[0]:
        table_view.add_column(column)
    for row in rows:
        table_view.add_row(*row.values())
    # Piped (no terminal width to fit): keep every cell whole.
    Console(width=None if sys.stdout.isatty() else 160).print(table_view)


def _platform(settings: Settings, services: list[str] | None = None, **options: Any) -> Platform:
    try:
        return Platform(settings, services, **options)
    except ValueError as error:
        # e.g. a PAYMESH_BROKER_URL of no supported broker, or an unsupported database URL.
        typer.echo(f"configuration error: {error}", err=True)
        raise typer.Exit(2) from None


def _check_service(name: str) -> str:
    if name not in SERVICE_MODULES:
        raise typer.BadParameter(f"unknown service; choose from {', '.join(SERVICE_MODULES)}")
    return name


SIMULATORS = ("kyc-simulator", "bank-simulator", "sms-simulator", "push-simulator", "mail-catcher")


def _check_servable(name: str) -> str:
    return name if name == "gateway" or name in SIMULATORS else _check_service(name)


def _run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())


def _run_server(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    # Ctrl-C is how a server stops: uvicorn shuts down gracefully, then re-raises the
    # signal; like `uvicorn.run`, treat that as a normal exit (code 0).
    with contextlib.suppress(KeyboardInterrupt):
        _run(main)


def _announce(platform: Platform, origin: str, demo: bool) -> None:
    table = Table(title=f"Paymesh {__version__} on {origin}")
    table.add_column("service")
    table.add_column("paths")
    table.add_column("database")
    for name, runtime in platform.runtimes.items():
        url = runtime.database.url.render_as_string(hide_password=True)
        if runtime.database.schema:
            url += f" (schema {runtime.database.schema})"
        table.add_row(name, ", ".join(runtime.spec.prefixes), url)
    console.print(table)
    console.print(f"API docs: {origin}/docs   health: {origin}/health   Ctrl-C stops")
    if demo:
        console.print("Demo data loaded; see README 'A tour' for requests to try.")


async def _serve(platform: Platform, *, migrate: bool, demo: bool) -> None:
    if migrate:
        await platform.migrate()
    if demo:
        await platform.seed_demo()
    settings = platform.settings
    config = uvicorn.Config(
        platform,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=10,
    )
    server = uvicorn.Server(config)
    _announce(platform, settings.origin, demo)
    await server.serve()


async def _serve_simulator(settings: Settings, name: str) -> None:
    """A simulator of an external party alone: no database, no gateway."""
    catcher: MailCatcher | None = None
    tls: dict[str, Any] = {}
    if name == "kyc-simulator":
        app, title = build_kyc_simulator(settings), "KYC vendor simulator"
    elif name == "bank-simulator":
        app, title = build_bank_simulator(settings), "Partner bank simulator (ISO 20022)"
        tls = uvicorn_tls_options(settings.providers.bank_simulator)
    elif name == "sms-simulator":
        app, title = sms_simulator(settings).app(), "SMS (Twilio) simulator"
    elif name == "push-simulator":
        app, title = push_simulator(settings).app(), "Push (FCM v1) simulator"
    else:
        section = settings.notifications
        catcher = MailCatcher(port=section.smtp_port or 2525)
        app, title = catcher.app(), f"Mail catcher (SMTP on 127.0.0.1:{section.smtp_port or 2525})"
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=10,
        **tls,
    )
    if catcher is not None:
        await catcher.start()
    origin = settings.origin.replace("http://", "https://", 1) if tls else settings.origin
    console.print(f"{title} on {origin}   Ctrl-C stops")
    try:
        await uvicorn.Server(config).serve()
    finally:
        if catcher is not None:
            await catcher.stop()


def platform_from_environment() -> Platform:
    """uvicorn factory for `serve --processes N`: each process builds its own platform."""
    settings = _settings()
    services = os.environ["PAYMESH_SERVE_SERVICES"].split(",")
    return Platform(settings, services, run_workers=settings.run_workers, gateway=False)


def _migrate_then_let_go(platform: Platform, *, migrate: bool) -> None:
    """Apply pending migrations (unless told not to) and close the databases: the
    processes that serve open their own."""

    async def prepare() -> None:
        try:
            if migrate:
                await platform.migrate()
        finally:
            for runtime in platform.runtimes.values():
                await runtime.database.dispose()

    _run(prepare)


def _serve_processes(
    platform: Platform,
    service: str,
    *,
    processes: int,
    migrate: bool,
    run_workers: bool,
) -> None:
    _migrate_then_let_go(platform, migrate=migrate)
    settings = platform.settings
    os.environ["PAYMESH_SERVE_SERVICES"] = service
    os.environ["PAYMESH_RUN_WORKERS"] = "true" if run_workers else "false"
    # The server processes read their settings from the environment: pass them the
    # address too, so their public URL (issuer, discovery) is the one announced here.
    os.environ["PAYMESH_HOST"] = settings.host
    os.environ["PAYMESH_PORT"] = str(settings.port)
    # Metrics of every server process in one /metrics: prometheus_client's multiprocess
    # mode, in a directory fresh for this run (stale files would add old counts).
    metrics_directory = tempfile.mkdtemp(prefix="paymesh-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_directory
    _announce(platform, settings.origin, demo=False)
    console.print(f"{processes} server processes share the port")
    try:
        _run_workers_server(processes, settings)
    finally:
        shutil.rmtree(metrics_directory, ignore_errors=True)


def _run_workers_server(processes: int, settings: Settings) -> None:
    uvicorn.run(
        "paymesh.cli:platform_from_environment",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=processes,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=10,
    )


@app.command()
def up(
    host: HostOption = None,
    port: PortOption = None,
    demo: Annotated[
        bool, typer.Option("--demo", help="Seed demo data (not in production).")
    ] = False,
    no_migrate: NoMigrateOption = False,
    distributed: Annotated[
        bool,
        typer.Option(
            "--distributed",
            help="Every service as its own `paymesh serve` process on the ports above PORT, "
            "the gateway in front on PORT, events through PAYMESH_BROKER_URL.",
        ),
    ] = False,
) -> None:
    """Run every service in one process on one origin (the embedded shape), or with
    --distributed each in a process of its own behind the gateway."""
    settings = _settings().listening_on(host, port)
    if distributed:
        _up_distributed(settings, migrate=not no_migrate, demo=demo)
        return
    platform = _platform(settings, run_workers=settings.run_workers)
    _run_server(lambda: _serve(platform, migrate=not no_migrate, demo=demo))


def _up_distributed(settings: Settings, *, migrate: bool, demo: bool) -> None:
    if demo:
        raise typer.BadParameter(
            "demo data is seeded by the embedded shape only", param_hint="--demo"
        )
    launch = Launch(settings, list(SERVICE_MODULES))
    try:
        launch.check()
    except DistributedError as error:
        typer.echo(f"configuration error: {error}", err=True)
        raise typer.Exit(2) from None
    platform = _platform(settings, gateway=False)  # for the migrations only

    _migrate_then_let_go(platform, migrate=migrate)
    raise typer.Exit(launch.run())


@app.command()
def serve(
    service: Annotated[
        str,
        typer.Argument(
            callback=_check_servable,
            help="Service to run, or `gateway`: the public entry point in front of the "
            "services at PAYMESH_<SERVICE>_URL (several comma-separated URLs each), or "
            "`kyc-simulator`: the KYC vendor's simulator (PAYMESH_PROVIDERS_KYC_* settings), "
            "`bank-simulator`: the partner bank's (PAYMESH_PROVIDERS_BANK_SIMULATOR, HTTPS "
            "and mutual TLS when it names certificates), "
            "`sms-simulator` / `push-simulator`: Twilio's and FCM's (PAYMESH_NOTIFICATIONS_*), "
            "`mail-catcher`: an SMTP catcher on PAYMESH_NOTIFICATIONS_SMTP_PORT (default "
            "2525) showing its catch over HTTP (development only: it shows every message).",
        ),
    ],
    host: HostOption = None,
    port: PortOption = None,
    no_migrate: NoMigrateOption = False,
    workers: Annotated[
        bool | None,
        typer.Option(
            "--workers/--no-workers",
            help="Also run its background workers (default: PAYMESH_RUN_WORKERS, true).",
        ),
    ] = None,
    processes: Annotated[
        int, typer.Option(min=1, max=64, help="Server processes sharing the port (replicas).")
    ] = 1,
) -> None:
    """Run one service alone (the distributed shape: one or more per service)."""
    settings = _settings().listening_on(host, port)
    run_workers = settings.run_workers if workers is None else workers
    if service in SIMULATORS:
        _run_server(lambda: _serve_simulator(settings, service))
        return
    if service == "gateway":
        if processes > 1:
            raise typer.BadParameter("run several gateways on ports of their own instead")
        gateway = _platform(settings, [], gateway_only=True)
        _run_server(lambda: _serve(gateway, migrate=False, demo=False))
        return
    platform = _platform(settings, [service], run_workers=run_workers, gateway=False)
    if processes > 1:
        _serve_processes(
            platform,
            service,
            processes=processes,
            migrate=not no_migrate,
            run_workers=run_workers,
        )
        return
    _run_server(lambda: _serve(platform, migrate=not no_migrate, demo=False))


@app.command()
def worker(
    service: Annotated[str, typer.Argument(callback=_check_service, help="Service to work for.")],
    no_migrate: NoMigrateOption = False,
) -> None:
    """Run one service's background workers only: outbox relay, tasks, scheduled jobs."""
    settings = _settings()
    platform = _platform(settings, [service])

    async def main() -> None:
        if not no_migrate:
            await platform.migrate()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await platform.start()
        console.print(f"worker for {service} running; Ctrl-C stops")
        try:
            await stop.wait()
        finally:
            await platform.stop()

    _run(main)


@app.command()
def migrate(
    services: Annotated[list[str] | None, typer.Argument(help="Services (default: all).")] = None,
) -> None:
    """Apply every pending migration."""
    settings = _settings()
    for name in services or []:
        _check_service(name)
    platform = _platform(settings, services or None, run_workers=False)

    async def main() -> None:
        try:
            await platform.migrate()
        finally:
            for runtime in platform.runtimes.values():
                await runtime.database.dispose()

    _run(main)
    console.print(f"migrated: {', '.join(platform.runtimes)}")


@app.command()
def token(
    subject: Annotated[str, typer.Option(help="Token subject (user or service id).")] = "admin",
    role: Annotated[list[str] | None, typer.Option(help="Role; repeatable.")] = None,
    scope: Annotated[list[str] | None, typer.Option(help="Scope; repeatable.")] = None,
    ttl_seconds: Annotated[int, typer.Option(help="Lifetime in seconds.")] = 3600,
) -> None:
    """Print a development access token: only with PAYMESH_ENV=development (or test) set
    explicitly, or a platform listening on loopback; never in production. Without
    `--scope`, the token carries the API scopes its roles grant."""
    settings = _settings()
    if not settings.development_tokens_allowed:
        raise typer.BadParameter(
            "development tokens are refused here: PAYMESH_ENV=production, or the platform "
            "is not on loopback and PAYMESH_ENV=development was not set explicitly"
        )
    platform_tokens = _platform(settings, [], run_workers=False).tokens
    typer.echo(
        platform_tokens.issue(
            subject, roles=role or ["admin"], scopes=scope or None, ttl_seconds=ttl_seconds
        )
    )


@app.command()
def version(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Print the Paymesh version."""
    if as_json:
        typer.echo(json.dumps({"version": __version__}))
    else:
        typer.echo(f"paymesh {__version__}")
