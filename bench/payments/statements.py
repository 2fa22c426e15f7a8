"""What one payment asks of PostgreSQL: statements and transactions per low-risk P2P payment.

Starts `paymesh up --demo` on a fresh database as bench/payments/run.py does (alice funded,
one probe payment), makes a few warm-up payments, then turns on PostgreSQL's statement log
for the whole server (`ALTER SYSTEM SET log_statement = 'all'` and a reload; reset
afterwards, also on error), makes PAYMESH_BENCH_PAYMENTS (20) payments one after another
through the gateway, waits for their side effects (events, audit, email), and counts:

- transactions committed in the benchmark's database (`pg_stat_database.xact_commit`,
  which needs no log) per payment;
- the logged statements per payment, by kind (BEGIN, COMMIT, and the first table a
  statement names), from the server's log file (PAYMESH_BENCH_POSTGRES_LOG, default
  Debian's /var/log/postgresql/postgresql-15-main.log; skipped when it cannot be read).

Sequential payments show the work per payment without batching: under load, the outbox
relays and consumers batch several payments' events, so the counts are an upper bound.
Background work (job leases, relays' polls) adds a little.

    .venv/bin/python bench/payments/statements.py

Needs a PostgreSQL superuser (ALTER SYSTEM) at PAYMESH_BENCH_POSTGRES_URL.
"""

from __future__ import annotations

import collections
import os
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run.py, support.py's user
import run  # type: ignore[import-not-found]  # bench/payments/run.py

PAYMENTS = int(os.environ.get("PAYMESH_BENCH_PAYMENTS", "20"))
LOG = Path(
    os.environ.get("PAYMESH_BENCH_POSTGRES_LOG", "/var/log/postgresql/postgresql-15-main.log")
)
SETTLE_SECONDS = 4.0
ENTRY = re.compile(r"\n(?=\d{4}-\d\d-\d\d )")  # a log entry starts with its timestamp
STATEMENT = re.compile(r"LOG:  (?:statement|execute [^:]*): (.*)", re.DOTALL)
KIND = re.compile(r"^(BEGIN|COMMIT|ROLLBACK)\b", re.IGNORECASE)
TABLE = re.compile(r"\b(?:FROM|INTO|UPDATE|JOIN)\s+([\w.\"]+)", re.IGNORECASE)


def committed() -> int:
    return int(
        run.psql(f"SELECT xact_commit FROM pg_stat_database WHERE datname = '{run.DATABASE}'")
    )


def kind_of(statement: str) -> str | None:
    text = " ".join(statement.split())
    if not text:
        return None
    if found := KIND.match(text):
        return found.group(1).upper()
    table = TABLE.search(text)
    return f"{text.split()[0].upper()} {table.group(1) if table else text[:40]}"


def main() -> None:
    supervisor = run.Supervisor()
    logged = ""
    try:
        with tempfile.TemporaryDirectory(prefix="paymesh-bench-statements-") as scratch:
            work = Path(scratch)
            run.psql(f'DROP DATABASE IF EXISTS "{run.DATABASE}" WITH (FORCE)')
            run.psql(f'CREATE DATABASE "{run.DATABASE}"')
            env = run.paymesh_env(work / "postgres", f"{run.ADMIN_URL}/{run.DATABASE}")
            with run.paymesh_up(supervisor, work, env, "postgres") as server:
                for _ in range(5):
                    run.pay(server)
                time.sleep(SETTLE_SECONDS)
                readable = os.access(LOG, os.R_OK)
                start = LOG.stat().st_size if readable else 0
                commits_before = committed()
                run.psql("ALTER SYSTEM SET log_statement = 'all'")
                run.psql("SELECT pg_reload_conf()")
                try:
                    time.sleep(1)
                    for _ in range(PAYMENTS):
                        status, answer = run.pay(server)
                        if status != 201 or answer.get("status") != "succeeded":
                            raise RuntimeError(f"a payment answered {status}: {answer}")
                    time.sleep(SETTLE_SECONDS)
                finally:
                    run.psql("ALTER SYSTEM RESET log_statement")
                    run.psql("SELECT pg_reload_conf()")
                commits = committed() - commits_before
                if readable:
                    with LOG.open("rb") as log:
                        log.seek(start)
                        logged = log.read().decode(errors="replace")
    finally:
        supervisor.stop_all()
    print(f"{PAYMENTS} sequential low-risk P2P payments through the gateway (PostgreSQL)")
    print(f"transactions committed per payment: {commits / PAYMENTS:.1f}")
    if not logged:
        print(f"statements: {LOG} not readable (PAYMESH_BENCH_POSTGRES_LOG)")
        return
    statements = [
        found.group(1) for entry in ENTRY.split(logged) if (found := STATEMENT.search(entry))
    ]
    kinds = collections.Counter(kind for kind in map(kind_of, statements) if kind is not None)
    print(f"statements per payment: {sum(kinds.values()) / PAYMENTS:.1f}")
    for kind, count in kinds.most_common():
        print(f"  {count / PAYMENTS:6.1f}  {kind}")


if __name__ == "__main__":
    main()
