"""Ledger benchmark: PostgreSQL's one-transfer-per-transaction ceiling (C1) against the
ledger's HTTP API (single, batch, hot accounts) on PostgreSQL, and single on SQLite.

Run with `make bench` (or `.venv/bin/python bench/ledger/run.py`). Prints a table and one
JSON line; the JSON is also written to bench/results/. Needs pgbench and wrk (installed
by `make bench` with apt-get when absent) and PostgreSQL at PAYMESH_BENCH_POSTGRES_URL.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
BIN = Path(sys.executable).parent
ADMIN_URL = os.environ.get("PAYMESH_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432")
DATABASE = "paymesh_bench"
ACCOUNTS = int(os.environ.get("PAYMESH_BENCH_ACCOUNTS", "1000"))
HOT = 10
SECONDS = int(os.environ.get("PAYMESH_BENCH_SECONDS", "20"))
CONNECTIONS = int(os.environ.get("PAYMESH_BENCH_CONNECTIONS", "16"))
FUNDS = 10**15


def psql(sql: str, database: str = "postgres") -> str:
    return subprocess.run(
        ["psql", f"{ADMIN_URL}/{database}", "-v", "ON_ERROR_STOP=1", "-qAtc", sql],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def seed_sql(schema_prefix: str) -> list[str]:
    """Accounts acc_000001.. with a funds guard and FUNDS credits, balanced by an equity
    account, so every debit is checked and the trial balance still balances."""
    total = ACCOUNTS + HOT
    return [
        f"INSERT INTO {schema_prefix}ledger_account (id, currency, code, flags, metadata, "
        "debits_pending, debits_posted, credits_pending, credits_posted, created_at) "
        f"VALUES ('equity', 'USD', 1, 0, '{{}}', 0, {FUNDS * total}, 0, 0, CURRENT_TIMESTAMP)",
    ]


def seed_postgres() -> None:
    psql(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
    psql(f'CREATE DATABASE "{DATABASE}"')
    env = {**os.environ, "PAYMESH_DATABASE_URL": f"{ADMIN_URL}/{DATABASE}"}
    subprocess.run([BIN / "paymesh", "migrate", "ledger"], check=True, env=env, capture_output=True)
    total = ACCOUNTS + HOT
    psql(
        seed_sql("ledger.")[0]
        + "; INSERT INTO ledger.ledger_account (id, currency, code, flags, metadata, "
        "debits_pending, debits_posted, credits_pending, credits_posted, created_at) "
        f"SELECT 'acc_' || lpad(n::text, 6, '0'), 'USD', 2, 1, '{{}}', 0, 0, 0, {FUNDS}, now() "
        f"FROM generate_series(1, {total}) AS n",
        DATABASE,
    )
    psql("VACUUM ANALYZE", DATABASE)


def seed_sqlite(path: Path) -> None:
    total = ACCOUNTS + HOT
    with sqlite3.connect(path) as connection:
        connection.execute(seed_sql("")[0])
        connection.execute(
            "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < ?) "
            "INSERT INTO ledger_account (id, currency, code, flags, metadata, debits_pending, "
            "debits_posted, credits_pending, credits_posted, created_at) "
            "SELECT printf('acc_%06d', x), 'USD', 2, 1, '{}', 0, 0, 0, ?, CURRENT_TIMESTAMP "
            "FROM n",
            (total, FUNDS),
        )


def run_c1() -> dict[str, float]:
    result = subprocess.run(
        [
            "pgbench",
            "-n",
            "-c",
            "8",
            "-j",
            "2",
            "-T",
            str(SECONDS),
            "-D",
            f"naccounts={ACCOUNTS}",
            "-f",
            str(HERE / "c1.sql"),
            f"{ADMIN_URL}/{DATABASE}",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    tps = float(re.search(r"tps = ([\d.]+)", result.stdout).group(1))  # type: ignore[union-attr]
    latency = float(re.search(r"latency average = ([\d.]+) ms", result.stdout).group(1))  # type: ignore[union-attr]
    return {"transfers_per_second": tps, "latency_ms_avg": latency}


class Server:
    def __init__(self, env: dict[str, str]) -> None:
        self.port = free_port()
        self.env = {
            **os.environ,
            "PAYMESH_LOG_LEVEL": "WARNING",
            "PAYMESH_ACCESS_LOG": "false",
            **env,
        }
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        self.process = subprocess.Popen(
            [BIN / "paymesh", "serve", "ledger", "--port", str(self.port)],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=open(Path(tempfile.gettempdir()) / "paymesh-bench-server.log", "wb"),
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=1):
                    return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("the ledger did not start; see paymesh-bench-server.log")

    def __exit__(self, *_exc: object) -> None:
        assert self.process is not None
        self.process.terminate()
        self.process.wait(timeout=30)


def token() -> str:
    return subprocess.run(
        [BIN / "paymesh", "token", "--subject", "service:bench", "--role", "service"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def _duration_ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk(port: int, name: str, *, batch: int = 0, hot: int = 0) -> dict[str, float]:
    env = {
        **os.environ,
        "TOKEN": token(),
        "ACCOUNTS": str(ACCOUNTS),
        "HOT": str(hot),
        "BATCH": str(batch),
        "RUN": f"{name}{int(time.time())}",
    }
    result = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{CONNECTIONS}",
            f"-d{SECONDS}s",
            "--latency",
            "--timeout",
            "10s",
            "-s",
            str(HERE / "transfers.lua"),
            f"http://127.0.0.1:{port}",
        ],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    out = result.stdout
    requests = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    percentiles = dict(re.findall(r"^\s+(50|99)(?:\.0+)?%\s+(\S+)\s*$", out, re.MULTILINE))
    if "50" not in percentiles or "99" not in percentiles:
        raise RuntimeError(f"could not read wrk's latency distribution:\n{out}\n{result.stderr}")
    return {
        "requests_per_second": requests,
        "transfers_per_second": requests * (batch or 1),
        "latency_ms_p50": _duration_ms(percentiles["50"]),
        "latency_ms_p99": _duration_ms(percentiles["99"]),
        "non_2xx": float(errors.group(1)) if errors else 0.0,
    }


def check_balanced_postgres() -> bool:
    out = psql(
        "SELECT bool_and(d = c) FROM (SELECT currency, sum(debits_posted) d, "
        "sum(credits_posted) c FROM ledger.ledger_account GROUP BY currency) t",
        DATABASE,
    )
    return out.strip() == "t"


def main() -> None:
    for tool in ("pgbench", "wrk", "psql"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is needed: apt-get install postgresql-client wrk")
    results: dict[str, dict[str, float]] = {}
    seed_postgres()
    results["c1_pgbench"] = run_c1()
    seed_postgres()
    with Server({"PAYMESH_DATABASE_URL": f"{ADMIN_URL}/{DATABASE}"}) as server:
        results["api_single_postgres"] = run_wrk(server.port, "single")
        results["api_batch100_postgres"] = run_wrk(server.port, "batch", batch=100)
        results["api_hot10_postgres"] = run_wrk(server.port, "hot", hot=HOT)
    balanced = check_balanced_postgres()
    with tempfile.TemporaryDirectory() as data_dir:
        env = {"PAYMESH_DATA_DIR": data_dir, "PAYMESH_DATABASE_URL": ""}
        subprocess.run(
            [BIN / "paymesh", "migrate", "ledger"],
            check=True,
            env={**os.environ, **env},
            capture_output=True,
        )
        seed_sqlite(Path(data_dir) / "ledger.db")
        with Server(env) as server:
            results["api_single_sqlite"] = run_wrk(server.port, "sqlite")
    report(results, balanced)


def report(results: dict[str, dict[str, float]], balanced: bool) -> None:
    c1 = results["c1_pgbench"]["transfers_per_second"]
    targets = {
        "api_single_postgres": (1.0, 20.0),
        "api_batch100_postgres": (5.0, None),
        "api_hot10_postgres": (0.6, 50.0),
    }
    print(f"\nLedger benchmark: {SECONDS}s each, {CONNECTIONS} connections, {ACCOUNTS} accounts")
    print(
        f"{'scenario':<24}{'transfers/s':>12}{'x C1':>7}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'non-2xx':>9}  target"
    )
    for name, row in results.items():
        ratio = row["transfers_per_second"] / c1
        target = targets.get(name)
        goal = ""
        if target:
            goal = f">= {target[0]} x C1" + (f", p99 <= {target[1]} ms" if target[1] else "")
        p50 = row.get("latency_ms_p50", row.get("latency_ms_avg", 0.0))
        p99 = row.get("latency_ms_p99", float("nan"))
        print(
            f"{name:<24}{row['transfers_per_second']:>12.0f}{ratio:>7.2f}{p50:>9.2f}"
            f"{p99:>9.2f}{row.get('non_2xx', 0):>9.0f}  {goal}"
        )
    print(f"trial balance after the PostgreSQL runs: {'balanced' if balanced else 'NOT BALANCED'}")
    line = {"benchmark": "ledger", "c1": c1, "balanced": balanced, "results": results}
    print(json.dumps(line))
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"ledger-{time.strftime('%Y%m%dT%H%M%S')}.json").write_text(json.dumps(line, indent=2))


if __name__ == "__main__":
    main()
