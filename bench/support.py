"""What the benchmarks under bench/ share: process supervision, CPU time from /proc, and
reading wrk's output. Each `bench/*/run.py` puts this directory on `sys.path` and imports
it as `support`."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import suppress
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


# --- processes ------------------------------------------------------------------------------


class Supervisor:
    """Every process a benchmark starts, each in its own process group, stopped on exit,
    error, Ctrl-C or SIGTERM."""

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(
        self, args: list[str], *, output: IO[bytes] | int, **options: Any
    ) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **options,
        )
        self.processes.append(process)
        return process

    def stop(self, process: subprocess.Popen[bytes], timeout_seconds: float = 30) -> None:
        if process.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout_seconds)
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        with suppress(ProcessLookupError):  # anything it left behind in its group
            os.killpg(process.pid, signal.SIGKILL)
        if process in self.processes:
            self.processes.remove(process)

    def stop_all(self) -> None:
        for process in reversed(list(self.processes)):
            self.stop(process, timeout_seconds=10)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_ready(
    process: subprocess.Popen[bytes], url: str, log: Path, timeout_seconds: float = 120
) -> None:
    """Until `url` answers (any status a urlopen accepts), or the process exits."""
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}:\n{tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(
        f"{process.args!r} did not answer {url} in {timeout_seconds:g} s:\n{tail(log)}"
    )


def stop_on_sigterm(signum: int, _frame: object) -> None:
    """A SIGTERM handler that unwinds through the benchmark's cleanup."""
    raise SystemExit(128 + signum)


def commit() -> str | None:
    """`git describe` of the tree measured (`-dirty` with uncommitted changes)."""
    with suppress(OSError, subprocess.CalledProcessError):
        return subprocess.run(
            ["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    return None


# --- CPU time from /proc ------------------------------------------------------------------


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of one process, or None when it is gone (or not on this machine)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # fields after the command name
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_SECOND


def process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with suppress(OSError, ValueError, IndexError):
                stat = (entry / "stat").read_text()
                parent = int(stat[stat.rindex(")") + 2 :].split()[1])
                children.setdefault(parent, []).append(int(entry.name))
    tree, queue = [], [root]
    while queue:
        pid = queue.pop()
        tree.append(pid)
        queue.extend(children.get(pid, []))
    return tree


def tree_cpu_seconds(root: int) -> float:
    return sum(cpu for pid in process_tree(root) if (cpu := cpu_seconds(pid)) is not None)


def cpu_snapshot(pids: list[int]) -> dict[int, float]:
    return {pid: cpu for pid in pids if (cpu := cpu_seconds(pid)) is not None}


def cpu_used(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds between two snapshots; a process that appeared in between counts whole."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


# --- wrk ----------------------------------------------------------------------------------


def duration_ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(us|ms|s|m|h)$", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1e3, "m": 6e4, "h": 3.6e6}[unit]


def parse_wrk(out: str) -> dict[str, Any]:
    """Requests, rate, p50/p99 (ms), errors from `wrk --latency`'s output; `first refusal:`
    lines a Lua script printed, if any."""
    requests = re.search(r"(\d+) requests in", out)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    percentiles = dict(re.findall(r"^\s+(50|99)(?:\.0+)?%\s+(\S+)\s*$", out, re.MULTILINE))
    if requests is None or rate is None or "50" not in percentiles or "99" not in percentiles:
        raise RuntimeError(f"could not read wrk's output:\n{out}")
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    return {
        "requests": int(requests.group(1)),
        "requests_per_second": float(rate.group(1)),
        "latency_ms_p50": duration_ms(percentiles["50"]),
        "latency_ms_p99": duration_ms(percentiles["99"]),
        "non_2xx": int(errors.group(1)) if errors else 0,
        "socket_errors": sum(int(n) for n in sockets.groups()) if sockets else 0,
        "first_refusals": re.findall(r"^first refusal: (.*)$", out, re.MULTILINE),
    }


# --- identity --------------------------------------------------------------------------------


def create_client(
    supervisor: Supervisor, env: dict[str, str], work: Path, name: str, options: list[str]
) -> tuple[str, str]:
    """(client id, secret) of a confidential client-credentials client of tier `unlimited`
    (the benchmark's one client must not be its own bottleneck), made with `paymesh identity
    create-client` and `options` (`--role service`, `--scope ...`)."""

    log = work / f"create-client-{name}.log"
    with log.open("wb") as output:
        process = supervisor.start(
            [
                str(Path(sys.executable).parent / "paymesh"),
                "identity",
                "create-client",
                "--name",
                name,
                "--grant",
                "client_credentials",
                "--confidential",
                *options,
                "--rate-limit-tier",
                "unlimited",
                "--json",
            ],
            output=output,
            env=env,
            cwd=work,
        )
    process.wait(timeout=300)
    supervisor.stop(process)
    text = log.read_text(errors="replace")
    if process.returncode != 0:
        raise RuntimeError(f"paymesh identity create-client failed:\n{text}")
    client = json.loads(text[text.index("{") :])
    return str(client["client_id"]), str(client["client_secret"])
