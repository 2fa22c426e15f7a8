"""Keyset cursors for lists ordered by (created_at, id): what every service's `next_cursor`
is. Opaque to clients; a cursor that is not one of ours is 422 `invalid_cursor`."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

from paymesh.kernel.errors import PaymeshError
from paymesh.kernel.jsonutil import dumps, strict_loads


class InvalidCursor(PaymeshError):
    code = "invalid_cursor"
    status = 422
    title = "The cursor is not one this API returned"


def encode_cursor(created_at: dt.datetime, last_id: str) -> str:
    """The cursor after the row (`created_at`, `last_id`)."""
    return base64.urlsafe_b64encode(dumps([created_at.isoformat(), last_id])).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[dt.datetime, str]:
    """(created_at, id) of the last row already returned; `InvalidCursor` otherwise."""
    try:
        values: Any = strict_loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        created, last_id = values
        instant = dt.datetime.fromisoformat(created)
    except (ValueError, TypeError, OverflowError):
        raise InvalidCursor() from None
    if instant.tzinfo is None or not isinstance(last_id, str) or not last_id:
        raise InvalidCursor()
    return instant.astimezone(dt.UTC), last_id
