"""Builds the notifications service: email, SMS and push from templates on events, with
delivery tracking, retries, dead letters and replays."""

from __future__ import annotations

from pathlib import Path

import structlog

from paymesh.identity.client import HttpIdentity
from paymesh.kernel.config import EdgeRoute
from paymesh.kernel.runtime import ServiceRuntime, ServiceSpec, Worker
from paymesh.notifications import settings as configured
from paymesh.notifications.api import router
from paymesh.notifications.catalog import Catalog
from paymesh.notifications.consumers import consumers
from paymesh.notifications.delivery import Dispatcher, IdentityAddresses
from paymesh.notifications.dev_mail import router as dev_mail_router
from paymesh.notifications.events import EVENTS
from paymesh.notifications.models import kernel_tables, metadata
from paymesh.notifications.service import Notifier
from paymesh.notifications.simulators import MailCatcher

log = structlog.get_logger("paymesh.notifications")


def _setup(runtime: ServiceRuntime) -> None:
    settings = runtime.settings
    section = settings.notifications
    catalog = Catalog()
    runtime.state["catalog"] = catalog
    runtime.state["notifier"] = Notifier(catalog, configured.routes(settings))
    runtime.state["sms_callback"] = configured.SmsCallbackConfig(
        url=configured.sms_callback_url(settings),
        auth_token=configured.twilio_auth_token(settings),
    )
    runtime.state["dispatcher"] = Dispatcher(
        runtime.database,
        {},
        None,
        runtime.outbox,
        max_attempts=section.max_attempts,
        retry_initial_seconds=section.retry_initial_seconds,
        retry_max_seconds=section.retry_max_seconds,
    )


def _workers(runtime: ServiceRuntime) -> list[Worker]:
    return [runtime.state["dispatcher"]]


async def _start(runtime: ServiceRuntime) -> None:
    settings = runtime.settings
    catalog: Catalog = runtime.state["catalog"]
    dispatcher: Dispatcher = runtime.state["dispatcher"]
    await catalog.install_defaults(runtime.database)
    mail_port: int | None = None
    if configured.mail_catcher_wanted(settings):
        catcher = MailCatcher(port=settings.notifications.smtp_port)
        await catcher.start()
        runtime.state["mail_catcher"] = catcher
        mail_port = catcher.port
    dispatcher.channels.update(configured.build_channels(settings, mail_port=mail_port))
    # Made at start: the in-process transport between services exists only by then.
    identity_http = runtime.client("identity")
    runtime.state["http_clients"] = (identity_http,)
    dispatcher.addresses = IdentityAddresses(HttpIdentity(identity_http))
    log.info(
        "notification_channels",
        channels=sorted(dispatcher.channels),
        mail_catcher_port=mail_port,
    )


async def _stop(runtime: ServiceRuntime) -> None:
    dispatcher: Dispatcher = runtime.state["dispatcher"]
    for channel in list(dispatcher.channels.values()):
        await channel.aclose()
    dispatcher.channels.clear()
    catcher: MailCatcher | None = runtime.state.pop("mail_catcher", None)
    if catcher is not None:
        await catcher.stop()
    for client in runtime.state.pop("http_clients", ()):
        await client.aclose()


SPEC = ServiceSpec(
    name="notifications",
    title="Notifications",
    description="Email, SMS and push from templates on events: preferences, devices, "
    "delivery tracking with retries, dead letters and replays.",
    metadata=metadata,
    tables=kernel_tables,
    migrations=Path(__file__).parent / "migrations",
    routers=[router, dev_mail_router],
    path_prefixes=("/v1/notifications", "/dev/mail"),
    edge_routes=(
        # The SMS provider has no token: its X-Twilio-Signature is checked by the service.
        EdgeRoute(configured.SMS_CALLBACK_PATH, policy="public", methods=("POST",), exact=True),
    ),
    setup=_setup,
    on_start=_start,
    on_stop=_stop,
    consumers=consumers,
    events=EVENTS,
    workers=_workers,
)
