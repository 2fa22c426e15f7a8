"""Kernel benchmark (issue 8): the cost of one request on the ordinary route path
(FastAPI route -> auth -> unit of work -> SQLAlchemy -> Pydantic -> JSON), measured in one
run beside two references: `GET /health` (no auth, no database) on the same server, and
oidc-provider (npm) for the token endpoint.

Run with `make bench` (or `.venv/bin/python bench/kernel/run.py`). Starts `paymesh up
--demo` on SQLite, then on PostgreSQL (database `paymesh_bench_kernel`, recreated), and
oidc-provider from bench/kernel/oidc (`npm ci` on first use); drives each with wrk and
reads the servers' CPU time from /proc/<pid>/stat before and after. Prints a table and one
JSON line; the JSON is also written to bench/results/kernel-<timestamp>.json. Every process
it starts is stopped on exit, on error and on Ctrl-C.

Knobs: PAYMESH_BENCH_SECONDS (10), PAYMESH_BENCH_CONNECTIONS (8),
PAYMESH_BENCH_WARMUP_SECONDS (1), PAYMESH_BENCH_POSTGRES_URL.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench/: support.py
from support import (
    Supervisor,
    commit,
    cpu_snapshot,
    cpu_used,
    free_port,
    parse_wrk,
    process_tree,
    stop_on_sigterm,
    wait_ready,
)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
BIN = Path(sys.executable).parent
OIDC_DIR = HERE / "oidc"
ADMIN_URL = os.environ.get("PAYMESH_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432")
DATABASE = "paymesh_bench_kernel"
SECONDS = int(os.environ.get("PAYMESH_BENCH_SECONDS", "10"))
CONNECTIONS = int(os.environ.get("PAYMESH_BENCH_CONNECTIONS", "8"))
WARMUP_SECONDS = int(os.environ.get("PAYMESH_BENCH_WARMUP_SECONDS", "1"))
THREADS = min(2, CONNECTIONS)
SIGNING_SECRET = secrets.token_urlsafe(32)  # the servers' and `paymesh token`'s, per run

ACCOUNT_PATH = "/v1/ledger/accounts/demo_alice_usd"  # ledger/demo.py seeds it
TRIAL_BALANCE_PATH = "/v1/ledger/trial-balance"
# identity/demo.py: `demo-reporting`, a confidential client_credentials service account.
CLIENT_ID, CLIENT_SECRET, SCOPE = "demo-reporting", "demo-reporting-secret", "ledger:read"
OIDC_CLIENT_ID, OIDC_CLIENT_SECRET = "bench", secrets.token_urlsafe(24)

# Issue 8's measurements before the work (2-core machine, 8 connections): the read target
# is three times these.
BEFORE_REQUESTS_PER_SECOND = {"account_read_sqlite": 491.0, "account_read_postgres": 863.0}


@dataclass(frozen=True)
class Target:
    server_cpu_ms: float | None = None
    p99_ms: float | None = None
    requests_per_second: float | None = None
    ratio: float | None = None

    def describe(self) -> str:
        parts = []
        if self.ratio is not None:
            parts.append(f">= {self.ratio} x oidc")
        if self.requests_per_second is not None:
            parts.append(f">= {self.requests_per_second:,.0f}/s")
        if self.p99_ms is not None:
            parts.append(f"p99 <= {self.p99_ms:g} ms")
        if self.server_cpu_ms is not None:
            parts.append(f"cpu <= {self.server_cpu_ms} ms")
        return ", ".join(parts)

    def met(self, row: dict[str, Any], ratio: float) -> bool:
        checks = [
            row["non_2xx"] == 0 and row["socket_errors"] == 0,
            self.ratio is None or ratio >= self.ratio,
            self.requests_per_second is None
            or row["requests_per_second"] >= self.requests_per_second,
            self.p99_ms is None or row["latency_ms_p99"] <= self.p99_ms,
            self.server_cpu_ms is None or row["server_cpu_ms_per_request"] <= self.server_cpu_ms,
        ]
        return all(checks)


TARGETS = {
    name: Target(server_cpu_ms=0.4, p99_ms=20.0, requests_per_second=3 * before)
    for name, before in BEFORE_REQUESTS_PER_SECOND.items()
} | {
    "token_paymesh_sqlite": Target(ratio=0.5, p99_ms=25.0),
    "token_paymesh_postgres": Target(ratio=0.5, p99_ms=25.0),
    "account_create_sqlite": Target(p99_ms=50.0),
    # Reads must not queue behind writes: each side keeps its own latency target.
    "mixed_sqlite_read": Target(p99_ms=20.0),
    "mixed_sqlite_write": Target(p99_ms=50.0),
}


# --- servers ----------------------------------------------------------------------------------


@dataclass
class Server:
    port: int
    process: subprocess.Popen[bytes]
    database_pids: Callable[[], list[int]] | None = None

    def server_pids(self) -> list[int]:
        return process_tree(self.process.pid)


def paymesh_env(data_dir: Path, database_url: str | None) -> dict[str, str]:
    """The caller's environment without its PAYMESH_ settings (and the servers run in a
    scratch directory, so no .env is read): every run measures the same configuration."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("PAYMESH_") or name.startswith("PAYMESH_BENCH_")
    }
    env |= {
        "PAYMESH_ENV": "development",
        "PAYMESH_SIGNING_SECRET": SIGNING_SECRET,
        "PAYMESH_ACCESS_LOG": "false",
        # The ordinary route path is measured here (through the gateway's routing and
        # token check); bench/gateway measures the gateway with its rate limits on. A
        # million-request run from one client would be refused by any tier but unlimited.
        "PAYMESH_GATEWAY_RATE_LIMITS": "false",
        "PAYMESH_LOG_LEVEL": "WARNING",
        "PAYMESH_HOST": "127.0.0.1",
        "PAYMESH_DATA_DIR": str(data_dir),
    }
    if database_url:
        env["PAYMESH_DATABASE_URL"] = database_url
    return env


@contextmanager
def paymesh_up(supervisor: Supervisor, work: Path, env: dict[str, str]) -> Iterator[Server]:
    """`paymesh up --demo`: every service in one process, demo data loaded."""
    port = free_port()
    log = work / f"paymesh-{port}.log"
    with log.open("wb") as output:
        process = supervisor.start(
            [str(BIN / "paymesh"), "up", "--demo", "--port", str(port)],
            output=output,
            env=env,
            cwd=work,
        )
    try:
        wait_ready(process, f"http://127.0.0.1:{port}/health", log)
        yield Server(port, process)
    finally:
        supervisor.stop(process)


def mint_token(env: dict[str, str], work: Path) -> str:
    """A development token (HS256, the servers' signing secret) for the finance role."""
    return subprocess.run(
        [
            str(BIN / "paymesh"),
            "token",
            "--subject",
            "bench",
            "--role",
            "finance",
            "--ttl-seconds",
            str(3600 + 40 * (SECONDS + WARMUP_SECONDS)),
        ],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        cwd=work,
    ).stdout.strip()


def ensure_oidc_provider() -> None:
    """`npm ci` in bench/kernel/oidc when node_modules is missing or older than the lock."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        sys.exit("node (>= 20) and npm are needed for the oidc-provider comparison")
    stamp = OIDC_DIR / "node_modules" / ".installed"
    lock = OIDC_DIR / "package-lock.json"
    if stamp.exists() and stamp.stat().st_mtime >= lock.stat().st_mtime:
        return
    subprocess.run(
        ["npm", "ci", "--prefix", str(OIDC_DIR), "--no-audit", "--no-fund", "--loglevel=error"],
        check=True,
    )
    stamp.touch()


@contextmanager
def oidc_provider(supervisor: Supervisor, work: Path) -> Iterator[Server]:
    port = free_port()
    log = work / f"oidc-provider-{port}.log"
    with log.open("wb") as output:
        process = supervisor.start(
            ["node", "server.mjs", str(port), OIDC_CLIENT_ID, OIDC_CLIENT_SECRET],
            output=output,
            env={**os.environ, "NODE_ENV": "production"},
            cwd=OIDC_DIR,
        )
    try:
        wait_ready(process, f"http://127.0.0.1:{port}/.well-known/openid-configuration", log)
        yield Server(port, process)
    finally:
        supervisor.stop(process)


def psql(sql: str, database: str = "postgres") -> str:
    return subprocess.run(
        ["psql", f"{ADMIN_URL}/{database}", "-v", "ON_ERROR_STOP=1", "-qAtc", sql],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def recreate_database() -> None:
    psql(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
    psql(f'CREATE DATABASE "{DATABASE}"')


def database_backends() -> list[int]:
    """PostgreSQL backends connected to the benchmark database (their CPU is readable when
    PostgreSQL runs on this machine)."""
    out = psql(f"SELECT pid FROM pg_stat_activity WHERE datname = '{DATABASE}'")
    return [int(line) for line in out.split()]


# --- load -------------------------------------------------------------------------------------


@dataclass
class Load:
    """One wrk process: a lua script from this folder and the environment it reads."""

    script: str
    env: dict[str, str] = field(default_factory=dict)
    connections: int = CONNECTIONS
    threads: int = THREADS

    def command(self, port: int, seconds: int) -> list[str]:
        return [
            "wrk",
            f"-t{self.threads}",
            f"-c{self.connections}",
            f"-d{seconds}s",
            "--latency",
            "--timeout",
            "10s",
            "-s",
            str(HERE / self.script),
            f"http://127.0.0.1:{port}",
        ]


def read_load(path: str, token: str = "", connections: int = CONNECTIONS) -> Load:
    threads = min(THREADS, connections)
    return Load("get.lua", {"BENCH_PATH": path, "TOKEN": token}, connections, threads)


def token_load(path: str, client_id: str, client_secret: str) -> Load:
    basic = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()
    return Load("token.lua", {"BENCH_PATH": path, "BASIC": basic, "SCOPE": SCOPE})


def write_load(token: str, connections: int = CONNECTIONS) -> Load:
    threads = min(THREADS, connections)
    return Load("create_account.lua", {"TOKEN": token}, connections, threads)


def drive(supervisor: Supervisor, port: int, loads: list[Load], seconds: int) -> list[str]:
    """Runs the loads at the same time; returns each wrk's output. RUN is new for every wrk
    process, so the writes of a warm-up and of the run never share ids or keys."""
    with ExitStack() as stack:
        outputs = [stack.enter_context(tempfile.TemporaryFile()) for _ in loads]
        processes = [
            supervisor.start(
                load.command(port, seconds),
                output=output,
                env={**os.environ, **load.env, "RUN": secrets.token_hex(4)},
            )
            for load, output in zip(loads, outputs, strict=True)
        ]
        texts = []
        for process, output in zip(processes, outputs, strict=True):
            process.wait(timeout=seconds + 60)
            supervisor.stop(process)
            output.seek(0)
            texts.append(output.read().decode(errors="replace"))
            if process.returncode != 0:
                raise RuntimeError(f"wrk failed ({process.returncode}):\n{texts[-1]}")
    return texts


def measure(supervisor: Supervisor, server: Server, loads: list[Load]) -> list[dict[str, Any]]:
    """Warm up, then one measured run of the loads together. Server CPU per request is the
    servers' CPU time over the run divided by every request completed in it (all loads)."""
    if WARMUP_SECONDS > 0:
        drive(supervisor, server.port, loads, WARMUP_SECONDS)
        time.sleep(1)  # let the requests wrk dropped at its end finish on the server
    database = server.database_pids() if server.database_pids else []
    server_before = cpu_snapshot(server.server_pids())
    database_before = cpu_snapshot(database)
    outputs = drive(supervisor, server.port, loads, SECONDS)
    server_after = cpu_snapshot(server.server_pids())
    database = list({*database, *(server.database_pids() if server.database_pids else [])})
    database_after = cpu_snapshot(database)
    rows = [parse_wrk(out) for out in outputs]
    total = sum(row["requests"] for row in rows) or 1.0
    for row in rows:
        row["server_cpu_ms_per_request"] = cpu_used(server_before, server_after) * 1e3 / total
        row["database_cpu_ms_per_request"] = (
            cpu_used(database_before, database_after) * 1e3 / total if database_after else None
        )
    return rows


def probe(
    port: int, path: str, *, headers: dict[str, str] | None = None, body: bytes | None = None
) -> None:
    """One request before the load, so a misconfigured scenario fails loudly instead of
    measuring error responses."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", body, headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()
    except urllib.error.HTTPError as error:
        detail = error.read().decode(errors="replace")
        raise RuntimeError(f"{request.method} {path} answered {error.code}: {detail}") from None


# --- scenarios ----------------------------------------------------------------------------------


def probe_token(port: int, path: str, client_id: str, client_secret: str) -> None:
    basic = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()
    probe(
        port,
        path,
        headers={
            "Authorization": f"Basic {basic}",
            "Content-Type": "application/x-www-form-urlencoded",
        },
        body=f"grant_type=client_credentials&scope={SCOPE}".encode(),
    )


def probe_reads_and_write(port: int, token: str) -> None:
    bearer = {"Authorization": f"Bearer {token}"}
    probe(port, ACCOUNT_PATH, headers=bearer)
    probe(port, TRIAL_BALANCE_PATH, headers=bearer)
    account = f"bench_probe_{secrets.token_hex(4)}"
    probe(
        port,
        "/v1/ledger/accounts",
        headers=bearer | {"Content-Type": "application/json", "Idempotency-Key": account},
        body=json.dumps({"id": account, "currency": "USD", "code": 9}).encode(),
    )
    probe_token(port, "/oauth2/token", CLIENT_ID, CLIENT_SECRET)


def sqlite_scenarios(supervisor: Supervisor, work: Path) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    env = paymesh_env(work / "sqlite", None)
    with paymesh_up(supervisor, work, env) as server:
        token = mint_token(env, work)
        probe_reads_and_write(server.port, token)
        results["health_sqlite"] = measure(supervisor, server, [read_load("/health")])[0]
        (results["account_read_sqlite"],) = measure(
            supervisor, server, [read_load(ACCOUNT_PATH, token)]
        )
        (results["trial_balance_sqlite"],) = measure(
            supervisor, server, [read_load(TRIAL_BALANCE_PATH, token)]
        )
        (results["account_create_sqlite"],) = measure(supervisor, server, [write_load(token)])
        writers = CONNECTIONS // 2
        readers = CONNECTIONS - writers
        results["mixed_sqlite_read"], results["mixed_sqlite_write"] = measure(
            supervisor,
            server,
            [read_load(ACCOUNT_PATH, token, readers), write_load(token, writers)],
        )
        (results["token_paymesh_sqlite"],) = measure(
            supervisor, server, [token_load("/oauth2/token", CLIENT_ID, CLIENT_SECRET)]
        )
    return results


def oidc_scenario(supervisor: Supervisor, work: Path) -> dict[str, Any]:
    with oidc_provider(supervisor, work) as server:
        probe_token(server.port, "/token", OIDC_CLIENT_ID, OIDC_CLIENT_SECRET)
        (row,) = measure(
            supervisor, server, [token_load("/token", OIDC_CLIENT_ID, OIDC_CLIENT_SECRET)]
        )
    return row


def postgres_scenarios(supervisor: Supervisor, work: Path) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    recreate_database()
    env = paymesh_env(work / "postgres", f"{ADMIN_URL}/{DATABASE}")
    with paymesh_up(supervisor, work, env) as server:
        server.database_pids = database_backends
        token = mint_token(env, work)
        probe_reads_and_write(server.port, token)
        (results["token_paymesh_postgres"],) = measure(
            supervisor, server, [token_load("/oauth2/token", CLIENT_ID, CLIENT_SECRET)]
        )
        (results["account_read_postgres"],) = measure(
            supervisor, server, [read_load(ACCOUNT_PATH, token)]
        )
        (results["trial_balance_postgres"],) = measure(
            supervisor, server, [read_load(TRIAL_BALANCE_PATH, token)]
        )
        (results["account_create_postgres"],) = measure(supervisor, server, [write_load(token)])
    return results


# --- report -------------------------------------------------------------------------------------


def reference(name: str) -> str:
    return "token_oidc_provider" if name.startswith("token_") else "health_sqlite"


def judge(results: dict[str, dict[str, Any]]) -> None:
    """Adds to each row its ratio to its reference and, where the issue sets one, its
    target and whether it was met."""
    for name, row in results.items():
        ref = reference(name)
        row["reference"] = ref
        row["ratio"] = row["requests_per_second"] / results[ref]["requests_per_second"]
        target = TARGETS.get(name)
        row["target"] = target.describe() if target else None
        row["target_met"] = target.met(row, row["ratio"]) if target else None


def _ms(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def report(results: dict[str, dict[str, Any]], loads: tuple[list[float], list[float]]) -> None:
    judge(results)
    print(
        f"\nKernel benchmark: {SECONDS}s each, {CONNECTIONS} connections, {THREADS} wrk threads"
        f" (load average {loads[0][0]:.1f} before, {loads[1][0]:.1f} after)"
    )
    print(
        f"{'scenario':<25}{'req/s':>8}{'ratio':>13}{'p50 ms':>8}{'p99 ms':>9}{'cpu ms':>8}"
        f"{'db ms':>7}{'errors':>7}  target"
    )
    for name, row in results.items():
        against = "oidc" if row["reference"] == "token_oidc_provider" else "health"
        verdict = {True: "PASS", False: "FAIL", None: ""}[row["target_met"]]
        print(
            f"{name:<25}{row['requests_per_second']:>8.0f}{row['ratio']:>6.2f} x {against:<4}"
            f"{row['latency_ms_p50']:>8.2f}{row['latency_ms_p99']:>9.2f}"
            f"{row['server_cpu_ms_per_request']:>8.3f}{_ms(row['database_cpu_ms_per_request']):>7}"
            f"{row['non_2xx'] + row['socket_errors']:>7.0f}  {verdict} {row['target'] or ''}"
        )
    for name, row in results.items():
        for refusal in row.get("first_refusals", []):
            print(f"{name}: a refused write: {refusal}")
    print(
        "cpu ms: server CPU per request (utime+stime of the server's process tree); db ms: "
        "PostgreSQL backends'; mixed rows share one CPU figure (both loads together)"
    )
    line = {
        "benchmark": "kernel",
        "commit": commit(),
        "seconds": SECONDS,
        "connections": CONNECTIONS,
        "threads": THREADS,
        "load_average": {"before": loads[0], "after": loads[1]},
        "results": results,
    }
    print(json.dumps(line))
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"kernel-{time.strftime('%Y%m%dT%H%M%S')}.json").write_text(json.dumps(line, indent=2))


def main() -> None:
    for tool in ("wrk", "psql"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is needed: apt-get install wrk postgresql-client (make bench-tools)")
    ensure_oidc_provider()
    previous = signal.signal(signal.SIGTERM, stop_on_sigterm)
    supervisor = Supervisor()
    load_before = list(os.getloadavg())
    try:
        with tempfile.TemporaryDirectory(prefix="paymesh-bench-kernel-") as scratch:
            work = Path(scratch)
            results = sqlite_scenarios(supervisor, work)
            results["token_oidc_provider"] = oidc_scenario(supervisor, work)
            results |= postgres_scenarios(supervisor, work)
    except KeyboardInterrupt:
        supervisor.stop_all()
        sys.exit("interrupted: every process the benchmark started has been stopped")
    finally:
        supervisor.stop_all()
        signal.signal(signal.SIGTERM, previous)
    report(results, (load_before, list(os.getloadavg())))


if __name__ == "__main__":
    main()
