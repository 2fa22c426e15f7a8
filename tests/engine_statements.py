"""Recording the SQL a database's engine sends, for tests that a path sends none."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event

from paymesh.kernel.db import Database


@contextmanager
def engine_statements(database: Database) -> Iterator[list[str]]:
    """The statements sent through `database`'s engine (its sessions and connections) while
    the block runs. The direct read path (`database.reads`) has its own connections and is
    not seen here."""
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    engine = database.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)
