"""The notifications service end to end, through the gateway with identity's tokens: events
of identity and wallets become email (a real SMTP catcher), SMS (the Twilio simulator over
HTTP, its signed status callbacks back through the gateway) and push (the FCM simulator);
retries, dead letters, replays, preferences, devices, and the one-time code that must not
outlive its delivery."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import select, update

from paymesh.kernel.events import CloudEvent
from paymesh.notifications.models import Device, Notification
from paymesh.notifications.simulators import twilio_signature
from tests.engine_statements import engine_statements
from tests.notifications.support import NotificationsWorld, eventually, unique

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def _deposit(
    world: NotificationsWorld,
    customer_headers: dict[str, str],
    amount: int,
    wallet_id: str | None = None,
) -> str:
    if wallet_id is None:
        wallet = await world.http.post(
            "/v1/wallets",
            json={"currency": "USD"},
            headers=customer_headers | {"idempotency-key": unique("w")},
        )
        assert wallet.status_code == 201, wallet.text
        wallet_id = str(wallet.json()["id"])
    deposit = await world.http.post(
        f"/v1/wallets/{wallet_id}/deposits",
        json={"amount": amount, "reference": "test top-up"},
        headers=world.staff["finance"] | {"idempotency-key": unique("d")},
    )
    assert deposit.status_code == 201, deposit.text
    return wallet_id


async def _register_device(world: NotificationsWorld, headers: dict[str, str], token: str) -> Any:
    response = await world.http.post(
        "/v1/notifications/devices",
        json={"token": token, "platform": "android"},
        headers=headers,
    )
    assert response.status_code == 201, response.text
    return response.json()


async def test_a_new_customer_gets_the_welcome_email_rendered_from_the_template(
    shared_world: NotificationsWorld,
) -> None:
    world = shared_world
    customer = await world.customer()
    [row] = await world.settled(customer.id, 1)
    assert (row.event_type, row.channel, row.status) == (
        "identity.user.registered",
        "email",
        "sent",
    )
    [mail] = world.mail_to(customer.email)
    assert mail.subject == "Welcome to Paymesh"
    assert "Your account is ready" in (mail.text or "")
    assert "<p>Welcome to Paymesh! Your account is ready.</p>" in (mail.html or "")
    assert mail.message_id == f"<notification.{row.id}@paymesh.example>"
    # The API shows it to its owner, the address masked.
    listed = await world.http.get("/v1/notifications", headers=customer.headers)
    assert listed.status_code == 200, listed.text
    [item] = listed.json()["items"]
    assert item["recipient"] == f"{customer.username[0]}***@example.org"
    assert item["provider_message_id"] == mail.message_id
    # /dev/mail shows the owner their mail, and nobody else's.
    mine = await world.http.get("/dev/mail", headers=customer.headers)
    assert [view["notification_id"] for view in mine.json()] == [row.id]
    other = await world.customer()
    theirs = await world.http.get("/dev/mail", headers=other.headers)
    assert row.id not in [view["notification_id"] for view in theirs.json()]


async def test_a_password_change_goes_by_sms_and_the_status_callback_marks_it_delivered(
    shared_world: NotificationsWorld,
) -> None:
    world = shared_world
    customer = await world.customer(phone="+14155550142")
    changed = await world.http.post(
        "/v1/identity/users/me/password",
        json={"current_password": "plum-orbit-candle-42", "new_password": "plum-orbit-candle-43"},
        headers=customer.headers,
    )
    assert changed.status_code == 204, changed.text
    rows = await world.settled(customer.id, 3, frozenset({"sent", "delivered"}))

    async def sms_delivered() -> Notification | None:
        [sms] = await world.notifications(customer.id, channel="sms")
        return sms if sms.status == "delivered" else None

    sms = await eventually(sms_delivered)
    assert sms.delivered_at is not None and sms.provider_message_id is not None
    [sent] = world.sms_to("+14155550142")
    assert sent["sid"] == sms.provider_message_id
    assert "your password was changed" in sent["body"]
    # Every callback reached the service through the gateway and was accepted.
    callbacks = [c for c in world.sms.callbacks if c.params["MessageSid"] == sent["sid"]]
    assert [c.status for c in callbacks] == [204, 204]
    assert {row.channel for row in rows} == {"email", "sms"}


async def test_a_redelivered_event_sends_nothing_twice(shared_world: NotificationsWorld) -> None:
    world = shared_world
    customer = await world.customer()
    [row] = await world.settled(customer.id, 1)
    event = CloudEvent(
        id=row.event_id,
        source="/paymesh/identity",
        type="identity.user.registered",
        data={"user_id": customer.id, "roles": ["customer"]},
    )
    await world.platform.bus.publish(event)  # the inbox dedupes this one
    # ... and a delivery that slipped past the inbox (another consumer name) still
    # meets the unique (event, recipient, channel).
    notifier = world.runtime.state["notifier"]
    async with world.runtime.database.transaction() as session:
        again = await notifier.notify(
            session, event_id=event.id, event_type=event.type, data=event.data
        )
    assert [item.id for item in again] == [row.id]
    assert len(await world.notifications(customer.id)) == 1
    assert len(world.mail_to(customer.email)) == 1


async def test_preferences_filter_channels_but_never_security_messages(
    shared_world: NotificationsWorld,
) -> None:
    world = shared_world
    customer = await world.customer(phone="+14155550177")
    await world.settled(customer.id, 1)
    refused = await world.http.put(
        "/v1/notifications/preferences/me",
        json={"opted_out": {"security": ["sms"]}},
        headers=customer.headers,
    )
    assert refused.status_code == 422
    saved = await world.http.put(
        "/v1/notifications/preferences/me",
        json={"opted_out": {"money": ["email"]}},
        headers=customer.headers,
    )
    assert saved.status_code == 200, saved.text
    read = await world.http.get("/v1/notifications/preferences/me", headers=customer.headers)
    assert read.json() == {"opted_out": {"money": ["email"]}}
    await _register_device(world, customer.headers, unique("fcm-token-") + "-abcdefgh")
    await _deposit(world, customer.headers, 12_345)
    rows = await world.settled(customer.id, 2)
    deposit = [row for row in rows if row.event_type == "wallets.deposit.completed"]
    assert [row.channel for row in deposit] == ["push"]
    pushed = [
        m for m in world.push.messages if m["message"]["data"]["notification_id"] == deposit[0].id
    ]
    assert pushed[0]["message"]["notification"]["body"] == "USD 123.45 deposited."


async def test_transient_failures_are_retried_then_dead_lettered_then_replayed(
    shared_world: NotificationsWorld,
) -> None:
    world = shared_world
    customer = await world.customer(phone=None)
    await world.settled(customer.id, 1)
    await _register_device(world, customer.headers, unique("fcm-token-") + "-retrying")
    world.push.fail_next(503, count=2)  # two failures, then the third attempt goes
    wallet_id = await _deposit(world, customer.headers, 100)

    async def pushed() -> Notification | None:
        rows = await world.notifications(customer.id, channel="push")
        return rows[0] if rows and rows[0].status == "sent" else None

    row = await eventually(pushed)
    assert row.attempts == 3
    # Every attempt fails: after max_attempts (3) it is failed and dead-lettered.
    world.push.fail_next(503, count=3)
    await _deposit(world, customer.headers, 200, wallet_id)

    async def dead() -> Notification | None:
        rows = await world.notifications(customer.id, channel="push", status="failed")
        return rows[0] if rows else None

    failed = await eventually(dead)
    assert failed.attempts == 3 and failed.dead_lettered_at is not None
    assert "503" in (failed.last_error or "")
    listed = await world.http.get(
        "/v1/notifications",
        params={"user_id": customer.id, "dead_lettered": "true"},
        headers=world.staff["ops"],
    )
    assert [item["id"] for item in listed.json()["items"]] == [failed.id]
    forbidden = await world.http.post(
        f"/v1/notifications/{failed.id}/replay", headers=customer.headers
    )
    assert forbidden.status_code == 403
    replayed = await world.http.post(
        f"/v1/notifications/{failed.id}/replay", headers=world.staff["ops"]
    )
    assert replayed.status_code == 200, replayed.text
    assert replayed.json()["status"] == "queued" and replayed.json()["replays"] == 1

    async def resent() -> Notification | None:
        [row] = [r for r in await world.notifications(customer.id) if r.id == failed.id]
        return row if row.status == "sent" else None

    assert (await eventually(resent)).dead_lettered_at is None
    again = await world.http.post(
        f"/v1/notifications/{failed.id}/replay", headers=world.staff["ops"]
    )
    assert again.status_code == 409
    assert again.json()["code"] == "notification_not_replayable"


async def test_permanent_failures_fail_at_once(shared_world: NotificationsWorld) -> None:
    world = shared_world
    # The simulator refuses an unregistered device token: the device is forgotten.
    customer = await world.customer(phone="+14155550000")  # the carrier fails this one
    await _register_device(world, customer.headers, "bad-token-" + unique("x") + "-zzzzzzzz")
    await _deposit(world, customer.headers, 100)

    async def failed_push() -> Notification | None:
        rows = await world.notifications(customer.id, channel="push", status="failed")
        return rows[0] if rows else None

    row = await eventually(failed_push)
    assert row.attempts == 1 and row.provider_error_code == "UNREGISTERED"
    devices = await world.http.get("/v1/notifications/devices", headers=customer.headers)
    assert devices.json()["items"] == []
    # The carrier reports the SMS undeliverable through the status callback.
    changed = await world.http.post(
        "/v1/identity/users/me/password",
        json={"current_password": "plum-orbit-candle-42", "new_password": "plum-orbit-candle-44"},
        headers=customer.headers,
    )
    assert changed.status_code == 204

    async def sms_failed() -> Notification | None:
        rows = await world.notifications(customer.id, channel="sms", status="failed")
        return rows[0] if rows else None

    sms = await eventually(sms_failed)
    assert sms.provider_error_code == "30003" and sms.sent_at is not None


async def test_a_status_callback_with_a_bad_signature_changes_nothing(
    shared_world: NotificationsWorld,
) -> None:
    world = shared_world
    customer = await world.customer(phone="+14155550188")
    changed = await world.http.post(
        "/v1/identity/users/me/password",
        json={"current_password": "plum-orbit-candle-42", "new_password": "plum-orbit-candle-45"},
        headers=customer.headers,
    )
    assert changed.status_code == 204

    async def delivered() -> Notification | None:
        rows = await world.notifications(customer.id, channel="sms", status="delivered")
        return rows[0] if rows else None

    sms = await eventually(delivered)
    url = world.runtime.state["sms_callback"].url
    params = {"MessageSid": sms.provider_message_id, "MessageStatus": "failed", "ErrorCode": "1"}
    forged = twilio_signature(url, params, "not-the-auth-token")
    for headers in ({"x-twilio-signature": forged}, {}):
        response = await world.http.post(
            "/v1/notifications/sms/status", data=params, headers=headers
        )
        assert response.status_code == 403, response.text
        assert response.json()["code"] == "invalid_signature"
    # A genuine but replayed, out-of-order callback cannot move it back either.
    genuine = twilio_signature(url, params | {"MessageStatus": "sent"}, world.sms.auth_token)
    replay = await world.http.post(
        "/v1/notifications/sms/status",
        data=params | {"MessageStatus": "sent"},
        headers={"x-twilio-signature": genuine},
    )
    assert replay.status_code == 204
    [row] = await world.notifications(customer.id, channel="sms")
    assert row.status == "delivered" and row.provider_error_code is None


async def test_a_one_time_code_reaches_its_owner_and_nowhere_else(
    shared_world: NotificationsWorld,
) -> None:
    world = shared_world
    customer = await world.customer(phone="+14155550199")
    await world.settled(customer.id, 1)
    body = {
        "event_type": "identity.otp.issued",
        "user_id": customer.id,
        "data": {"code": "740213", "expires_in_minutes": 5},
        "channel": "sms",
        "idempotency_key": unique("otp_"),
    }
    queued = await world.http.post("/v1/notifications/messages", json=body, headers=world.service)
    assert queued.status_code == 202, queued.text
    [item] = queued.json()["notifications"]
    assert item["channel"] == "sms"
    repeated = await world.http.post("/v1/notifications/messages", json=body, headers=world.service)
    assert [n["id"] for n in repeated.json()["notifications"]] == [item["id"]]
    for caller in (customer.headers, world.staff["ops"]):
        refused = await world.http.post("/v1/notifications/messages", json=body, headers=caller)
        assert refused.status_code == 403

    async def sent() -> Notification | None:
        [row] = [r for r in await world.notifications(customer.id) if r.id == item["id"]]
        return row if row.status in ("sent", "delivered") else None

    row = await eventually(sent)
    [sms] = world.sms_to("+14155550199")
    assert "740213" in sms["body"]
    # Gone from the database once sent, and never shown by the API.
    assert (row.subject, row.text, row.html) == (None, None, None)
    for headers in (customer.headers, world.staff["ops"]):
        shown = await world.http.get(f"/v1/notifications/{row.id}", headers=headers)
        assert shown.status_code == 200
        assert "740213" not in shown.text
    # By email: the owner sees it at /dev/mail; an operator sees it withheld.
    by_email = body | {"channel": "email", "idempotency_key": unique("otp_")}
    queued = await world.http.post(
        "/v1/notifications/messages", json=by_email, headers=world.service
    )
    [email_item] = queued.json()["notifications"]

    async def mailed() -> bool:
        return any(
            v["notification_id"] == email_item["id"]
            for v in (await world.http.get("/dev/mail", headers=customer.headers)).json()
        )

    await eventually(mailed)
    owner_view = (await world.http.get("/dev/mail", headers=customer.headers)).text
    assert "740213" in owner_view
    operator_view = await world.http.get("/dev/mail", headers=world.staff["ops"])
    assert email_item["id"] in operator_view.text and "740213" not in operator_view.text
    other = await world.customer()
    assert "740213" not in (await world.http.get("/dev/mail", headers=other.headers)).text

    # Audit recorded the message's life without the code.
    async def audited() -> bool:
        records = await world.http.get(
            "/v1/audit/records",
            params={"type": "notifications.notification.sent"},
            headers=world.staff["auditor"],
        )
        return email_item["id"] in records.text

    await eventually(audited)
    everything = await world.http.get(
        "/v1/audit/export", params={"format": "jsonl"}, headers=world.staff["auditor"]
    )
    assert "740213" not in everything.text


async def test_templates_are_versioned_data_operators_edit_and_preview(
    shared_world: NotificationsWorld,
) -> None:
    world = shared_world
    ops = world.staff["ops"]
    listed = await world.http.get(
        "/v1/notifications/templates",
        params={"event_type": "identity.user.registered", "channel": "email"},
        headers=ops,
    )
    assert listed.status_code == 200, listed.text
    [template] = listed.json()["items"]
    preview = await world.http.post(
        "/v1/notifications/templates/preview",
        json={"template_id": template["id"]},
        headers=ops,
    )
    assert preview.status_code == 200 and preview.json()["subject"] == "Welcome to Paymesh"
    updated = await world.http.put(
        f"/v1/notifications/templates/{template['id']}",
        json={"subject": "Hello from Paymesh", "text": "Welcome, {{ user_id }}.", "html": None},
        headers=ops,
    )
    assert updated.status_code == 200, updated.text
    version = updated.json()["version"]
    assert version == template["version"] + 1 and updated.json()["variables"] == ["user_id"]
    customer = await world.customer()
    [row] = await world.settled(customer.id, 1)
    assert row.template_version == version
    [mail] = world.mail_to(customer.email)
    assert mail.subject == "Hello from Paymesh" and customer.id in (mail.text or "")
    versions = await world.http.get(f"/v1/notifications/templates/{template['id']}", headers=ops)
    assert [item["version"] for item in versions.json()["items"]][:2] == [version, version - 1]
    # Broken or hostile templates are refused when written, and change nothing.
    for text in ("{{ user_id ", "{% include 'x' %}", "{{ ''.__class__.__mro__ }}"):
        bad = await world.http.put(
            f"/v1/notifications/templates/{template['id']}", json={"text": text}, headers=ops
        )
        assert bad.status_code == 422, (text, bad.text)
    hostile = await world.http.post(
        "/v1/notifications/templates/preview",
        json={"content": {"text": "{{ x.__class__ }}"}, "data": {"x": 1}},
        headers=ops,
    )
    assert hostile.status_code == 422 and hostile.json()["code"] == "invalid_template"
    exists = await world.http.post(
        "/v1/notifications/templates",
        json={"event_type": "identity.user.registered", "channel": "email", "text": "x"},
        headers=ops,
    )
    assert exists.status_code == 409
    created = await world.http.post(
        "/v1/notifications/templates",
        json={
            "event_type": "identity.user.registered",
            "channel": "email",
            "locale": "pt-BR",
            "subject": "Bem-vindo",
            "text": "Olá",
        },
        headers=ops,
    )
    assert created.status_code == 201 and created.json()["version"] == 1
    customer_try = await world.http.get("/v1/notifications/templates", headers=customer.headers)
    assert customer_try.status_code == 403
    # Put the default back for the other tests.
    restored = await world.http.put(
        f"/v1/notifications/templates/{template['id']}",
        json={"subject": template["subject"], "text": template["text"], "html": template["html"]},
        headers=ops,
    )
    assert restored.status_code == 200


async def test_customers_see_only_their_own_and_hostile_input_is_refused(
    shared_world: NotificationsWorld,
) -> None:
    world = shared_world
    alice, bob = await world.customer(), await world.customer()
    [row] = await world.settled(alice.id, 1)
    assert (
        await world.http.get(f"/v1/notifications/{row.id}", headers=bob.headers)
    ).status_code == 404
    peek = await world.http.get(
        "/v1/notifications", params={"user_id": alice.id}, headers=bob.headers
    )
    assert peek.status_code == 403
    assert (await world.http.get("/v1/notifications")).status_code == 401
    for params in (
        {"limit": "0"},
        {"limit": "10000"},
        {"status": "x"},
        {"cursor": "!!"},
        {"user_id": "a b"},
    ):
        response = await world.http.get("/v1/notifications", params=params, headers=alice.headers)
        assert response.status_code == 422, (params, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
    for body in (
        {"token": "short", "platform": "android"},
        {"token": "x" * 40, "platform": "nokia"},
        {"token": "<script>" * 4, "platform": "web"},
        {"token": "x" * 40},
    ):
        response = await world.http.post(
            "/v1/notifications/devices", json=body, headers=alice.headers
        )
        assert response.status_code == 422, body
    token = unique("fcm-token-") + "-shared00"
    device = await _register_device(world, alice.headers, token)
    assert device["token"] == "…shared00"
    again = await _register_device(world, alice.headers, token)
    assert again["id"] == device["id"]
    taken = await world.http.post(
        "/v1/notifications/devices", json={"token": token, "platform": "ios"}, headers=bob.headers
    )
    assert taken.status_code == 409
    gone = await world.http.delete(f"/v1/notifications/devices/{device['id']}", headers=bob.headers)
    assert gone.status_code == 404
    async with world.runtime.database.transaction() as session:
        stored = await session.scalar(select(Device.user_id).where(Device.id == device["id"]))
    assert stored == alice.id
    removed = await world.http.delete(
        f"/v1/notifications/devices/{device['id']}", headers=alice.headers
    )
    assert removed.status_code == 204


async def test_a_message_stuck_under_a_dead_lease_is_sent_again(
    shared_world: NotificationsWorld,
) -> None:
    """A process killed mid-send leaves its lease: once it expires, another sends."""
    world = shared_world
    customer = await world.customer()
    [row] = await world.settled(customer.id, 1)
    async with world.runtime.database.transaction() as session:
        await session.execute(
            update(Notification)
            .where(Notification.id == row.id)
            .values(
                status="queued",
                sent_at=None,
                next_attempt_at=row.created_at,
                locked_until=row.created_at,
            )
        )
    world.runtime.state["dispatcher"].wake()

    async def resent() -> bool:
        return len(world.mail_to(customer.email)) == 2

    await eventually(resent)
    first, second = world.mail_to(customer.email)
    assert first.message_id == second.message_id  # the duplicate is recognisable


async def test_a_dispatch_poll_with_nothing_due_claims_through_no_transaction(
    shared_world: NotificationsWorld,
) -> None:
    """The dispatcher polls every second; a poll with nothing due asks on the direct read
    path only (kernel/db.py: any_due). A message retried later stays queued, untouched."""
    world = shared_world
    customer = await world.customer()
    [row] = await world.settled(customer.id, 1)
    later = row.created_at + dt.timedelta(hours=1)
    async with world.runtime.database.transaction() as session:
        await session.execute(
            update(Notification)
            .where(Notification.id == row.id)
            .values(status="queued", next_attempt_at=later, locked_until=None)
        )
    with engine_statements(world.runtime.database) as statements:
        assert await world.runtime.state["dispatcher"].run_once() == 0

    claims = [statement for statement in statements if statement.startswith("UPDATE notification")]
    assert claims == []
    async with world.runtime.database.transaction() as session:
        queued = await session.get(Notification, row.id)
        assert queued is not None
        assert (queued.status, queued.locked_until) == ("queued", None)


async def test_identity_issues_a_code_notifications_delivers_it_identity_verifies_it(
    shared_world: NotificationsWorld,
) -> None:
    """The whole one-time-code path: a service asks identity for a code, identity stores
    its hash and asks notifications to send it, the SMS carries it, and the code the
    customer types back verifies once. Nowhere at rest does the code remain."""
    world = shared_world
    customer = await world.customer(phone="+14155550166")
    await world.settled(customer.id, 1)
    issued = await world.http.post(
        "/v1/identity/one-time-codes",
        json={"user_id": customer.id, "purpose": "payment:pay_test1", "channel": "sms"},
        headers=world.service,
    )
    assert issued.status_code == 201, issued.text
    code_id = issued.json()["id"]

    async def texted() -> list[dict[str, Any]]:
        return world.sms_to("+14155550166")

    [sms] = await eventually(texted)
    code = "".join(ch for ch in sms["body"].split("code is ")[1] if ch.isdigit())[:6]
    assert len(code) == 6

    # The event identity wrote for audit carries no code and sends nothing by itself; the
    # one message's content is erased once its send is recorded.
    async def erased() -> bool:
        rows = await world.notifications(customer.id, event_type="identity.otp.issued")
        assert len(rows) == 1
        return rows[0].status in ("sent", "delivered") and rows[0].text is None

    await eventually(erased)
    verified = await world.http.post(
        f"/v1/identity/one-time-codes/{code_id}/verify",
        json={"code": code, "purpose": "payment:pay_test1"},
        headers=world.service,
    )
    assert verified.status_code == 200, verified.text
    again = await world.http.post(
        f"/v1/identity/one-time-codes/{code_id}/verify",
        json={"code": code},
        headers=world.service,
    )
    assert again.status_code == 409
    for service in ("identity", "notifications", "audit"):
        runtime = world.platform.runtimes[service]
        outbox = runtime.spec.tables.outbox
        async with runtime.database.transaction() as session:
            envelopes = [row.envelope for row in await session.execute(outbox.select())]
        assert code not in str(envelopes), service


async def test_every_service_s_events_reach_audit_and_the_trail_verifies(
    shared_world: NotificationsWorld,
) -> None:
    """Identity's, the ledger's, wallets' and notifications' own events, through their
    outboxes and the bus (in the relay's batches), each become one audit record."""
    world = shared_world
    customer = await world.customer()
    await _register_device(world, customer.headers, unique("fcm-token-") + "-auditing")
    await _deposit(world, customer.headers, 500)
    await world.settled(customer.id, 3)
    wanted = {"identity", "ledger", "wallets", "notifications"}

    async def audited() -> bool:
        for service in wanted:
            records = await world.http.get(
                "/v1/audit/records",
                params={"type": f"{service}.*", "limit": 1},
                headers=world.staff["auditor"],
            )
            assert records.status_code == 200, records.text
            if [record["chain"] for record in records.json()["data"]] != [service]:
                return False
        return True

    await eventually(audited)
    verified = await world.http.get("/v1/audit/verify", headers=world.staff["auditor"])
    assert verified.json()["ok"] is True, verified.text
