"""Readable, unique, time-sortable ids."""

from __future__ import annotations

import re
import time

import pytest

from paymesh.kernel.ids import ID_PATTERN, new_id

ULID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")


class TestNewId:
    def test_has_the_prefix_and_a_ulid(self) -> None:
        value = new_id("acc")

        prefix, suffix = value.split("_")
        assert prefix == "acc"
        assert ULID.match(suffix)
        assert re.match(ID_PATTERN, value)

    def test_ids_are_unique(self) -> None:
        ids = [new_id("txf") for _ in range(10_000)]

        assert len(set(ids)) == len(ids)

    def test_ids_made_in_sequence_sort_in_creation_order(self) -> None:
        ids = []
        for _ in range(20):
            ids.append(new_id("pay"))
            time.sleep(0.002)  # the time part has millisecond resolution

        assert sorted(ids) == ids

    @pytest.mark.parametrize("prefix", ["", "a", "Acc", "acc_", "toolongprefix", "9ac", "ac-c"])
    def test_refuses_a_bad_prefix(self, prefix: str) -> None:
        with pytest.raises(ValueError, match="prefix"):
            new_id(prefix)


class TestUlidEncoding:
    def test_matches_the_reference_implementation(self) -> None:
        import os

        from ulid import ULID

        from paymesh.kernel.ids import ulid_text

        for milliseconds in (0, 1, 1_700_000_000_000, 2**48 - 1):
            for randomness in (bytes(10), b"\xff" * 10, os.urandom(10)):
                reference = ULID.from_bytes(milliseconds.to_bytes(6, "big") + randomness)
                assert ulid_text(milliseconds, randomness) == str(reference)

    def test_new_id_suffix_parses_as_a_ulid_with_the_current_time(self) -> None:
        import time

        from paymesh.kernel.ids import new_id, parse_ulid

        before = time.time()
        parsed = parse_ulid(new_id("evt"))
        assert before - 1 <= parsed.timestamp <= time.time() + 1
