"""A local SMTP catcher (aiosmtpd) that keeps what it receives, for tests and `/dev/mail`."""

from __future__ import annotations

import asyncio
import functools
import hmac
import html
import ssl
import warnings
from collections import deque
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

import structlog
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from fastapi import FastAPI
from starlette.responses import HTMLResponse

from paymesh.notifications.simulators.common import KEPT

log = structlog.get_logger("paymesh.simulators.mail")


@dataclass(frozen=True)
class CaughtMail:
    """One accepted message, kept as received. It is parsed when first read (its subject,
    text, html, Message-ID): accepting mail costs the catcher no parsing, so a platform
    sending mail under load does not pay for a reader that may never look."""

    sender: str
    recipients: list[str]
    raw: bytes

    @functools.cached_property
    def _parsed(self) -> EmailMessage:
        email = BytesParser(policy=policy.default).parsebytes(self.raw)
        assert isinstance(email, EmailMessage)
        return email

    @property
    def subject(self) -> str:
        return str(self._parsed.get("Subject", ""))

    @property
    def text(self) -> str | None:
        return _part(self._parsed, "plain")

    @property
    def html(self) -> str | None:
        return _part(self._parsed, "html")

    @property
    def message_id(self) -> str | None:
        found = self._parsed.get("Message-ID")
        return None if found is None else str(found)

    def view(self) -> dict[str, Any]:
        return {
            "from": self.sender,
            "to": self.recipients,
            "subject": self.subject,
            "text": self.text,
            "html": self.html,
            "message_id": self.message_id,
        }


def _part(email: EmailMessage, subtype: str) -> str | None:
    part = email.get_body(preferencelist=(subtype,))
    if part is None or part.get_content_type() != f"text/{subtype}":
        return None
    return str(part.get_content()).replace("\r\n", "\n")  # SMTP's line ends, as a reader sees them


class _CatcherHandler:
    def __init__(self, catcher: MailCatcher) -> None:
        self.catcher = catcher

    async def handle_RCPT(  # noqa: N802 (aiosmtpd's hook name)
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        local = address.partition("@")[0].lower()
        if local.startswith("reject"):
            return "550 5.1.1 Mailbox unavailable"
        if local.startswith("busy"):
            return "451 4.3.0 Mailbox busy, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802 (aiosmtpd's hook name)
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        self.catcher.messages.append(
            CaughtMail(
                sender=envelope.mail_from or "",
                recipients=list(envelope.rcpt_tos),
                raw=envelope.original_content or b"",
            )
        )
        return "250 Message accepted for delivery"


class MailCatcher:
    """An SMTP server on the running event loop that keeps every message it accepts.
    With `username`/`password` it offers AUTH and refuses mail from unauthenticated
    clients. With `tls_context` it offers STARTTLS and requires it (or, with
    `implicit_tls`, speaks TLS from the first byte, like port 465)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        username: str | None = None,
        password: str | None = None,
        tls_context: ssl.SSLContext | None = None,
        implicit_tls: bool = False,
    ) -> None:
        if implicit_tls and tls_context is None:
            raise ValueError("implicit_tls needs a tls_context")
        self.host = host
        self.tls_context = tls_context
        self.implicit_tls = implicit_tls
        self._port = port
        self.username = username
        self.password = password
        self.messages: deque[CaughtMail] = deque(maxlen=KEPT)
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            return self._port
        return int(self._server.sockets[0].getsockname()[1])

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if not isinstance(data, LoginPassword) or self.username is None:
            return AuthResult(success=False, handled=False)
        valid = hmac.compare_digest(data.login, self.username.encode()) & hmac.compare_digest(
            data.password, (self.password or "").encode()
        )
        return AuthResult(success=valid, handled=False)

    def _protocol(self) -> SMTP:
        handler = _CatcherHandler(self)
        starttls = self.tls_context if not self.implicit_tls else None
        if self.username is None:
            return SMTP(
                handler,
                hostname="paymesh-mail-catcher",
                enable_SMTPUTF8=True,  # internationalised mailboxes, as real servers take
                tls_context=starttls,
                require_starttls=starttls is not None,
            )
        # AUTH over plain TCP is what a loopback catcher is for; aiosmtpd warns about it.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return SMTP(
                handler,
                hostname="paymesh-mail-catcher",
                enable_SMTPUTF8=True,
                authenticator=self._authenticate,
                auth_required=True,
                auth_require_tls=False,
                tls_context=starttls,
                require_starttls=starttls is not None,
            )

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._protocol,
            self.host,
            self._port,
            ssl=self.tls_context if self.implicit_tls else None,
        )
        log.info("mail_catcher_started", host=self.host, port=self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def app(self) -> FastAPI:
        """What the catcher holds: an HTML page at `/`, JSON at `/messages`."""
        app = FastAPI(title="Mail catcher", docs_url=None, redoc_url=None)

        @app.get("/messages")
        async def list_mail() -> list[dict[str, Any]]:
            return [mail.view() for mail in self.messages]

        @app.delete("/messages", status_code=204)
        async def clear_mail() -> None:
            self.messages.clear()

        @app.get("/", response_class=HTMLResponse)
        async def page() -> str:
            rows = "".join(
                "<article><h2>{subject}</h2><p>From {sender} to {to}</p><pre>{text}</pre>"
                "</article>".format(
                    subject=html.escape(mail.subject),
                    sender=html.escape(mail.sender),
                    to=html.escape(", ".join(mail.recipients)),
                    text=html.escape(mail.text or ""),
                )
                for mail in reversed(self.messages)
            )
            return (
                "<!doctype html><meta charset=utf-8><title>Caught mail</title>"
                f"<h1>Caught mail ({len(self.messages)})</h1>{rows or '<p>Nothing yet.</p>'}"
            )

        return app
