"""Payouts benchmark: inter-bank payouts per second, submitted end to end through the gateway
to the partner-bank simulator, beside C1 measured in the same run.

- `c1_pgbench`: bench/ledger's C1 (PostgreSQL's one-transfer-per-transaction ceiling: its
  seeding and pgbench script, imported from bench/ledger/run.py, for PAYMESH_BENCH_SECONDS).
- `payouts_postgres`: `paymesh up --demo` on a fresh database `paymesh_bench_payouts`
  (recreated), access log off, the gateway's rate limits off. The demo customer alice (KYC
  verified at level `full`) pays out 1 minor unit (USD) per request to Ava Johnson's account
  000123456789 (bank code 026009593, US) at the default partner bank, which is the
  simulator the platform serves itself at ORIGIN/_simulators/bank: `POST /v1/payments`
  `{"type": "payout", ...}` with her access token from the password grant (client
  `demo-legacy`) and a fresh `Idempotency-Key` per request (bench/payments/payments.lua,
  the payout as its BODY). Per payout:
  providers validates the beneficiary (the simulator's account lookup, over HTTP), risk
  evaluates (the default rule set as the demo ships it: alice's velocity, > 5 payments in
  24 h, adds 25 points, still `low` -> `allow`; 1 cent stays far below the `full` level's
  limits), the ledger reserves amount + fee (the default USD payout fee, 100 minor units)
  as a pending transfer, providers sends the pacs.008 to the simulator, which settles an
  account not ending 0001-0006/0009 at once (ACSC), and payments posts the reservation and
  the fee: 201 `succeeded` (202 `in_transit` if the bank's answer came later). The simulator
  also posts its signed pacs.002 callback to the platform (a duplicate outcome, recorded
  once): that request is in the server's CPU too. Alice's wallet is first funded by a
  `finance` deposit (`paymesh token --role finance`), enough for every payout of the run.
  wrk with PAYMESH_BENCH_CONNECTIONS (8) for PAYMESH_BENCH_SECONDS (10) after a warm-up.
- `payouts_sqlite`: the same on SQLite in a scratch data directory, for comparison.

For each server: payouts/s and its ratio to C1, p50/p99, the HTTP status mix and the
payments' statuses (from the bodies), server CPU per payout (utime+stime of the server's
process tree: gateway, every service and the simulator are one process tree), also less the
server's idle CPU (measured for PAYMESH_BENCH_IDLE_SECONDS before the load: relays, jobs and
consumers polling), and, on PostgreSQL, the database backends' CPU and the transactions
(pg_stat_database) per payout; and, before the load, the latency of PAYMESH_BENCH_UNLOADED
(5) payouts sent one at a time. After the load (and once no payout is still `processing`
or `in_transit`, or PAYMESH_BENCH_SETTLE_SECONDS have passed) it checks, over everything
since the server started (the probe, the unloaded payouts, the warm-up and the measured
run):

- the pacs.008 instructions the simulator holds (`GET ORIGIN/_simulators/bank/_admin/
  instructions`) number exactly the payouts that succeeded (and all are ACSC, none
  duplicated by end-to-end id);
- alice's posted balance dropped by exactly amount + fee per succeeded payout (the
  payments' own `total`, each amount + the expected fee); her available balance drops by
  that plus whatever is still reserved (reported).

And where a payout's time goes, from the timelines (`GET /v1/payments/{id}/timeline`) of the
newest PAYMESH_BENCH_TIMELINES (50) succeeded payouts: the row's insert, the risk decision,
the ledger reservation, the pacs.008 to the bank (providers and the simulator), recording the
bank's answer, posting the reservation and the fee, and the rest of the request (gateway,
token check, idempotency look-up, wallet look-up and the beneficiary's validation before the
row exists, the answer).

Prints a table and one JSON line; the JSON is also written to
bench/results/payouts-<timestamp>.json. Every process it starts is stopped on exit, on error
and on Ctrl-C. The generic helpers (HTTP calls, tokens, wallets, the server's environment,
the server log's errors) are bench/payments/run.py's, imported from it.

    .venv/bin/python bench/payouts/run.py        # or: make bench

Knobs: PAYMESH_BENCH_SECONDS (10), PAYMESH_BENCH_CONNECTIONS (8),
PAYMESH_BENCH_WARMUP_SECONDS (2), PAYMESH_BENCH_TIMELINES (50),
PAYMESH_BENCH_SETTLE_SECONDS (30), PAYMESH_BENCH_IDLE_SECONDS (5),
PAYMESH_BENCH_UNLOADED (5), PAYMESH_BENCH_POSTGRES_URL
(postgresql://postgres@127.0.0.1:5432), PAYMESH_BENCH_DATABASE_POOL_SIZE,
PAYMESH_BENCH_PROFILE (a py-spy executable; default /tmp/spyenv/bin/py-spy when it exists:
after the checks, py-spy on the PostgreSQL server under another PAYMESH_BENCH_SECONDS of the
same load, its samples by package; raw stacks to bench/results/payouts-profile-<ts>.txt),
PAYMESH_BENCH_SKIP_SQLITE (set: PostgreSQL only).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench/: support.py
from support import (  # type: ignore[import-not-found]  # bench/ is on sys.path at run time
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
ADMIN_URL = os.environ.get("PAYMESH_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432")
DATABASE = "paymesh_bench_payouts"
SECONDS = int(os.environ.get("PAYMESH_BENCH_SECONDS", "10"))
CONNECTIONS = int(os.environ.get("PAYMESH_BENCH_CONNECTIONS", "8"))
WARMUP_SECONDS = int(os.environ.get("PAYMESH_BENCH_WARMUP_SECONDS", "2"))
TIMELINES = int(os.environ.get("PAYMESH_BENCH_TIMELINES", "50"))
SETTLE_SECONDS = float(os.environ.get("PAYMESH_BENCH_SETTLE_SECONDS", "30"))
IDLE_SECONDS = float(os.environ.get("PAYMESH_BENCH_IDLE_SECONDS", "5"))
UNLOADED = int(os.environ.get("PAYMESH_BENCH_UNLOADED", "5"))
SKIP_SQLITE = bool(os.environ.get("PAYMESH_BENCH_SKIP_SQLITE"))
DEFAULT_PROFILER = "/tmp/spyenv/bin/py-spy"
PROFILER = os.environ.get(
    "PAYMESH_BENCH_PROFILE", DEFAULT_PROFILER if Path(DEFAULT_PROFILER).exists() else ""
)
THREADS = min(2, CONNECTIONS)

AMOUNT_MINOR = 1
EXPECTED_FEE_MINOR = 100  # payments/pricing.py: a USD payout's default flat fee
FUNDING_MINOR = 100_000_000  # USD 1,000,000: ~990,000 payouts of amount + fee; no run drains it
BENEFICIARY = {
    "name": "Ava Johnson",  # one of the simulator's demo accounts (kernel/config/banks.py)
    "account_number": "000123456789",  # not ending 0001-0006 or 0009: settled at once
    "bank_code": "026009593",
    "country": "US",
}
BANK_ADMIN = "/_simulators/bank/_admin/instructions"
FINAL = frozenset({"succeeded", "failed"})
PAGE = 200  # GET /v1/payments' largest page


def say(text: str) -> None:
    """Progress, on stderr: the table and the JSON line stay alone on stdout."""
    print(f"[payouts bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def _load(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


# bench/payments/run.py as a module: request(), password_token(), usd_wallet(),
# development_token(), paymesh_env(), server_errors(), counts(), psql(), package() (as
# bench/payments imports bench/ledger for C1).
payments_bench = _load("payments_bench", ROOT / "bench/payments/run.py")
request = payments_bench.request
password_token = payments_bench.password_token
usd_wallet = payments_bench.usd_wallet
development_token = payments_bench.development_token
paymesh_env = payments_bench.paymesh_env
server_errors = payments_bench.server_errors
counts = payments_bench.counts
psql = payments_bench.psql
package = payments_bench.package
instant = payments_bench._instant


def loadavg() -> float:
    return os.getloadavg()[0]


def database_backends() -> list[int]:
    """The PostgreSQL backends connected to the benchmark's database; none when psql gets
    no connection slot (other suites share the server): the db CPU column is then absent
    or counts only the backends seen."""
    try:
        out = psql(f"SELECT pid FROM pg_stat_activity WHERE datname = '{DATABASE}'")
    except RuntimeError as error:
        say(f"PostgreSQL backends not listed: {str(error)[-120:]}")
        return []
    return [int(line) for line in out.split()]


def transactions() -> int | None:
    """Transactions committed and rolled back in the benchmark's database so far
    (pg_stat_database: each backend reports at most once a second, so a figure over a few
    seconds is approximate); None when psql gets no connection slot."""
    try:
        out = psql(
            f"SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = '{DATABASE}'"
        )
    except RuntimeError:
        return None
    return int(out.strip()) if out.strip() else None


def connections() -> dict[str, int]:
    """PostgreSQL's connection slots: in use by this benchmark's database, by everything
    else, and the server's max_connections."""
    out = psql(
        "SELECT count(*) FILTER (WHERE datname = '" + DATABASE + "'), "
        "count(*) FILTER (WHERE datname IS DISTINCT FROM '" + DATABASE + "'), "
        "current_setting('max_connections')::int FROM pg_stat_activity"
    )
    ours, others, most = (int(n) for n in out.strip().split("|"))
    return {"ours": ours, "others": others, "max_connections": most}


# --- the server and its customer ---------------------------------------------------------------


@dataclass
class Server:
    port: int
    process: subprocess.Popen[bytes]
    env: dict[str, str]
    work: Path
    log: Path
    database_pids: Callable[[], list[int]] | None = None
    payer_token: str = ""
    source_wallet: str = ""
    balance_at_start: dict[str, int] | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def server_pids(self) -> list[int]:
        pids: list[int] = process_tree(self.process.pid)
        return pids


def fund(server: Server) -> None:
    """A `finance` deposit into alice's USD wallet: enough for every payout of a run."""
    finance = development_token(server, "bench-finance", "finance")
    status, answer = request(
        server.url(f"/v1/wallets/{server.source_wallet}/deposits"),
        token=finance,
        body={"amount": FUNDING_MINOR, "reference": "payouts benchmark funding"},
        headers={"Idempotency-Key": f"bench-funding-{secrets.token_hex(6)}"},
    )
    if status != 201:
        raise RuntimeError(f"the funding deposit answered {status}: {answer}")


def pay_out(server: Server) -> tuple[int, Any]:
    answer: tuple[int, Any] = request(
        server.url("/v1/payments"),
        token=server.payer_token,
        body={
            "type": "payout",
            "source_wallet_id": server.source_wallet,
            "amount": AMOUNT_MINOR,
            "currency": "USD",
            "beneficiary": BENEFICIARY,
        },
        headers={"Idempotency-Key": f"bench-probe-{secrets.token_hex(8)}"},
    )
    return answer


def probe(server: Server) -> dict[str, Any]:
    """One payout before the load: a misconfigured run fails loudly here (its fee must be
    the expected one, or the balance check would be wrong). The demo seed (the UN list, the
    wallets) finishes after the server answers /health: retried a while."""
    deadline = time.monotonic() + 90
    while True:
        status, answer = pay_out(server)
        if status == 201 and answer.get("status") == "succeeded":
            if answer.get("fee") != EXPECTED_FEE_MINOR:
                raise RuntimeError(f"the probe payout's fee is {answer.get('fee')}: {answer}")
            found: dict[str, Any] = answer
            return found
        if time.monotonic() > deadline:
            raise RuntimeError(f"the probe payout answered {status}: {answer}")
        time.sleep(1)


def balance(server: Server) -> dict[str, int]:
    """alice's USD balances: posted, available, pending (minor units)."""
    found = usd_wallet(server, server.payer_token)["balance"]
    return {name: int(found[name]) for name in ("posted", "available", "pending")}


@contextmanager
def paymesh_up(
    supervisor: Supervisor, work: Path, env: dict[str, str], shape: str
) -> Iterator[Server]:
    """`paymesh up --demo` (every service, the gateway and the simulators in one process),
    alice's token and USD wallet, her wallet funded, her balance noted, one probe payout."""
    port = free_port()
    log = work / f"paymesh-{shape}-{port}.log"
    with log.open("wb") as output:
        process = supervisor.start(
            [str(BIN / "paymesh"), "up", "--demo", "--port", str(port)],
            output=output,
            env=env,
            cwd=work,
        )
    try:
        wait_ready(process, f"http://127.0.0.1:{port}/health", log, timeout_seconds=180)
        server = Server(port, process, env, work, log)
        deadline = time.monotonic() + 60
        while True:  # the demo wallets are seeded after the server answers /health
            try:
                server.payer_token = password_token(server, "alice")
                server.source_wallet = usd_wallet(server, server.payer_token)["id"]
                break
            except (RuntimeError, KeyError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
        fund(server)
        server.balance_at_start = balance(server)
        probe(server)
        yield server
    finally:
        supervisor.stop(process)


# --- load --------------------------------------------------------------------------------------


def wrk_command(port: int, seconds: int) -> list[str]:
    return [
        "wrk",
        f"-t{THREADS}",
        f"-c{CONNECTIONS}",
        f"-d{seconds}s",
        "--latency",
        "--timeout",
        "10s",
        "-s",
        str(HERE.parent / "payments" / "payments.lua"),
        f"http://127.0.0.1:{port}/",
    ]


def drive(supervisor: Supervisor, server: Server, seconds: int) -> str:
    env = {
        **os.environ,
        "TOKEN": server.payer_token,
        "RUN": secrets.token_hex(4),
        "BODY": json.dumps(
            {
                "type": "payout",
                "source_wallet_id": server.source_wallet,
                "amount": AMOUNT_MINOR,
                "currency": "USD",
                "beneficiary": BENEFICIARY,
            }
        ),
    }
    with tempfile.TemporaryFile() as output:
        process = supervisor.start(wrk_command(server.port, seconds), output=output, env=env)
        process.wait(timeout=seconds + 60)
        supervisor.stop(process)
        output.seek(0)
        text = output.read().decode(errors="replace")
    if process.returncode != 0:
        raise RuntimeError(f"wrk failed ({process.returncode}):\n{text}")
    return text


def idle_and_unloaded(server: Server) -> dict[str, float]:
    """The server's CPU per second with no load (its relays, jobs and consumers polling:
    part of every payout's CPU figure below, more so the fewer payouts a second), then
    UNLOADED payouts one at a time: their latency without a queue."""
    pids = server.server_pids()
    xacts = transactions() if server.database_pids else None
    before, started = cpu_snapshot(pids), time.monotonic()
    time.sleep(IDLE_SECONDS)
    idle = cpu_used(before, cpu_snapshot(pids)) / (time.monotonic() - started)
    xacts_after = transactions() if xacts is not None else None
    idle_xacts = (
        (xacts_after - xacts) / IDLE_SECONDS
        if xacts is not None and xacts_after is not None
        else None
    )
    latencies = []
    answers: Counter[str] = Counter()
    for _ in range(UNLOADED):
        started = time.monotonic()
        status, answer = pay_out(server)
        latencies.append((time.monotonic() - started) * 1e3)
        # 202 `in_transit`: the bank's callback was recorded before its first answer, and
        # the payment is posted just after (checked with the others after the load).
        if status not in (201, 202) or answer.get("status") not in ("succeeded", "in_transit"):
            raise RuntimeError(f"an unloaded payout answered {status}: {answer}")
        answers[f"{status} {answer['status']}"] += 1
    return {
        "idle_server_cpu_ms_per_s": idle * 1e3,
        "idle_postgres_transactions_per_s": idle_xacts,
        "unloaded_ms_median": statistics.median(latencies) if latencies else float("nan"),
        "unloaded_ms_min": min(latencies, default=float("nan")),
        "unloaded_answers": dict(answers),
    }


def measure(supervisor: Supervisor, server: Server, shape: str) -> dict[str, Any]:
    """The idle CPU and unloaded latency, a warm-up, then one measured wrk run; server (and
    PostgreSQL) CPU per payout from /proc over the run; the status mix the wrk script counted;
    then the checks against the simulator's instructions and alice's balance, and the
    timelines."""
    server.payer_token = password_token(server, "alice")  # tokens live 15 minutes
    say(f"{shape}: idle for {IDLE_SECONDS:g} s, then {UNLOADED} payouts one at a time")
    quiet = idle_and_unloaded(server)
    if WARMUP_SECONDS > 0:
        say(f"{shape}: warm-up, {WARMUP_SECONDS} s")
        drive(supervisor, server, WARMUP_SECONDS)
        time.sleep(1)  # the requests wrk dropped at its end finish on the server
    database = server.database_pids() if server.database_pids else []
    load_before = loadavg()
    server_before, server_before_at = cpu_snapshot(server.server_pids()), time.monotonic()
    database_before = cpu_snapshot(database)
    xacts = transactions() if server.database_pids else None
    say(f"{shape}: measuring, {CONNECTIONS} connections, {SECONDS} s")
    out = drive(supervisor, server, SECONDS)
    server_after, server_after_at = cpu_snapshot(server.server_pids()), time.monotonic()
    if server.database_pids:
        database = list({*database, *server.database_pids()})
    database_after = cpu_snapshot(database)
    xacts_after = transactions() if xacts is not None else None
    load_after = loadavg()
    row: dict[str, Any] = parse_wrk(out)
    requests = row["requests"] or 1
    row["status_codes"] = counts(out, "status")
    row["payment_statuses"] = counts(out, "payment")
    row["not_201"] = sum(n for code, n in row["status_codes"].items() if code != "201")
    row["not_succeeded"] = sum(
        n for name, n in row["payment_statuses"].items() if name != "succeeded"
    ) + sum(n for code, n in row["status_codes"].items() if not code.startswith("2"))
    seconds = server_after_at - server_before_at
    server_cpu = cpu_used(server_before, server_after)
    row["server_cpu_ms_per_payout"] = server_cpu * 1e3 / requests
    row |= quiet
    row["server_cpu_ms_per_payout_less_idle"] = (
        max(server_cpu - quiet["idle_server_cpu_ms_per_s"] / 1e3 * seconds, 0.0) * 1e3 / requests
    )
    row["server_cpu_cores"] = server_cpu / seconds
    row["postgres_transactions_per_payout"] = (
        (xacts_after - xacts) / requests if xacts is not None and xacts_after is not None else None
    )
    row["database_cpu_ms_per_payout"] = (
        cpu_used(database_before, database_after) * 1e3 / requests
        if database_before and database_after
        else None
    )
    try:
        row["postgres_connections"] = connections() if server.database_pids else None
    except RuntimeError as error:  # no slot left for psql either
        row["postgres_connections"] = {"error": str(error)[:300]}
    row["load_average"] = {"before": load_before, "after": load_after}
    row["checks"] = checks(server)
    row["timeline_ms"] = timelines(server, row["latency_ms_p50"])
    row["server_errors"] = server_errors(server.log)
    return row


# --- the checks: the bank's instructions and alice's balance -------------------------------------


def all_payouts(server: Server) -> list[dict[str, Any]]:
    """Every payment alice made since the server started (all payouts here), newest first."""
    found: list[dict[str, Any]] = []
    cursor = ""
    while True:
        status, page = request(
            server.url(f"/v1/payments?limit={PAGE}{cursor}"), token=server.payer_token
        )
        if status != 200:
            raise RuntimeError(f"GET /v1/payments answered {status}: {page}")
        found.extend(page["items"])
        if not page.get("next_cursor"):
            return found
        cursor = f"&cursor={urllib.parse.quote(page['next_cursor'], safe='')}"


def settled_payouts(server: Server) -> list[dict[str, Any]]:
    """The payouts once none is still moving (processing, in_transit), or after
    SETTLE_SECONDS: a request wrk dropped at its end, or one answered 503 and left to the
    recovery job, may still be on its way."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        payouts = all_payouts(server)
        moving = [p for p in payouts if p["status"] not in FINAL]
        if not moving or time.monotonic() > deadline:
            if moving:
                say(f"{len(moving)} payouts still not final after {SETTLE_SECONDS:g} s")
            return payouts
        time.sleep(1)


def bank_instructions(server: Server) -> list[dict[str, Any]]:
    status, answer = request(server.url(BANK_ADMIN))
    if status != 200:
        raise RuntimeError(f"GET {BANK_ADMIN} answered {status}: {answer}")
    found: list[dict[str, Any]] = answer["instructions"]
    return found


def checks(server: Server) -> dict[str, Any]:
    """Over everything since the server started: the simulator holds one pacs.008 per
    succeeded payout; alice's posted balance dropped by amount + fee per succeeded payout."""
    payouts = settled_payouts(server)
    by_status = Counter(p["status"] for p in payouts)
    succeeded = [p for p in payouts if p["status"] == "succeeded" and p["type"] == "payout"]
    reserved = [p for p in payouts if p["status"] in ("processing", "in_transit")]
    instructions = bank_instructions(server)
    by_bank_status = Counter(i["status"] for i in instructions)
    ends = Counter(i["end_to_end_id"] for i in instructions)
    sent_ends = {
        p["payout"]["instruction"]["end_to_end_id"]
        for p in succeeded
        if p.get("payout") and p["payout"].get("instruction")
    }
    after = balance(server)
    start = server.balance_at_start or after
    expected_drop = sum(int(p["total"]) for p in succeeded)
    held = sum(int(p["total"]) for p in reserved)
    return {
        "payouts": len(payouts),
        "payouts_by_status": dict(by_status.most_common()),
        "fees": dict(Counter(str(p["fee"]) for p in payouts)),
        "succeeded": len(succeeded),
        "bank_instructions": len(instructions),
        "bank_instructions_by_status": dict(by_bank_status.most_common()),
        "bank_resubmissions": sum(int(i["submissions"]) - 1 for i in instructions),
        "instructions_equal_succeeded": len(instructions) == len(succeeded)
        and by_bank_status.get("ACSC", 0) == len(succeeded)
        and max(ends.values(), default=1) == 1
        and sent_ends <= set(ends),
        "balance_start": start,
        "balance_end": after,
        "posted_drop": start["posted"] - after["posted"],
        "expected_drop": expected_drop,
        "expected_drop_per_payout": AMOUNT_MINOR + EXPECTED_FEE_MINOR,
        "balance_dropped_by_amount_plus_fee": start["posted"] - after["posted"] == expected_drop
        and all(int(p["total"]) == AMOUNT_MINOR + EXPECTED_FEE_MINOR for p in succeeded),
        "available_drop": start["available"] - after["available"],
        "still_reserved": held,
    }


# --- where a payout's time goes --------------------------------------------------------------


def timelines(server: Server, latency_ms_p50: float) -> dict[str, float] | None:
    """Medians (ms) of each step of the newest TIMELINES succeeded payouts, from their
    timelines; which answer of the bank was recorded (its first answer, or its callback)."""
    if TIMELINES <= 0:
        return None
    status, page = request(
        server.url(f"/v1/payments?limit={min(TIMELINES, 200)}&status=succeeded"),
        token=server.payer_token,
    )
    if status != 200:
        say(f"no timelines: GET /v1/payments answered {status}: {page}")
        return None
    phases: dict[str, list[float]] = {}
    sources: Counter[str] = Counter()
    sampled = 0
    for payment in page["items"]:
        status, timeline = request(
            server.url(f"/v1/payments/{payment['id']}/timeline"), token=server.payer_token
        )
        if status != 200:
            continue
        sampled += 1
        at = {(step["step"], step["outcome"]): instant(step["at"]) for step in timeline["steps"]}
        for step in timeline["steps"]:
            if (step["step"], step["outcome"]) == ("bank", "settled"):
                sources[str(step["detail"].get("source"))] += 1
        created = instant(payment["created_at"])
        marks = [
            ("insert the payment row", created, at.get(("created", "ok"))),
            ("risk decision (evaluate)", at.get(("created", "ok")), at.get(("risk", "allow"))),
            ("ledger reservation", at.get(("risk", "allow")), at.get(("ledger", "reserved"))),
            (
                "pacs.008 to the bank (providers, simulator)",
                at.get(("ledger", "reserved")),
                at.get(("bank", "submitted")),
            ),
            (
                "record the bank's answer",
                at.get(("bank", "submitted")),
                at.get(("bank", "settled")),
            ),
            ("post reservation and fee", at.get(("bank", "settled")), at.get(("ledger", "posted"))),
            ("row created -> succeeded", created, at.get(("ledger", "posted"))),
        ]
        for name, start, end in marks:
            if start is not None and end is not None:
                phases.setdefault(name, []).append((end - start) * 1e3)
    medians = {name: statistics.median(values) for name, values in phases.items()}
    inside = medians.get("row created -> succeeded")
    if inside is not None:
        medians["before the row and after success (wrk p50 - the above)"] = latency_ms_p50 - inside
    medians["payouts sampled"] = float(sampled)
    for source, n in sources.items():
        medians[f"bank outcome recorded from: {source}"] = float(n)
    return medians


# --- py-spy (PAYMESH_BENCH_PROFILE) ------------------------------------------------------------


def profile(supervisor: Supervisor, server: Server, work: Path) -> dict[str, Any] | None:
    """py-spy on the server while wrk drives payouts (after the measured run and its
    checks): samples of the thread holding the GIL, by the package of the innermost frame
    (bench/payments' `package`), inclusive by package, and the top functions."""
    if not PROFILER:
        return None
    say("profiling the PostgreSQL server under the payouts load")
    raw = work / "payouts-profile.txt"
    spy = supervisor.start(
        [PROFILER, "record", "--pid", str(server.process.pid), "--gil",
         "--rate", "250", "--duration", str(SECONDS), "--format", "raw", "--output", str(raw)],
        output=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(1)  # py-spy attaches
    drive(supervisor, server, SECONDS + 1)
    spy.wait(timeout=60)
    supervisor.stop(spy)
    innermost: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    functions: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack_text, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        stack, count = stack_text.split(";"), int(count_text)
        total += count
        innermost[package(stack[-1])] += count
        for name in {package(frame) for frame in stack}:
            inclusive[name] += count
        functions[re.sub(r":\d+\)$", ")", stack[-1])] += count
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    kept = results / f"payouts-profile-{time.strftime('%Y%m%dT%H%M%S')}.txt"
    shutil.copyfile(raw, kept)
    every = max(total, 1)
    return {
        "samples": total,
        "innermost_by_package": {k: n / every for k, n in innermost.most_common(25)},
        "inclusive_by_package": {k: n / every for k, n in inclusive.most_common(25)},
        "top_functions": {k: n / every for k, n in functions.most_common(20)},
        "raw": str(kept),
    }


def print_profile(found: dict[str, Any]) -> None:
    print(f"\nWhere the PostgreSQL server's time goes (py-spy, {found['samples']} GIL samples)")
    print("by package of the innermost frame:")
    for name, share in list(found["innermost_by_package"].items())[:15]:
        print(f"{share:>7.1%}  {name}")
    print("inclusive (a package anywhere on the stack):")
    for name, share in list(found["inclusive_by_package"].items())[:20]:
        print(f"{share:>7.1%}  {name}")
    print("top functions (innermost frame):")
    for name, share in list(found["top_functions"].items())[:10]:
        print(f"{share:>7.1%}  {name}")
    print(f"raw stacks: {found['raw']}")


# --- report --------------------------------------------------------------------------------------


def print_table(c1: dict[str, float] | None, rows: dict[str, dict[str, Any]]) -> None:
    print(
        f"\nPayouts end to end (`paymesh up --demo`, gateway, alice's password-grant token, "
        f"{AMOUNT_MINOR} minor unit USD + fee to the partner-bank simulator): wrk "
        f"{CONNECTIONS} connections, {THREADS} threads, {SECONDS} s after a {WARMUP_SECONDS} s "
        "warm-up"
    )
    print(
        f"{'scenario':<18}{'per s':>7}{'x C1':>8}{'p50 ms':>8}{'p99 ms':>8}{'1-at-a-time':>12}"
        f"{'cpu ms':>8}{'-idle':>7}{'cores':>6}{'db ms':>7}{'not 201':>8}{'load':>9}  statuses"
    )
    if c1 is not None:
        print(
            f"{'c1_pgbench':<18}{c1['transfers_per_second']:>7.0f}{1:>8.2f}"
            f"{c1['latency_ms_avg']:>8.2f}  (average; pgbench, 8 clients)"
        )
    for name, row in rows.items():
        ratio = row.get("ratio_to_c1")
        db = row["database_cpu_ms_per_payout"]
        load = f"{row['load_average']['before']:.1f}-{row['load_average']['after']:.1f}"
        print(
            f"{name:<18}{row['requests_per_second']:>7.1f}"
            f"{'' if ratio is None else f'{ratio:.4f}':>8}"
            f"{row['latency_ms_p50']:>8.0f}{row['latency_ms_p99']:>8.0f}"
            f"{row['unloaded_ms_median']:>12.0f}"
            f"{row['server_cpu_ms_per_payout']:>8.0f}"
            f"{row['server_cpu_ms_per_payout_less_idle']:>7.0f}{row['server_cpu_cores']:>6.2f}"
            f"{'' if db is None else f'{db:.1f}':>7}"
            f"{row['not_201'] + row['socket_errors']:>8}{load:>9}  "
            f"{row['status_codes']} {row['payment_statuses']}"
        )
        for refusal in row.get("first_refusals", []):
            print(f"{name}: a refusal: {refusal}")
        for error, n in row.get("server_errors", {}).items():
            print(f"{name}: server log: {n} x {error}")
    print(
        "1-at-a-time: median ms of payouts sent one at a time before the load; cpu ms: server "
        "CPU per payout (the server's process tree: gateway, services, simulator); -idle: "
        "less the server's idle CPU over the same seconds; cores: the server's CPU seconds "
        "per second; db ms: PostgreSQL backends' CPU per payout"
    )
    for name, row in rows.items():
        line = f"{name}: idle server CPU {row['idle_server_cpu_ms_per_s']:.0f} ms/s"
        if row.get("postgres_transactions_per_payout") is not None:
            idle = row.get("idle_postgres_transactions_per_s")
            per_payout = row["postgres_transactions_per_payout"]
            line += (
                f"; PostgreSQL transactions per payout {per_payout:.0f}"
                f" (idle: {'?' if idle is None else f'{idle:.0f}'}/s; pg_stat_database)"
            )
        print(line)
    for name, row in rows.items():
        found = row["checks"]
        print(
            f"\n{name}, since the server started (probe, warm-up, run): {found['payouts']} "
            f"payouts {found['payouts_by_status']}, fees {found['fees']}"
        )
        print(
            f"  the simulator holds {found['bank_instructions']} pacs.008 "
            f"{found['bank_instructions_by_status']} ({found['bank_resubmissions']} "
            f"resubmissions) for {found['succeeded']} succeeded payouts: "
            f"{'OK' if found['instructions_equal_succeeded'] else 'MISMATCH'}"
        )
        print(
            f"  alice's posted balance dropped {found['posted_drop']} minor units, expected "
            f"{found['expected_drop']} ({found['succeeded']} x {found['expected_drop_per_payout']}"
            f"); still reserved {found['still_reserved']}: "
            f"{'OK' if found['balance_dropped_by_amount_plus_fee'] else 'MISMATCH'}"
        )
        if row.get("timeline_ms"):
            print(f"Where a payout's time goes on {name} (medians, ms, from timelines):")
            for phase, ms in row["timeline_ms"].items():
                print(f"{ms:>9.1f}  {phase}")
        if row.get("postgres_connections"):
            print(
                f"{name}: PostgreSQL connections after the run {row['postgres_connections']}, "
                f"before the server started {row.get('postgres_connections_before_start')}"
            )


def report(
    c1: dict[str, float] | None,
    rows: dict[str, dict[str, Any]],
    found: dict[str, Any] | None,
    loads: list[float],
    skipped: list[str],
) -> None:
    print_table(c1, rows)
    for reason in skipped:
        print(f"skipped: {reason}")
    if found:
        print_profile(found)
    line = {
        "benchmark": "payouts",
        "commit": commit(),
        "seconds": SECONDS,
        "warmup_seconds": WARMUP_SECONDS,
        "connections": CONNECTIONS,
        "threads": THREADS,
        "amount_minor": AMOUNT_MINOR,
        "fee_minor": EXPECTED_FEE_MINOR,
        "beneficiary": BENEFICIARY,
        "database_pool_size": payments_bench.POOL_SIZE or "default",
        "ruleset": "default (the demo's), payer alice (KYC verified, level full)",
        "load_average": {"before": loads[0], "after": loads[1]},
        "c1": c1,
        "scenarios": rows,
        "skipped": skipped,
        "profile": found,
    }
    print(json.dumps(line))
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"payouts-{time.strftime('%Y%m%dT%H%M%S')}.json").write_text(json.dumps(line, indent=2))


# --- the run -------------------------------------------------------------------------------------


def postgres_reachable() -> bool:
    if shutil.which("psql") is None or shutil.which("pgbench") is None:
        return False
    try:
        psql("SELECT 1")
    except (RuntimeError, subprocess.TimeoutExpired):
        return False
    return True


def measure_c1() -> dict[str, float]:
    """bench/ledger's C1 for SECONDS, on its own database (seeded afresh)."""
    ledger = _load("ledger_bench", ROOT / "bench/ledger/run.py")
    ledger.SECONDS = SECONDS
    say(f"C1: seeding bench/ledger's database, then pgbench for {SECONDS} s")
    ledger.seed_postgres()
    result: dict[str, float] = ledger.run_c1()
    return result


def run_postgres(
    supervisor: Supervisor, work: Path, rows: dict[str, dict[str, Any]]
) -> dict[str, Any] | None:
    say("PostgreSQL: paymesh up --demo")
    psql(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
    psql(f'CREATE DATABASE "{DATABASE}"')
    env = paymesh_env(work / "postgres", f"{ADMIN_URL}/{DATABASE}")
    try:
        before: dict[str, int] | None = connections()
    except RuntimeError:
        before = None
    with paymesh_up(supervisor, work, env, "postgres") as server:
        server.database_pids = database_backends
        rows["payouts_postgres"] = measure(supervisor, server, "postgres")
        rows["payouts_postgres"]["postgres_connections_before_start"] = before
        return profile(supervisor, server, work)


def main() -> None:
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk (make bench-tools)")
    if PROFILER and shutil.which(PROFILER) is None:
        sys.exit(f"PAYMESH_BENCH_PROFILE={PROFILER}: no such executable (py-spy)")
    load_before = loadavg()
    previous = signal.signal(signal.SIGTERM, stop_on_sigterm)
    supervisor = Supervisor()
    rows: dict[str, dict[str, Any]] = {}
    c1: dict[str, float] | None = None
    found = None
    skipped: list[str] = []
    try:
        with tempfile.TemporaryDirectory(prefix="paymesh-bench-payouts-") as scratch:
            work = Path(scratch)
            if postgres_reachable():
                c1 = measure_c1()
                found = run_postgres(supervisor, work, rows)
            else:
                skipped.append(f"C1 and PostgreSQL: psql/pgbench cannot reach {ADMIN_URL}")
            if SKIP_SQLITE:
                skipped.append("SQLite: PAYMESH_BENCH_SKIP_SQLITE is set")
            else:
                say("SQLite: paymesh up --demo")
                env = paymesh_env(work / "sqlite", None)
                with paymesh_up(supervisor, work, env, "sqlite") as server:
                    rows["payouts_sqlite"] = measure(supervisor, server, "sqlite")
    except KeyboardInterrupt:
        supervisor.stop_all()
        sys.exit("interrupted: every process the benchmark started has been stopped")
    finally:
        supervisor.stop_all()
        signal.signal(signal.SIGTERM, previous)
    for row in rows.values():
        row["ratio_to_c1"] = row["requests_per_second"] / c1["transfers_per_second"] if c1 else None
    report(c1, rows, found, [load_before, loadavg()], skipped)


if __name__ == "__main__":
    main()
