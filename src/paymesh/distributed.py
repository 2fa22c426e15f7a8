"""`paymesh up --distributed`: the distributed shape on one machine. Every service in its
own `paymesh serve` process on a port of its own, the gateway in front on the announced
port, events through the broker of `PAYMESH_BROKER_URL`, data in the database of
`PAYMESH_DATABASE_URL` (a schema per service on PostgreSQL).

Migrations run once, here, before any process starts (the processes get `--no-migrate`).
The services start first and the gateway once each answers `/health`. Ctrl-C or SIGTERM
stops every process (SIGTERM, then SIGKILL after a grace period); when any process exits on
its own, the others are stopped too and the exit code says so — a half-running platform is
not left behind.
"""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from paymesh.kernel.config import Settings
from paymesh.kernel.config.base import WILDCARD_HOSTS

GRACE_SECONDS = 15.0
START_SECONDS = 90.0


class DistributedError(Exception):
    """The shape cannot run with these settings, or a process did not come up."""


@dataclass
class Process:
    name: str
    port: int
    popen: subprocess.Popen[bytes]


@dataclass
class Launch:
    settings: Settings
    services: list[str]
    executable: Path = field(default_factory=lambda: Path(sys.executable).parent / "paymesh")
    processes: list[Process] = field(default_factory=list)
    stopping: bool = False

    def check(self) -> None:
        if not self.settings.broker_url:
            raise DistributedError(
                "set PAYMESH_BROKER_URL (amqp://, nats:// or kafka://): events between "
                "processes go through a broker"
            )
        if self.settings.port + len(self.services) > 65535:
            raise DistributedError("the port is too high for one port per service above it")

    def ports(self) -> dict[str, int]:
        return {name: self.settings.port + 1 + index for index, name in enumerate(self.services)}

    def environment(self) -> dict[str, str]:
        # Listening on every interface: the services reach each other on loopback.
        host = WILDCARD_HOSTS.get(self.settings.host, self.settings.host)
        if ":" in host:
            host = f"[{host}]"
        environment = dict(os.environ)
        # One public origin for every process: it is identity's issuer, which each service
        # checks service tokens against (each process's own address would differ).
        environment["PAYMESH_PUBLIC_URL"] = self.settings.origin
        for name, port in self.ports().items():
            environment[f"PAYMESH_{name.upper()}_URL"] = f"http://{host}:{port}"
        return environment

    def start(self, name: str, arguments: list[str], port: int) -> Process:
        popen = subprocess.Popen(  # noqa: S603 - our own executable, our own arguments
            [str(self.executable), "serve", *arguments, "--port", str(port)],
            env=self.environment(),
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # our signals reach them through `stop`, not the tty
        )
        process = Process(name, port, popen)
        self.processes.append(process)
        return process

    def wait_healthy(self, process: Process) -> None:
        url = f"http://127.0.0.1:{process.port}/health"
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline and not self.stopping:
            if process.popen.poll() is not None:
                raise DistributedError(f"{process.name} exited with {process.popen.returncode}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except (OSError, urllib.error.URLError, http.client.HTTPException):
                # Not our server yet. A probe of a port nothing listens on can even reach
                # itself (a TCP self-connect in the ephemeral range) and read its own request
                # back as the answer: BadStatusLine("GET /health HTTP/1.1"), seen in CI.
                pass
            time.sleep(0.2)
        raise DistributedError(f"{process.name} did not answer /health within {START_SECONDS} s")

    def stop(self) -> None:
        self.stopping = True
        for process in self.processes:
            if process.popen.poll() is None:
                process.popen.terminate()
        deadline = time.monotonic() + GRACE_SECONDS
        for process in self.processes:
            remaining = max(0.1, deadline - time.monotonic())
            try:
                process.popen.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                process.popen.kill()
                process.popen.wait(timeout=5)

    def run(self, announce: bool = True) -> int:
        """Start everything, then wait until a signal or a process ends; the exit code."""

        def on_signal(_signum: int, _frame: FrameType | None) -> None:
            self.stopping = True

        previous = {
            signum: signal.signal(signum, on_signal) for signum in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            # All at once (migrations are done), then each must answer.
            started = [self.start(n, [n, "--no-migrate"], p) for n, p in self.ports().items()]
            for process in started:
                self.wait_healthy(process)
            gateway = self.start("gateway", ["gateway"], self.settings.port)
            self.wait_healthy(gateway)
            if announce:
                self.announce()
            while not self.stopping:
                ended = [p for p in self.processes if p.popen.poll() is not None]
                if ended:
                    names = ", ".join(f"{p.name} ({p.popen.returncode})" for p in ended)
                    print(f"stopping everything: {names} exited", file=sys.stderr)
                    return 1
                time.sleep(0.2)
            return 0
        except DistributedError as error:
            print(f"paymesh up --distributed: {error}", file=sys.stderr)
            return 1
        finally:
            self.stop()
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def announce(self) -> None:
        lines = [f"  {p.name:<14} pid {p.popen.pid:<8} port {p.port}" for p in self.processes]
        print(
            f"Paymesh, distributed: {len(self.processes)} processes, gateway on "
            f"{self.settings.origin}\n" + "\n".join(lines) + "\nCtrl-C stops them all",
            file=sys.stderr,
            flush=True,
        )
