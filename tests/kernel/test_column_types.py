"""The column types' value processing: UTCDateTime's one-step SQLite text and the JSON
columns' orjson text give what SQLAlchemy's own processors and the standard library's
encoder gave, so rows written before and after compare, sort and read back alike."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Column, MetaData, String, Table, select
from sqlalchemy.dialects import postgresql, sqlite

from paymesh.kernel.db import JSON_TYPE, Database, UTCDateTime
from paymesh.kernel.jsonutil import column_dumps, recordset_dumps
from tests import strategies
from tests.kernel.support import database_with

aware_datetimes = st.datetimes(
    min_value=dt.datetime(1, 1, 2),
    max_value=dt.datetime(9999, 12, 30),
    timezones=st.sampled_from(
        [
            dt.UTC,
            dt.timezone(dt.timedelta(hours=5, minutes=45)),
            dt.timezone(dt.timedelta(hours=-11)),
        ]
    ),
)


class TestSqliteDateTimeText:
    @given(aware_datetimes)
    def test_the_text_is_sqlalchemys_for_the_same_utc_moment(self, moment: dt.datetime) -> None:
        dialect = sqlite.dialect()
        theirs = sqlite.DATETIME().bind_processor(dialect)
        assert theirs is not None
        expected = theirs(moment.astimezone(dt.UTC).replace(tzinfo=None))
        ours = UTCDateTime().bind_processor(dialect)
        assert ours is not None
        assert ours(moment) == expected
        assert len(expected) == 26  # always six fractional digits: text order is time order

    def test_a_naive_datetime_is_refused(self) -> None:
        ours = UTCDateTime().bind_processor(sqlite.dialect())
        assert ours is not None
        with pytest.raises(ValueError, match="naive"):
            ours(dt.datetime(2026, 12, 7, 3, 0))

    def test_none_stays_none(self) -> None:
        ours = UTCDateTime().bind_processor(sqlite.dialect())
        assert ours is not None and ours(None) is None

    def test_postgresql_keeps_an_aware_datetime(self) -> None:
        ours = UTCDateTime().bind_processor(postgresql.asyncpg.dialect())
        moment = dt.datetime(2026, 12, 7, 9, 0, tzinfo=dt.timezone(dt.timedelta(hours=6)))
        bound = ours(moment) if ours is not None else moment
        assert bound == moment and bound.utcoffset() == dt.timedelta(0)


json_values = strategies.json_values(integer_bits=100)


class TestJsonColumnText:
    @given(json_values)
    def test_any_json_value_reads_back_as_written(self, value: Any) -> None:
        assert json.loads(column_dumps(value)) == value  # columns are read with json.loads

    def test_what_orjson_refuses_is_the_standard_librarys_text(self) -> None:
        for value in ({"big": 2**80}, {"name": "\ud800"}):
            assert column_dumps(value) == json.dumps(value)
            assert json.loads(column_dumps(value)) == value

    def test_integer_keys_become_strings_as_before(self) -> None:
        assert json.loads(column_dumps({1: "a"})) == json.loads(json.dumps({1: "a"}))


class TestRecordsetText:
    """`recordset_dumps`: a batch's rows as one JSON parameter for json_to_recordset."""

    @given(st.lists(st.fixed_dictionaries({"value": json_values, "at": aware_datetimes})))
    def test_rows_read_back_with_their_instants(self, rows: list[dict[str, Any]]) -> None:
        read = json.loads(recordset_dumps(rows))
        assert [row["value"] for row in read] == [row["value"] for row in rows]
        assert [dt.datetime.fromisoformat(row["at"]) for row in read] == [row["at"] for row in rows]

    def test_what_orjson_refuses_keeps_its_instants(self) -> None:
        moment = dt.datetime(2026, 12, 7, 9, 0, tzinfo=dt.timezone(dt.timedelta(hours=6)))
        (read,) = json.loads(recordset_dumps([{"big": 2**80, "at": moment}]))
        assert read["big"] == 2**80
        assert dt.datetime.fromisoformat(read["at"]) == moment

    def test_anything_else_is_refused(self) -> None:
        with pytest.raises(TypeError):
            recordset_dumps([{"big": 2**80, "what": object()}])


metadata = MetaData()
documents = Table(
    "column_type_probe",
    metadata,
    Column("id", String(8), primary_key=True),
    Column("document", JSON_TYPE, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)


async def test_values_round_trip_through_the_database(make_platform: Callable[..., Any]) -> None:
    """On SQLite and on PostgreSQL (JSONB): integers beyond and just past 64 bits, text
    beyond the BMP, an instant given in another offset."""
    database: Database = await database_with(make_platform, metadata)
    document = {"big": 2**80, "text": "Zoë ✓ 𝄞", "nested": [{"n": -(2**63) - 1}, None, 1.5]}
    moment = dt.datetime(2026, 12, 7, 9, 30, 1, 5, tzinfo=dt.timezone(dt.timedelta(hours=6)))
    async with database.transaction() as session:
        await session.execute(
            documents.insert(), {"id": "d1", "document": document, "created_at": moment}
        )
    async with database.transaction(read_only=True) as session:
        row = (await session.execute(select(documents))).one()
        earlier = (
            await session.execute(
                select(documents.c.id).where(
                    documents.c.created_at < moment + dt.timedelta(0, 0, 1)
                )
            )
        ).all()
    assert row.document == document
    assert row.created_at == moment and row.created_at.tzinfo == dt.UTC
    assert [found.id for found in earlier] == ["d1"]
