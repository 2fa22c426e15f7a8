"""The OANDA-style rates simulator behind uvicorn on a loopback port, in the test's loop."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Mapping

import uvicorn

from paymesh.forex.simulator import RatesSimulator

KEY = "test-simulator-key"


@contextlib.asynccontextmanager
async def serving(
    rates: Mapping[str, str] | None = None, key: str = KEY
) -> AsyncIterator[tuple[str, RatesSimulator]]:
    """(base URL, simulator) while the simulator serves real HTTP."""
    simulator = RatesSimulator(key, rates)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            simulator.app(),
            log_config=None,
            access_log=False,
            lifespan="off",
            # in the test's loop: see tests/profiles/support.py serving()
            timeout_keep_alive=600,
        )
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    for _ in range(500):  # up to 5 s
        if server.started or task.done():
            break
        await asyncio.sleep(0.01)
    assert server.started, "the rates simulator did not start"
    try:
        yield f"http://127.0.0.1:{port}", simulator
    finally:
        server.should_exit = True
        await task
        sock.close()


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
