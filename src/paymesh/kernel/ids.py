"""Readable, time-sortable identifiers: `acc_01JD...`, `txf_01JD...`, `pay_01JD...`.

The suffix is a ULID (48 bits of milliseconds, then 80 random bits, Crockford base32), so
ids sort by creation time and index well. `python-ulid` defines the format; ids are made
here, two digits per table look-up, because the ledger makes one per event and the
library's pure-Python encoding cost more than the rest of an event together (so did the
standard library's base32 encoder, pure Python too on 3.11).

The random bits come from the operating system's CSPRNG (`os.urandom`), drawn 4 KiB at a
time rather than ten bytes per id: `os.urandom` releases the GIL for its system call, and
on a busy server (the token endpoint's signing threads) getting it back cost 30 us per id,
ten times the rest of the id (bench/kernel, py-spy). A forked child starts a new draw, so
parent and child never hand out the same bytes.
"""

from __future__ import annotations

import os
import re
import threading
import time
from functools import lru_cache

from ulid import ULID

_PREFIX = re.compile(r"^[a-z][a-z0-9]{1,7}$")
ID_PATTERN = r"^[A-Za-z0-9_\-:.]{1,128}$"
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_DIGIT_PAIRS = tuple(first + second for first in _CROCKFORD for second in _CROCKFORD)
_PAIR_SHIFTS = tuple(range(120, -1, -10))  # 13 pairs of 5-bit digits: 130 bits, MSB first


def ulid_text(milliseconds: int, randomness: bytes) -> str:
    """The 26-character ULID for a timestamp and 10 random bytes: the 128-bit value (two
    leading zero bits make 130) written ten bits, two Crockford digits, at a time."""
    value = (milliseconds << 80) | int.from_bytes(randomness, "big")
    pairs = _DIGIT_PAIRS
    return "".join([pairs[(value >> shift) & 1023] for shift in _PAIR_SHIFTS])


RANDOM_DRAW_BYTES = 4096
"""Bytes taken from `os.urandom` at a time; each is handed out once."""


class _RandomBytes:
    """A CSPRNG's output handed out in small pieces, each byte once, safe across threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._draw = b""
        self._used = 0

    def take(self, count: int) -> bytes:
        with self._lock:
            start = self._used
            if start + count > len(self._draw):
                self._draw = os.urandom(max(RANDOM_DRAW_BYTES, count))
                start = 0
            self._used = start + count
            return self._draw[start : start + count]

    def forget(self) -> None:
        """Drop what is left (a forked child must not reuse its parent's bytes)."""
        self._lock = threading.Lock()
        self._draw = b""
        self._used = 0


_random = _RandomBytes()
os.register_at_fork(after_in_child=_random.forget)


def random_bytes(count: int) -> bytes:
    """`count` bytes from the operating system's CSPRNG, never handed out twice."""
    return _random.take(count)


@lru_cache(maxsize=64)
def _checked(prefix: str) -> str:
    if not _PREFIX.match(prefix):
        raise ValueError(f"id prefix must be 2-8 lowercase letters or digits, got {prefix!r}")
    return prefix + "_"


def new_id(prefix: str) -> str:
    return _checked(prefix) + ulid_text(time.time_ns() // 1_000_000, _random.take(10))


def parse_ulid(text: str) -> ULID:
    """The ULID in an id's suffix (raises ValueError when it is not one)."""
    return ULID.from_str(text.rsplit("_", 1)[-1])
