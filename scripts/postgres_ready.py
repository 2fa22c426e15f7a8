"""Exit 0 when PostgreSQL at PAYMESH_TEST_POSTGRES_URL (or argv[1]) accepts a connection.

Used by `make test` to decide whether the PostgreSQL pass can run.
"""

from __future__ import annotations

import asyncio
import os
import sys

import asyncpg

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


async def probe(url: str) -> None:
    connection = await asyncpg.connect(url, timeout=5)
    await connection.close()


def main() -> int:
    url = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("PAYMESH_TEST_POSTGRES_URL", "")
    url = (url or DEFAULT_URL).replace("postgresql+asyncpg://", "postgresql://", 1)
    try:
        asyncio.run(probe(url))
    except (OSError, TimeoutError, asyncpg.PostgresError) as error:
        print(f"PostgreSQL at {url} is not reachable: {error!r}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
