"""Notification channels: email over SMTP, SMS through a Twilio-compatible API, push through
an FCM HTTP v1-compatible API, all behind one `Channel` interface.

A channel sends one `OutgoingMessage` and answers a `SendResult`, or raises
`TransientSendError` (try again later: timeouts, refused connections, 5xx, 429, SMTP 4xx)
or `PermanentSendError` (never retry: bad credentials, invalid number, unregistered device
token, SMTP 5xx). Channels never retry themselves: the notification service owns the
schedule, so one policy (and one attempt counter) covers every channel.

A timeout after the request left may still have sent the message: Twilio and FCM take no
idempotency key, so a retry after a timeout can deliver twice. Email carries a Message-ID
derived from the idempotency key, which lets mail systems and readers spot the duplicate.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import ssl
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from email.charset import QP, Charset
from email.header import Header
from email.message import EmailMessage, Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import formatdate, make_msgid
from typing import Any, Literal, Protocol

import aiosmtplib
import httpx

from paymesh.kernel.http import shared_tls_context

ChannelName = Literal["email", "sms", "push"]
TokenProvider = Callable[[], Awaitable[str]]

TWILIO_API_VERSION = "2010-04-01"
# Statuses a Twilio Message has while it is still on its way (or handed to the carrier).
_TWILIO_SENT = frozenset({"accepted", "scheduled", "queued", "sending", "sent"})
_TWILIO_FAILED = frozenset({"failed", "undelivered", "canceled"})
# FCM v1 error codes that no retry can fix.
_FCM_PERMANENT = frozenset(
    {"UNREGISTERED", "INVALID_ARGUMENT", "SENDER_ID_MISMATCH", "THIRD_PARTY_AUTH_ERROR"}
)
_MESSAGE_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]")


@dataclass(frozen=True)
class OutgoingMessage:
    channel: ChannelName
    to: str  # email address | E.164 phone number | device registration token
    subject: str | None  # email subject / push title
    text: str  # plain body: email text part, SMS body, push body
    html: str | None = None  # email only
    data: dict[str, str] = field(default_factory=dict)  # push data payload
    idempotency_key: str | None = None  # the notification id


@dataclass(frozen=True)
class SendResult:
    provider_message_id: str
    status: Literal["sent", "delivered"]


class SendError(Exception):
    """A send that did not happen; `provider_code` is the provider's own error code (SMTP
    reply code, Twilio error code, FCM errorCode) when it gave one."""

    def __init__(
        self, detail: str, *, provider_code: str | None = None, status: int | None = None
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.provider_code = provider_code
        self.status = status


class TransientSendError(SendError):
    """Retry later: the provider or the network failed, not the message."""


class PermanentSendError(SendError):
    """Never retry: the message, its recipient or our credentials are refused."""


class Channel(Protocol):
    name: str

    async def send(self, message: OutgoingMessage) -> SendResult: ...

    async def aclose(self) -> None: ...


def _expect_channel(channel: Channel, message: OutgoingMessage) -> None:
    if message.channel != channel.name:
        raise PermanentSendError(f"a {message.channel} message sent to the {channel.name} channel")


# --- email -----------------------------------------------------------------------------


class SmtpChannel:
    """Email over SMTP: implicit TLS (`use_tls`, port 465), STARTTLS (`start_tls=True`;
    `None` upgrades when the server offers it) or plain (loopback catchers only); AUTH
    when a username is configured. A message with `html` goes as multipart/alternative."""

    name = "email"

    def __init__(
        self,
        *,
        host: str,
        port: int,
        sender: str,
        username: str | None = None,
        password: str | None = None,
        use_tls: bool = False,
        start_tls: bool | None = None,
        timeout_seconds: float = 10.0,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        if use_tls and start_tls:
            raise ValueError("use_tls (implicit TLS) and start_tls exclude each other")
        self.host = host
        self.port = port
        self.sender = sender
        self.username = username
        self.password = password
        self.use_tls = use_tls
        self.start_tls = start_tls
        self.timeout_seconds = timeout_seconds
        self.tls_context = tls_context
        # EHLO's name: without one, aiosmtplib asks socket.getfqdn() on every send, a
        # blocking DNS lookup on the event loop.
        self.local_hostname = self.sender.rpartition("@")[2].strip("> ") or "localhost"

    def compose(self, message: OutgoingMessage) -> tuple[str, bytes | EmailMessage]:
        """The Message-ID and the message: text/plain, or multipart/alternative with the
        html part. Built with the standard library's classic MIME classes, several times
        cheaper than `EmailMessage`'s header registry (docs/decisions.md); addresses that
        are not ASCII (internationalised mailboxes, sent with SMTPUTF8) take the
        `EmailMessage` path, which aiosmtplib knows how to send."""
        headers = {
            "From": self.sender,
            "To": message.to,
            "Subject": message.subject or "",
            "Date": formatdate(localtime=False, usegmt=True),
            "Message-ID": self._message_id(message),
        }
        message_id = headers["Message-ID"]
        for value in headers.values():
            if "\r" in value or "\n" in value:  # templates fold whitespace; never trust it
                raise PermanentSendError("a mail header holds a line break")
        if not (self.sender.isascii() and message.to.isascii()):
            email = EmailMessage()
            for name, value in headers.items():
                email[name] = value
            email.set_content(message.text)
            if message.html is not None:
                email.add_alternative(message.html, subtype="html")
            return message_id, email
        body: Message = _text_part(message.text, "plain")
        if message.html is not None:
            body = MIMEMultipart("alternative", _subparts=[body, _text_part(message.html, "html")])
        for name, value in headers.items():
            # A header that is not ASCII (a subject in French) as RFC 2047 encoded words.
            encoded = value if value.isascii() else Header(value, "utf-8")
            body[name] = encoded  # type: ignore[assignment]  # compat32 takes a Header
        return message_id, body.as_bytes()

    def _message_id(self, message: OutgoingMessage) -> str:
        domain = self.sender.rpartition("@")[2].strip("> ") or "paymesh.invalid"
        if message.idempotency_key is None:
            return make_msgid(domain=domain)
        # The same notification always carries the same Message-ID, so a resend after an
        # ambiguous failure is recognisable as the same message.
        local = _MESSAGE_ID_UNSAFE.sub("-", message.idempotency_key)
        return f"<notification.{local}@{domain}>"

    async def send(self, message: OutgoingMessage) -> SendResult:
        _expect_channel(self, message)
        message_id, email = self.compose(message)
        try:
            await aiosmtplib.send(
                email,
                sender=self.sender,
                recipients=[message.to],
                hostname=self.host,
                local_hostname=self.local_hostname,
                port=self.port,
                username=self.username,
                password=self.password,
                use_tls=self.use_tls,
                start_tls=self.start_tls,
                timeout=self.timeout_seconds,
                tls_context=self.tls_context,
            )
        except aiosmtplib.SMTPRecipientsRefused as error:
            raise _smtp_refusal(error.recipients) from error
        except aiosmtplib.SMTPResponseException as error:
            raise _smtp_reply_error(error.code, error.message) from error
        except (aiosmtplib.SMTPException, OSError) as error:
            # aiosmtplib raises the bare SMTPException (and SMTPNotSupported) when the
            # server lacks what the configuration demands (STARTTLS, AUTH): no retry fixes
            # a configuration. Its subclasses and OSError are the network: refused or reset
            # connections, timeouts, disconnects, TLS handshakes.
            kind = (
                PermanentSendError
                if type(error) in (aiosmtplib.SMTPException, aiosmtplib.SMTPNotSupported)
                else TransientSendError
            )
            raise kind(f"SMTP: {type(error).__name__}: {error}") from error
        return SendResult(provider_message_id=message_id, status="sent")

    async def aclose(self) -> None:
        """Each send opens its own connection: nothing is held between sends."""


_UTF8_QUOTED_PRINTABLE = Charset("utf-8")
_UTF8_QUOTED_PRINTABLE.body_encoding = QP  # readable in the raw message, unlike base64


SMTP_LINE_LIMIT = 998  # octets per line, RFC 5321 4.5.3.1.6


def _text_part(text: str, subtype: str) -> MIMEText:
    """7bit when the text is ASCII in short lines; quoted-printable UTF-8 otherwise (it
    wraps long lines, e.g. a one-line html template, with soft breaks)."""
    if text.isascii() and all(len(line) <= SMTP_LINE_LIMIT for line in text.splitlines()):
        return MIMEText(text, subtype, "us-ascii")
    return MIMEText(text, subtype, _UTF8_QUOTED_PRINTABLE)  # type: ignore[arg-type]


def _smtp_reply_error(code: int, text: str) -> SendError:
    kind = PermanentSendError if 500 <= code < 600 else TransientSendError
    return kind(f"SMTP {code} {text}".strip(), provider_code=str(code))


def _smtp_refusal(refusals: list[aiosmtplib.SMTPRecipientRefused]) -> SendError:
    # One recipient per message, so one refusal decides.
    first = refusals[0]
    return _smtp_reply_error(first.code, f"{first.recipient}: {first.message}")


# --- SMS -------------------------------------------------------------------------------


def twilio_signature(
    url: str, params: Mapping[str, str] | Iterable[tuple[str, str]], token: str
) -> str:
    """`X-Twilio-Signature` for a form-encoded POST to `url`: HMAC-SHA1 keyed with the auth
    token over the full URL followed by each parameter name and value, sorted, base64."""
    pairs = params.items() if isinstance(params, Mapping) else params
    payload = url + "".join(name + value for name, value in sorted(pairs))
    digest = hmac.new(token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def verify_twilio_signature(
    url: str,
    params: Mapping[str, str] | Iterable[tuple[str, str]],
    signature: str | None,
    token: str,
) -> bool:
    """Whether `signature` (the `X-Twilio-Signature` header) signs this callback; `url` must
    be the URL exactly as the sender called it (scheme, host, port, query)."""
    if not signature:
        return False
    expected = twilio_signature(url, params, token)
    return hmac.compare_digest(expected.encode(), signature.encode())


def _json_or_none(response: httpx.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _http_failure(response: httpx.Response, detail: str, code: str | None) -> SendError:
    status = response.status_code
    transient = status in (408, 409, 425, 429) or status >= 500
    kind = TransientSendError if transient else PermanentSendError
    return kind(detail, provider_code=code, status=status)


class TwilioSmsChannel:
    """SMS through Twilio's Messages resource (or anything speaking it: the simulator).
    With `status_callback_url`, Twilio posts each status change (sent, delivered, failed)
    there, signed with `X-Twilio-Signature`."""

    name = "sms"

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        from_number: str,
        base_url: str = "https://api.twilio.com",
        status_callback_url: str | None = None,
        timeout_seconds: float = 10.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.account_sid = account_sid
        self.from_number = from_number
        self.status_callback_url = status_callback_url
        self._auth = httpx.BasicAuth(account_sid, auth_token)
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_seconds), verify=shared_tls_context()
        )
        self._url = (
            f"{base_url.rstrip('/')}/{TWILIO_API_VERSION}/Accounts/{account_sid}/Messages.json"
        )

    async def send(self, message: OutgoingMessage) -> SendResult:
        _expect_channel(self, message)
        form = {"To": message.to, "From": self.from_number, "Body": message.text}
        if self.status_callback_url:
            form["StatusCallback"] = self.status_callback_url
        try:
            response = await self._client.post(self._url, data=form, auth=self._auth)
        except httpx.HTTPError as error:
            raise TransientSendError(f"Twilio: {type(error).__name__}: {error}") from error
        body = _json_or_none(response) or {}
        if response.status_code >= 300:
            code = body.get("code")
            detail = f"Twilio {response.status_code}: {body.get('message') or response.text[:200]}"
            raise _http_failure(response, detail, None if code is None else str(code))
        sid, status = body.get("sid"), body.get("status")
        if not isinstance(sid, str) or not isinstance(status, str):
            raise TransientSendError("Twilio answered without a message sid and status")
        if status in _TWILIO_FAILED:
            code = body.get("error_code")
            raise PermanentSendError(
                f"Twilio message {sid} {status}: {body.get('error_message')}",
                provider_code=None if code is None else str(code),
            )
        return SendResult(sid, "delivered" if status == "delivered" else "sent")

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()


# --- push ------------------------------------------------------------------------------


def static_token(token: str) -> TokenProvider:
    """A token provider that always answers `token` (the simulator's bearer token)."""

    async def provide() -> str:
        return token

    return provide


def _fcm_error(body: dict[str, Any] | None) -> tuple[str | None, str]:
    """(FCM errorCode or the Google status, message) from an error body."""
    error = (body or {}).get("error")
    if not isinstance(error, dict):
        return None, ""
    code = error.get("status")
    for detail in error.get("details") or []:
        if isinstance(detail, dict) and detail.get("errorCode"):
            code = detail["errorCode"]
    return (str(code) if code else None), str(error.get("message") or "")


class FcmPushChannel:
    """Push through FCM's HTTP v1 `messages:send` (or the simulator). `token_provider`
    answers a current OAuth2 access token for the service account (it refreshes before
    expiry; the channel asks it on every send)."""

    name = "push"

    def __init__(
        self,
        *,
        project_id: str,
        token_provider: TokenProvider,
        base_url: str = "https://fcm.googleapis.com",
        timeout_seconds: float = 10.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.project_id = project_id
        self.token_provider = token_provider
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_seconds), verify=shared_tls_context()
        )
        self._url = f"{base_url.rstrip('/')}/v1/projects/{project_id}/messages:send"

    def payload(self, message: OutgoingMessage) -> dict[str, Any]:
        notification: dict[str, str] = {"body": message.text}
        if message.subject is not None:
            notification["title"] = message.subject
        fcm: dict[str, Any] = {"token": message.to, "notification": notification}
        if message.data:
            fcm["data"] = dict(message.data)
        return {"message": fcm}

    async def send(self, message: OutgoingMessage) -> SendResult:
        _expect_channel(self, message)
        try:
            token = await self.token_provider()
            response = await self._client.post(
                self._url,
                json=self.payload(message),
                headers={"authorization": f"Bearer {token}"},
            )
        except httpx.HTTPError as error:
            raise TransientSendError(f"FCM: {type(error).__name__}: {error}") from error
        body = _json_or_none(response)
        if response.status_code >= 300:
            code, text = _fcm_error(body)
            detail = f"FCM {response.status_code} {code or ''}: {text or response.text[:200]}"
            if code in _FCM_PERMANENT:
                raise PermanentSendError(detail, provider_code=code, status=response.status_code)
            raise _http_failure(response, detail, code)
        name = (body or {}).get("name")
        if not isinstance(name, str):
            raise TransientSendError("FCM answered without a message name")
        return SendResult(name, "sent")

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()
