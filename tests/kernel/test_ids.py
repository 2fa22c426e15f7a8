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
