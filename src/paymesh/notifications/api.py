"""Notifications HTTP API under /v1/notifications: the messages sent and their delivery
state, operators' replays, templates (ops), a user's preferences and push devices, the
services' direct requests (one-time codes) and the SMS provider's status callbacks."""

from __future__ import annotations

import hashlib
from typing import Annotated, Any

from fastapi import Depends, Path, Query, Request
from fastapi.responses import Response
from sqlalchemy import delete, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from paymesh.kernel.app import service_router
from paymesh.kernel.auth import Caller, current_caller, require
from paymesh.kernel.db import insert_ignoring_conflicts, utcnow
from paymesh.kernel.errors import Forbidden, problem_responses
from paymesh.kernel.ids import ID_PATTERN, new_id
from paymesh.kernel.pagination import decode_cursor, encode_cursor
from paymesh.kernel.routing import SessionDep, state_dependency
from paymesh.notifications import errors, tracking
from paymesh.notifications.catalog import Catalog, checked
from paymesh.notifications.channels import verify_twilio_signature
from paymesh.notifications.masking import mask_recipient
from paymesh.notifications.models import (
    Device,
    Notification,
    Preference,
    Template,
    device_table,
    preference_table,
)
from paymesh.notifications.preferences import Preferences, PreferencesUpdate
from paymesh.notifications.schemas import (
    DeviceCreate,
    DeviceList,
    DeviceOut,
    MessageCreate,
    MessageQueued,
    MessagesQueued,
    NotificationOut,
    NotificationPage,
    PreviewOut,
    PreviewRequest,
    TemplateCreate,
    TemplateList,
    TemplateOut,
    TemplateUpdate,
)
from paymesh.notifications.service import Notifier, ensure_routed, request_event_id
from paymesh.notifications.settings import SmsCallbackConfig
from paymesh.notifications.templating import (
    SAMPLE_DATA,
    TemplateContent,
    TemplateError,
    TemplateKey,
)

router = service_router(prefix="/v1/notifications", tags=["notifications"])

Operator = Annotated[Caller, Depends(require(roles={"ops", "admin"}))]
Service = Annotated[Caller, Depends(require(roles={"service"}))]
AnyCaller = Annotated[Caller, Depends(current_caller)]
NotificationId = Annotated[str, Path(pattern=ID_PATTERN)]
TemplateId = Annotated[str, Path(pattern=ID_PATTERN)]
DeviceId = Annotated[str, Path(pattern=ID_PATTERN)]
NotifierDep = Annotated[Notifier, Depends(state_dependency("notifier", Notifier))]
CatalogDep = Annotated[Catalog, Depends(state_dependency("catalog", Catalog))]
SmsCallbackDep = Annotated[
    SmsCallbackConfig, Depends(state_dependency("sms_callback", SmsCallbackConfig))
]
OPERATOR_ROLES = frozenset({"ops", "admin"})


def _is_operator(caller: Caller) -> bool:
    return bool(caller.roles & OPERATOR_ROLES)


def _out(row: Notification) -> NotificationOut:
    shown = tracking.visible_content(row)
    return NotificationOut(
        id=row.id,
        event_id=row.event_id,
        event_type=row.event_type,
        user_id=row.user_id,
        channel=row.channel,
        category=row.category,
        locale=row.locale,
        template_id=row.template_id,
        template_version=row.template_version,
        status=row.status,
        recipient=mask_recipient(row.channel, row.recipient),
        subject=row.subject if shown else None,
        text=row.text if shown else None,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        provider_message_id=row.provider_message_id,
        last_error=row.last_error,
        provider_error_code=row.provider_error_code,
        dead_lettered=row.dead_lettered_at is not None,
        replays=row.replays,
        created_at=row.created_at,
        sent_at=row.sent_at,
        delivered_at=row.delivered_at,
        failed_at=row.failed_at,
    )


# -- services' direct requests --------------------------------------------------------------


@router.post(
    "/messages",
    status_code=202,
    response_model=MessagesQueued,
    responses=problem_responses(errors.NoRoute),
)
async def create_message(
    body: MessageCreate, session: SessionDep, notifier: NotifierDep, caller: Service
) -> MessagesQueued:
    """Queue the messages an event type calls for, without an event: for content that
    must never rest in an event (identity's one-time codes). `data` must name `user_id`
    where the routing rule looks for the recipient. The same `idempotency_key` from the
    same service queues nothing twice. Security messages' content is erased once sent."""
    ensure_routed(notifier, body.event_type)
    data: dict[str, Any] = {**body.data, "user_id": body.user_id}
    queued = await notifier.notify(
        session,
        event_id=request_event_id(caller.subject, body.idempotency_key),
        event_type=body.event_type,
        data=data,
        only_channel=body.channel,
    )
    return MessagesQueued(
        notifications=[
            MessageQueued(
                id=item.id, user_id=item.user_id, channel=item.channel, status=item.status
            )
            for item in queued
        ]
    )


# -- the SMS provider's status callbacks ----------------------------------------------------


@router.post(
    "/sms/status",
    status_code=204,
    responses=problem_responses(errors.InvalidSignature),
    openapi_extra={"security": []},
)
async def sms_status(request: Request, session: SessionDep, config: SmsCallbackDep) -> Response:
    """Twilio's status callback (form-encoded, `X-Twilio-Signature`: HMAC-SHA1 of the
    configured callback URL and the sorted parameters, with the auth token). Verified
    before anything is read from it; moves the SMS to `delivered` or `failed`."""
    form = await request.form()
    params = {key: value for key, value in form.items() if isinstance(value, str)}
    signature = request.headers.get("x-twilio-signature", "")
    if not verify_twilio_signature(config.url, params, signature, config.auth_token):
        raise errors.InvalidSignature()
    sid, status = params.get("MessageSid", ""), params.get("MessageStatus", "")
    if sid and status and len(sid) <= 64 and len(status) <= 32:
        await tracking.apply_sms_status(
            session,
            request.app.state.runtime.outbox,
            message_sid=sid,
            status=status,
            error_code=params.get("ErrorCode"),
        )
    return Response(status_code=204)


# -- templates (ops) ------------------------------------------------------------------------


def _template_out(catalog: Catalog, row: Template) -> TemplateOut:
    variables = sorted(catalog.compiled(row).variables)
    return TemplateOut(
        id=row.id,
        version=row.version,
        event_type=row.event_type,
        channel=row.channel,
        locale=row.locale,
        subject=row.subject,
        text=row.text,
        html=row.html,
        variables=variables,
        created_at=row.created_at,
        created_by=row.created_by,
    )


@router.get("/templates", response_model=TemplateList)
async def list_templates(
    session: SessionDep,
    catalog: CatalogDep,
    _caller: Operator,
    event_type: Annotated[str | None, Query(max_length=200, pattern=r"^[a-z0-9_.]+$")] = None,
    channel: Annotated[str | None, Query(pattern=r"^(email|sms|push)$")] = None,
    locale: Annotated[str | None, Query(max_length=35, pattern=r"^[A-Za-z0-9-]+$")] = None,
) -> TemplateList:
    """The current (newest) version of every template, by event type, channel, locale."""
    rows = await catalog.current(session, event_type=event_type, channel=channel, locale=locale)
    return TemplateList(items=[_template_out(catalog, row) for row in rows])


@router.post(
    "/templates",
    status_code=201,
    response_model=TemplateOut,
    responses=problem_responses(errors.TemplateExists, errors.InvalidTemplate),
)
async def create_template(
    body: TemplateCreate, session: SessionDep, catalog: CatalogDep, caller: Operator
) -> TemplateOut:
    """A template for a new (event type, channel, locale): version 1. It must compile in
    the sandbox (no includes, imports, macros; budgets on loops, output and time)."""
    key = TemplateKey(event_type=body.event_type, channel=body.channel, locale=body.locale)
    content = content_of_body(body)
    row = await catalog.create(session, key, content, caller.subject)
    return _template_out(catalog, row)


@router.post(
    "/templates/preview",
    response_model=PreviewOut,
    responses=problem_responses(errors.TemplateNotFound, errors.InvalidTemplate),
)
async def preview_template(
    body: PreviewRequest, session: SessionDep, catalog: CatalogDep, _caller: Operator
) -> PreviewOut:
    """Render a stored template (`template_id`, newest version) or a draft (`content`)
    with `data`, or the event type's sample data. Nothing is sent or stored."""
    event_type = body.event_type
    if body.content is not None:
        compiled = checked(body.content)
    elif body.template_id is not None:
        row = (await catalog.versions(session, body.template_id))[0]
        compiled = catalog.compiled(row)
        event_type = row.event_type
    else:
        raise errors.InvalidTemplate("give `template_id` or `content`")
    data: dict[str, Any] = dict(body.data or SAMPLE_DATA.get(event_type or "", {}))
    try:
        rendered = compiled.render(data)
    except TemplateError as error:
        raise errors.InvalidTemplate(str(error)) from None
    return PreviewOut(subject=rendered.subject, text=rendered.text, html=rendered.html, data=data)


@router.get(
    "/templates/{template_id}",
    response_model=TemplateList,
    responses=problem_responses(errors.TemplateNotFound),
)
async def template_versions(
    template_id: TemplateId, session: SessionDep, catalog: CatalogDep, _caller: Operator
) -> TemplateList:
    """Every version of one template, newest first."""
    rows = await catalog.versions(session, template_id)
    return TemplateList(items=[_template_out(catalog, row) for row in rows])


@router.put(
    "/templates/{template_id}",
    response_model=TemplateOut,
    responses=problem_responses(errors.TemplateNotFound, errors.InvalidTemplate),
)
async def update_template(
    template_id: TemplateId,
    body: TemplateUpdate,
    session: SessionDep,
    catalog: CatalogDep,
    caller: Operator,
) -> TemplateOut:
    """Add the next version; it applies to the next message everywhere. Earlier versions
    stay (each message records the version it was rendered from)."""
    row = await catalog.update(session, template_id, content_of_body(body), caller.subject)
    return _template_out(catalog, row)


def content_of_body(body: TemplateUpdate | TemplateCreate) -> TemplateContent:
    return TemplateContent(subject=body.subject, text=body.text, html=body.html)


# -- a user's preferences and devices -------------------------------------------------------


@router.get("/preferences/me", response_model=Preferences)
async def my_preferences(session: SessionDep, caller: AnyCaller) -> Preferences:
    """What you opted out of, per category and channel. Security messages (one-time
    codes, password and second-factor changes) always go out."""
    stored = await session.scalar(
        select(Preference.opted_out).where(Preference.user_id == caller.subject)
    )
    return Preferences(opted_out=stored or {})


@router.put("/preferences/me", response_model=Preferences)
async def set_my_preferences(
    body: PreferencesUpdate, session: SessionDep, caller: AnyCaller
) -> Preferences:
    """Replace your opt-outs. An opt-out of `security` is refused (422)."""
    now = utcnow()
    opted_out: dict[str, Any] = {key: list(value) for key, value in body.opted_out.items()}
    row = await session.get(Preference, caller.subject, with_for_update=True)
    if row is None:
        await session.execute(
            insert_ignoring_conflicts(session, preference_table).values(
                user_id=caller.subject, opted_out=opted_out, updated_at=now
            )
        )
        row = await session.get(Preference, caller.subject, with_for_update=True)
    assert row is not None
    row.opted_out = opted_out
    row.updated_at = now
    return Preferences(opted_out=opted_out)


def _device_out(row: Device) -> DeviceOut:
    return DeviceOut(
        id=row.id, platform=row.platform, token=f"…{row.token[-8:]}", created_at=row.created_at
    )


@router.get("/devices", response_model=DeviceList)
async def my_devices(session: SessionDep, caller: AnyCaller) -> DeviceList:
    """Your devices registered for push."""
    rows = await session.execute(
        select(Device).where(Device.user_id == caller.subject).order_by(Device.created_at)
    )
    return DeviceList(items=[_device_out(row) for row in rows.scalars()])


@router.post(
    "/devices",
    status_code=201,
    response_model=DeviceOut,
    responses=problem_responses(errors.DeviceTaken),
)
async def register_device(body: DeviceCreate, session: SessionDep, caller: AnyCaller) -> DeviceOut:
    """Register this device's push token (FCM registration token) for your account.
    The same token again answers the existing registration; a token registered to
    someone else is refused (409): they must remove it first."""
    digest = hashlib.sha256(body.token.encode()).hexdigest()
    await session.execute(
        insert_ignoring_conflicts(session, device_table).values(
            id=new_id("dev"),
            user_id=caller.subject,
            token=body.token,
            token_hash=digest,
            platform=body.platform,
            created_at=utcnow(),
        )
    )
    row = (await session.execute(select(Device).where(Device.token_hash == digest))).scalar_one()
    if row.user_id != caller.subject:
        raise errors.DeviceTaken()
    return _device_out(row)


@router.delete(
    "/devices/{device_id}", status_code=204, responses=problem_responses(errors.DeviceNotFound)
)
async def remove_device(device_id: DeviceId, session: SessionDep, caller: AnyCaller) -> Response:
    """Stop push to this device."""
    removed = await session.execute(
        delete(Device).where(Device.id == device_id, Device.user_id == caller.subject)
    )
    if not removed.rowcount:  # type: ignore[attr-defined]
        raise errors.DeviceNotFound()
    return Response(status_code=204)


# -- messages and their delivery ------------------------------------------------------------


@router.get("", response_model=NotificationPage)
async def list_notifications(
    session: SessionDep,
    caller: AnyCaller,
    user_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    status: Annotated[str | None, Query(pattern=r"^(queued|sent|delivered|failed)$")] = None,
    dead_lettered: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> NotificationPage:
    """Messages, newest first. Customers see their own (`user_id` may only be theirs);
    `ops` and `admin` see anyone's, and `dead_lettered=true` lists what needs a replay."""
    if not _is_operator(caller):
        if user_id is not None and user_id != caller.subject:
            raise Forbidden(detail="you may list only your own notifications")
        user_id = caller.subject
    query = select(Notification)
    if user_id is not None:
        query = query.where(Notification.user_id == user_id)
    if status is not None:
        query = query.where(Notification.status == status)
    if dead_lettered is not None:
        query = query.where(
            Notification.dead_lettered_at.is_not(None)
            if dead_lettered
            else Notification.dead_lettered_at.is_(None)
        )
    if cursor is not None:
        created, last_id = decode_cursor(cursor)
        query = query.where(
            tuple_(Notification.created_at, Notification.id) < tuple_(created, last_id)
        )
    rows = list(
        (
            await session.execute(
                query.order_by(Notification.created_at.desc(), Notification.id.desc()).limit(
                    limit + 1
                )
            )
        ).scalars()
    )
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(rows[-1].created_at, rows[-1].id) if more and rows else None
    return NotificationPage(items=[_out(row) for row in rows], next_cursor=next_cursor)


async def _visible(session: AsyncSession, notification_id: str, caller: Caller) -> Notification:
    row = await session.get(Notification, notification_id)
    if row is None or (row.user_id != caller.subject and not _is_operator(caller)):
        raise errors.NotificationNotFound()  # someone else's is as good as none
    return row


@router.get(
    "/{notification_id}",
    response_model=NotificationOut,
    responses=problem_responses(errors.NotificationNotFound),
)
async def get_notification(
    notification_id: NotificationId, session: SessionDep, caller: AnyCaller
) -> NotificationOut:
    """One message: its channel, masked recipient, status, attempts and provider id."""
    return _out(await _visible(session, notification_id, caller))


@router.post(
    "/{notification_id}/replay",
    response_model=NotificationOut,
    responses=problem_responses(
        errors.NotificationNotFound, errors.NotReplayable, errors.ContentErased
    ),
)
async def replay_notification(
    notification_id: NotificationId, request: Request, session: SessionDep, _caller: Operator
) -> NotificationOut:
    """Queue a failed (dead-lettered) message again for a fresh set of attempts. A
    security message's content is gone once it failed: issue a new code instead."""
    row = await tracking.replay(session, request.app.state.runtime.outbox, notification_id)
    return _out(row)
