"""`/dev/mail`: what the local mail catcher caught, for demos and development (never in
production, and only where no SMTP server is configured).

Each caller sees the mail sent to them (matched through the Message-ID every notification
carries); `ops` and `admin` see everyone's, but never the content of a security message:
a one-time code is shown to no one but its owner.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import select

from paymesh.kernel.app import service_router
from paymesh.kernel.auth import Caller, current_caller
from paymesh.kernel.errors import problem_responses
from paymesh.kernel.routing import SessionDep
from paymesh.notifications import errors
from paymesh.notifications.models import Notification
from paymesh.notifications.service import is_security
from paymesh.notifications.simulators import MailCatcher

router = service_router(prefix="/dev/mail", tags=["notifications"])

_NOTIFICATION_ID = re.compile(r"^<notification\.([A-Za-z0-9_.\-]{1,128})@")
WITHHELD = "[withheld: a security message is shown only to its recipient]"


def notification_id_of(message_id: str | None) -> str | None:
    found = _NOTIFICATION_ID.match(message_id or "")
    return found.group(1) if found else None


@router.get("", responses=problem_responses(errors.MailCatcherOff))
async def caught_mail(
    request: Request,
    session: SessionDep,
    caller: Annotated[Caller, Depends(current_caller)],
) -> list[dict[str, Any]]:
    """The mail the local catcher received for you, newest first."""
    catcher: MailCatcher | None = request.app.state.runtime.state.get("mail_catcher")
    if catcher is None:
        raise errors.MailCatcherOff()
    mails = list(reversed(catcher.messages))
    ids = {notification_id_of(mail.message_id) for mail in mails} - {None}
    owners = {
        row.id: row
        for row in (
            await session.execute(
                select(Notification.id, Notification.user_id, Notification.category).where(
                    Notification.id.in_(ids)
                )
            )
        ).all()
    }
    operator = bool(caller.roles & {"ops", "admin"})
    shown: list[dict[str, Any]] = []
    for mail in mails:
        owner = owners.get(notification_id_of(mail.message_id) or "")
        if owner is None:
            continue
        view = mail.view()
        view["notification_id"] = owner.id
        if owner.user_id == caller.subject:
            shown.append(view)
        elif operator:
            if is_security(owner.category):
                view.update(subject=WITHHELD, text=WITHHELD, html=None)
            shown.append(view)
    return shown
