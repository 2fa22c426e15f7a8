"""`paymesh serve kyc-simulator` and `bank-simulator`: simulators as processes of their own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.profiles.support import loopback_socket

pytestmark = pytest.mark.slow

PAYMESH = Path(sys.executable).parent / "paymesh"


@contextmanager
def served_alone(simulator: str, directory: Path, **settings: str) -> Iterator[str]:
    """`paymesh serve SIMULATOR` as its own process, with only `settings` of ours; its
    base URL once /health answers. Stopped with SIGINT, which must end it cleanly."""
    probe = loopback_socket()
    port = probe.getsockname()[1]
    probe.close()
    env = {key: value for key, value in os.environ.items() if not key.startswith("PAYMESH_")}
    env |= {"PAYMESH_DATA_DIR": str(directory), **settings}
    process = subprocess.Popen(
        [str(PAYMESH), "serve", simulator, "--port", str(port)],
        cwd=directory,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "the simulator did not start"
            time.sleep(0.2)
        yield base
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=15) == 0


def test_serve_kyc_simulator(tmp_path: Path) -> None:
    with served_alone(
        "kyc-simulator", tmp_path, PAYMESH_PROVIDERS_KYC_API_KEY="vendor-key"
    ) as base:
        refused = httpx.post(f"{base}/v1/checks", json={}, headers={"authorization": "Bearer x"})
        missing = httpx.get(
            f"{base}/v1/checks/vck_x", headers={"authorization": "Bearer vendor-key"}
        )
        empty = httpx.post(
            f"{base}/v1/checks", json={}, headers={"authorization": "Bearer vendor-key"}
        )
        assert refused.status_code == 401  # the key is checked before the body
        assert empty.status_code == 422
        assert missing.status_code == 404
        # No service runs there: the simulator makes no database.
        assert list(tmp_path.glob("*.db")) == []


def test_serve_bank_simulator(tmp_path: Path) -> None:
    with served_alone("bank-simulator", tmp_path) as base:
        known = httpx.get(f"{base}/accounts/DE89370400440532013000")
        unknown = httpx.get(f"{base}/accounts/DE45370400440532010009")
        invalid = httpx.post(
            f"{base}/pacs008", content=b"<Document/>", headers={"content-type": "application/xml"}
        )
        assert known.status_code == 200 and known.json()["name"] == "Lena Fischer"
        assert unknown.status_code == 404
        # Not a pacs.008: answered with a pacs.002 rejecting it as invalid (FF01).
        assert invalid.status_code == 200
        assert b"<TxSts>RJCT</TxSts>" in invalid.content and b"FF01" in invalid.content
        assert list(tmp_path.glob("*.db")) == []
