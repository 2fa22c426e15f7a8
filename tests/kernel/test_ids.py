"""Readable, unique, time-sortable ids."""

from __future__ import annotations

import os
import re
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from paymesh.kernel import ids
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


class TestRandomBytes:
    def test_each_byte_is_handed_out_once_across_draws(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        draws: list[bytes] = []
        system_urandom = os.urandom

        def recording_urandom(count: int) -> bytes:
            draws.append(system_urandom(count))
            return draws[-1]

        source = ids._RandomBytes()
        monkeypatch.setattr(ids, "RANDOM_DRAW_BYTES", 64)
        monkeypatch.setattr(ids.os, "urandom", recording_urandom)
        pieces = [source.take(10) for _ in range(13)]  # 6 per draw of 64, then a new draw

        assert len(draws) == 3
        assert pieces[0] == draws[0][0:10]
        assert pieces[5] == draws[0][50:60]
        assert pieces[6] == draws[1][0:10]  # the 4 bytes left over are not stitched in
        assert pieces[12] == draws[2][0:10]

    def test_a_piece_larger_than_a_draw_is_drawn_whole(self) -> None:
        source = ids._RandomBytes()

        assert len(source.take(ids.RANDOM_DRAW_BYTES + 5)) == ids.RANDOM_DRAW_BYTES + 5

    def test_threads_never_get_the_same_bytes(self) -> None:
        with ThreadPoolExecutor(4) as pool:
            pieces = list(pool.map(lambda _: ids.random_bytes(10), range(20_000)))

        assert len(set(pieces)) == len(pieces)

    @pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
    def test_a_forked_child_does_not_reuse_its_parents_bytes(self) -> None:
        ids.random_bytes(10)  # the parent holds a draw with bytes left in it
        reader, writer = os.pipe()
        child = os.fork()
        if child == 0:  # pragma: no cover - runs in the child
            os.close(reader)
            os.write(writer, b"".join(ids.random_bytes(10) for _ in range(50)))
            os._exit(0)
        os.close(writer)
        with os.fdopen(reader, "rb") as pipe:
            childs = pipe.read()
        os.waitpid(child, 0)
        parents = b"".join(ids.random_bytes(10) for _ in range(50))

        assert len(childs) == 500
        assert childs != parents
        assert not {childs[i : i + 10] for i in range(0, 500, 10)} & {
            parents[i : i + 10] for i in range(0, 500, 10)
        }
