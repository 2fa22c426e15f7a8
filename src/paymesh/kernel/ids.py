"""Readable, time-sortable identifiers: `acc_01JD...`, `txf_01JD...`, `pay_01JD...`.

The suffix is a ULID: 48 bits of milliseconds then 80 random bits, Crockford base32, so ids
sort by creation time and index well.
"""

from __future__ import annotations

import re

from ulid import ULID

_PREFIX = re.compile(r"^[a-z][a-z0-9]{1,7}$")
ID_PATTERN = r"^[A-Za-z0-9_\-:.]{1,128}$"


def new_id(prefix: str) -> str:
    if not _PREFIX.match(prefix):
        raise ValueError(f"id prefix must be 2-8 lowercase letters or digits, got {prefix!r}")
    return f"{prefix}_{ULID()}"
