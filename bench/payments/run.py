"""Payments benchmark (issue 13): low-risk P2P payments per second end to end, through the
gateway with real tokens, on PostgreSQL, beside C1 measured in the same run.

- `c1_pgbench`: bench/ledger's C1 (PostgreSQL's one-transfer-per-transaction ceiling: its
  seeding and pgbench script, imported from bench/ledger/run.py, for PAYMESH_BENCH_SECONDS).
- `payments_postgres`: `paymesh up --demo` on a fresh database `paymesh_bench_payments`
  (recreated), access log off, the gateway's rate limits off. The demo customer alice (KYC
  verified at level `full`) pays bob 1 minor unit (USD) per request, `POST /v1/payments`
  with her access token from the password grant (client `demo-legacy`) and a fresh
  `Idempotency-Key` per request (payments.lua). Her wallet is first funded by a `finance`
  deposit (`paymesh token --role finance`). Risk runs with the default rule set as the demo
  ships it: alice's velocity (> 5 payments in 24 h) adds 25 points, still `allow`; her
  KYC adds nothing; 1 cent stays far below the `full` level's limits (USD 25,000 a day),
  so every payment is a low-risk `allow` and is booked at once (201, `succeeded`).
  wrk with PAYMESH_BENCH_CONNECTIONS (8) for PAYMESH_BENCH_SECONDS (10) after a warm-up.
  Target: >= 0.15 x C1 payments/s with p99 <= 100 ms, every answer a 201 `succeeded`.
- `payments_sqlite`: the same on SQLite in a scratch data directory, for comparison.

For each server: payments/s, p50/p99, the HTTP status mix and the payments' statuses (from
the bodies), server CPU per payment (utime+stime of the server's process tree) and, on
PostgreSQL, the database backends' CPU per payment; the sum of alice's and bob's balances
before and after (money moved, none made or lost); and where a payment's time goes, from the
timelines (`GET /v1/payments/{id}/timeline`) of the newest PAYMESH_BENCH_TIMELINES (50)
payments: the payment row's insert, the risk decision, the ledger step's record, the
ledger batch, and the rest of the request (gateway, token check, idempotency look-up, the
wallet and profile look-ups before the row exists, the answer). With PAYMESH_BENCH_PROFILE
(a py-spy executable; default /tmp/spyenv/bin/py-spy when it exists): py-spy on the
PostgreSQL server under the same load, its samples by package (innermost frame).

Prints a table and one JSON line; the JSON is also written to
bench/results/payments-<timestamp>.json. Every process it starts is stopped on exit, on
error and on Ctrl-C.

    .venv/bin/python bench/payments/run.py        # or: make bench

Knobs: PAYMESH_BENCH_SECONDS (10), PAYMESH_BENCH_CONNECTIONS (8),
PAYMESH_BENCH_WARMUP_SECONDS (2), PAYMESH_BENCH_TIMELINES (50),
PAYMESH_BENCH_POSTGRES_URL (postgresql://postgres@127.0.0.1:5432), PAYMESH_BENCH_PROFILE,
PAYMESH_BENCH_SKIP_SQLITE (set: PostgreSQL only).
"""

from __future__ import annotations

import base64
import datetime as dt
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
import urllib.error
import urllib.parse
import urllib.request
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
DATABASE = "paymesh_bench_payments"
SECONDS = int(os.environ.get("PAYMESH_BENCH_SECONDS", "10"))
CONNECTIONS = int(os.environ.get("PAYMESH_BENCH_CONNECTIONS", "8"))
WARMUP_SECONDS = int(os.environ.get("PAYMESH_BENCH_WARMUP_SECONDS", "2"))
TIMELINES = int(os.environ.get("PAYMESH_BENCH_TIMELINES", "50"))
DEFAULT_PROFILER = "/tmp/spyenv/bin/py-spy"
PROFILER = os.environ.get(
    "PAYMESH_BENCH_PROFILE", DEFAULT_PROFILER if Path(DEFAULT_PROFILER).exists() else ""
)
SKIP_SQLITE = bool(os.environ.get("PAYMESH_BENCH_SKIP_SQLITE"))
# Each service's SQLAlchemy pool (PAYMESH_DATABASE_POOL_SIZE, and as many again in overflow);
# unset: the platform's default. A PostgreSQL shared with other test suites may not have
# the slots the default pools can open (see bench/README.md).
POOL_SIZE = os.environ.get("PAYMESH_BENCH_DATABASE_POOL_SIZE", "")
THREADS = min(2, CONNECTIONS)
SIGNING_SECRET = secrets.token_urlsafe(32)

TARGET_RATIO_TO_C1 = 0.15
TARGET_P99_MS = 100.0
AMOUNT_MINOR = 1
FUNDING_MINOR = 100_000_000  # USD 1,000,000: no run drains alice's wallet
# identity/demo.py's documented demo credentials (wallets/demo.py finds alice the same way).
DEMO_PASSWORD = "paymesh-demo-password"
LEGACY_CLIENT = ("demo-legacy", "demo-legacy-secret")


def say(text: str) -> None:
    """Progress, on stderr: the table and the JSON line stay alone on stdout."""
    print(f"[payments bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def loadavg() -> float:
    return os.getloadavg()[0]


def ledger_bench() -> Any:
    """bench/ledger/run.py as a module: its C1 is the reference (as bench/audit uses it)."""
    spec = importlib.util.spec_from_file_location("ledger_bench", ROOT / "bench/ledger/run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def psql(sql: str, database: str = "postgres", attempts: int = 5) -> str:
    """psql's answer; retried a few times: when the server has no connection slot left
    (other test suites share it), psql's connection is refused until one frees."""
    for attempt in range(attempts):
        result = subprocess.run(
            ["psql", f"{ADMIN_URL}/{database}", "-v", "ON_ERROR_STOP=1", "-qAtc", sql],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if result.returncode == 0:
            return result.stdout
        if attempt + 1 < attempts:
            time.sleep(0.5)
    raise RuntimeError(f"psql {sql!r} failed ({result.returncode}): {result.stderr.strip()}")


def database_backends() -> list[int]:
    out = psql(f"SELECT pid FROM pg_stat_activity WHERE datname = '{DATABASE}'")
    return [int(line) for line in out.split()]


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


# --- the server and its customers -------------------------------------------------------------


@dataclass
class Server:
    port: int
    process: subprocess.Popen[bytes]
    env: dict[str, str]
    work: Path
    log: Path
    database_pids: Callable[[], list[int]] | None = None
    payer_token: str = ""
    payee_token: str = ""
    source_wallet: str = ""
    destination_wallet: str = ""

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def server_pids(self) -> list[int]:
        pids: list[int] = process_tree(self.process.pid)
        return pids


def paymesh_env(data_dir: Path, database_url: str | None) -> dict[str, str]:
    """The caller's environment without its PAYMESH_ settings (the server runs in a scratch
    directory, so no .env is read): every run measures the same configuration."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("PAYMESH_") or name.startswith("PAYMESH_BENCH_")
    }
    env |= {
        "PAYMESH_ENV": "development",
        "PAYMESH_SIGNING_SECRET": SIGNING_SECRET,
        "PAYMESH_ACCESS_LOG": "false",
        "PAYMESH_GATEWAY_RATE_LIMITS": "false",
        "PAYMESH_LOG_LEVEL": "WARNING",
        "PAYMESH_HOST": "127.0.0.1",
        "PAYMESH_DATA_DIR": str(data_dir),
    }
    if database_url:
        env["PAYMESH_DATABASE_URL"] = database_url
    if POOL_SIZE:
        env["PAYMESH_DATABASE_POOL_SIZE"] = POOL_SIZE
    return env


def request(
    url: str,
    *,
    token: str | None = None,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """One call; a dict or list body goes as JSON; the answer's JSON (or text)."""
    sent = dict(headers or {})
    if token:
        sent["Authorization"] = f"Bearer {token}"
    data = body
    if isinstance(body, dict | list):
        data = json.dumps(body).encode()
        sent["Content-Type"] = "application/json"
    call = urllib.request.Request(url, data, sent)
    try:
        with urllib.request.urlopen(call, timeout=60) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def password_token(server: Server, username: str) -> str:
    """A demo customer's access token: the password grant of the legacy demo client."""
    basic = base64.b64encode(f"{LEGACY_CLIENT[0]}:{LEGACY_CLIENT[1]}".encode()).decode()
    form = {
        "grant_type": "password",
        "username": username,
        "password": DEMO_PASSWORD,
        "scope": "openid",
    }
    status, answer = request(
        server.url("/oauth2/token"),
        body=urllib.parse.urlencode(form).encode(),
        headers={
            "Authorization": f"Basic {basic}",
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    if status != 200:
        raise RuntimeError(f"/oauth2/token for {username} answered {status}: {answer}")
    access: str = answer["access_token"]
    return access


def usd_wallet(server: Server, token: str) -> dict[str, Any]:
    status, answer = request(server.url("/v1/wallets"), token=token)
    if status != 200:
        raise RuntimeError(f"GET /v1/wallets answered {status}: {answer}")
    for wallet in answer["data"]:
        if wallet["currency"] == "USD":
            found: dict[str, Any] = wallet
            return found
    raise RuntimeError(f"no USD wallet among {answer['data']}")


def development_token(server: Server, subject: str, role: str) -> str:
    """`paymesh token` with the server's settings (its signing secret)."""
    result = subprocess.run(
        [str(BIN / "paymesh"), "token", "--subject", subject, "--role", role],
        check=True,
        capture_output=True,
        text=True,
        env=server.env,
        cwd=server.work,
        timeout=120,
    )
    return result.stdout.strip().splitlines()[-1]


def fund(server: Server) -> None:
    """A `finance` deposit into alice's USD wallet: no run drains it."""
    finance = development_token(server, "bench-finance", "finance")
    status, answer = request(
        server.url(f"/v1/wallets/{server.source_wallet}/deposits"),
        token=finance,
        body={"amount": FUNDING_MINOR, "reference": "payments benchmark funding"},
        headers={"Idempotency-Key": f"bench-funding-{secrets.token_hex(6)}"},
    )
    if status != 201:
        raise RuntimeError(f"the funding deposit answered {status}: {answer}")


def pay(server: Server) -> tuple[int, Any]:
    return request(
        server.url("/v1/payments"),
        token=server.payer_token,
        body={
            "type": "p2p",
            "source_wallet_id": server.source_wallet,
            "destination": {"wallet_id": server.destination_wallet},
            "amount": AMOUNT_MINOR,
            "currency": "USD",
        },
        headers={"Idempotency-Key": f"bench-probe-{secrets.token_hex(8)}"},
    )


def probe(server: Server) -> dict[str, Any]:
    """One payment before the load: a misconfigured run fails loudly here. The demo seed
    (the UN list, the wallets) finishes after the server answers /health: retried a while."""
    deadline = time.monotonic() + 90
    while True:
        status, answer = pay(server)
        if status == 201 and answer.get("status") == "succeeded":
            found: dict[str, Any] = answer
            return found
        if time.monotonic() > deadline:
            raise RuntimeError(f"the probe payment answered {status}: {answer}")
        time.sleep(1)


def balances(server: Server) -> int:
    """alice's and bob's USD balances added up (posted)."""
    payer = usd_wallet(server, server.payer_token)
    payee = usd_wallet(server, server.payee_token)
    return int(payer["balance"]["posted"]) + int(payee["balance"]["posted"])


@contextmanager
def paymesh_up(
    supervisor: Supervisor, work: Path, env: dict[str, str], shape: str
) -> Iterator[Server]:
    """`paymesh up --demo` (every service and the gateway in one process), alice's and
    bob's tokens and USD wallets, alice's wallet funded, one probe payment."""
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
                server.payee_token = password_token(server, "bob")
                server.source_wallet = usd_wallet(server, server.payer_token)["id"]
                server.destination_wallet = usd_wallet(server, server.payee_token)["id"]
                break
            except (RuntimeError, KeyError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
        fund(server)
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
        str(HERE / "payments.lua"),
        f"http://127.0.0.1:{port}/",
    ]


def drive(supervisor: Supervisor, server: Server, seconds: int) -> str:
    env = {
        **os.environ,
        "TOKEN": server.payer_token,
        "SOURCE": server.source_wallet,
        "DESTINATION": server.destination_wallet,
        "AMOUNT": str(AMOUNT_MINOR),
        "RUN": secrets.token_hex(4),
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


def counts(out: str, kind: str) -> dict[str, int]:
    """payments.lua's `status: 201 n` or `payment: succeeded n` lines."""
    found = re.findall(rf"^{kind}: (\S+) (\d+)$", out, re.MULTILINE)
    return {name: int(n) for name, n in sorted(found)}


def measure(supervisor: Supervisor, server: Server, shape: str) -> dict[str, Any]:
    """Warm up, then one measured wrk run; server (and PostgreSQL) CPU per payment from
    /proc over the run; the status mix payments.lua counted; the balances' sum kept."""
    refresh_tokens(server)
    total_before = balances(server)
    if WARMUP_SECONDS > 0:
        say(f"{shape}: warm-up, {WARMUP_SECONDS} s")
        drive(supervisor, server, WARMUP_SECONDS)
        time.sleep(1)  # the requests wrk dropped at its end finish on the server
    database = server.database_pids() if server.database_pids else []
    load_before = loadavg()
    server_before = cpu_snapshot(server.server_pids())
    database_before = cpu_snapshot(database)
    say(f"{shape}: measuring, {CONNECTIONS} connections, {SECONDS} s")
    out = drive(supervisor, server, SECONDS)
    server_after = cpu_snapshot(server.server_pids())
    if server.database_pids:
        database = list({*database, *server.database_pids()})
    database_after = cpu_snapshot(database)
    load_after = loadavg()
    time.sleep(1)
    row: dict[str, Any] = parse_wrk(out)
    requests = row["requests"] or 1
    row["status_codes"] = counts(out, "status")
    row["payment_statuses"] = counts(out, "payment")
    row["not_201"] = sum(n for code, n in row["status_codes"].items() if code != "201")
    row["not_succeeded"] = sum(
        n for name, n in row["payment_statuses"].items() if name != "succeeded"
    ) + sum(n for code, n in row["status_codes"].items() if not code.startswith("2"))
    row["server_cpu_ms_per_payment"] = cpu_used(server_before, server_after) * 1e3 / requests
    row["database_cpu_ms_per_payment"] = (
        cpu_used(database_before, database_after) * 1e3 / requests if database_after else None
    )
    try:
        row["postgres_connections"] = connections() if server.database_pids else None
    except RuntimeError as error:  # no slot left for psql either
        row["postgres_connections"] = {"error": str(error)[:300]}
    row["balances_conserved"] = conserved(server, total_before)
    row["timeline_ms"] = timelines(server, row["latency_ms_p50"])
    row["server_errors"] = server_errors(server.log)
    row["load_average"] = {"before": load_before, "after": load_after}
    return row


def conserved(server: Server, total_before: int) -> bool | None:
    """Whether alice's and bob's balances add up as before (None: the server would not say;
    the gateway's circuit breaker may be open after a run with failures)."""
    for _ in range(10):
        try:
            return balances(server) == total_before
        except RuntimeError as error:
            say(f"balances: {error}")
            time.sleep(3)
    return None


def refresh_tokens(server: Server) -> None:
    """Fresh access tokens (they live 15 minutes) before each measured server."""
    server.payer_token = password_token(server, "alice")
    server.payee_token = password_token(server, "bob")


def server_errors(log: Path) -> dict[str, int]:
    """The server log's error records, by service and the exception's last line (or the
    event): why answers were not 201."""
    found: Counter[str] = Counter()
    for line in log.read_text(errors="replace").splitlines():
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("level") not in ("error", "critical"):
            continue
        lines = str(record.get("exception") or "").strip().splitlines()
        last = next((text for text in reversed(lines) if "sqlalche.me" not in text), "")
        found[f"{record.get('service', '-')}: {last or record.get('event')}"[:200]] += 1
    return dict(found.most_common(10))


# --- where a payment's time goes ---------------------------------------------------------------


def _instant(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def timelines(server: Server, latency_ms_p50: float) -> dict[str, float] | None:
    """Medians (ms) of each step of the newest TIMELINES payments, from their timelines
    (those the server answers: after a run that opened the gateway's circuit breaker, it
    may refuse some)."""
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
    sampled = 0
    for payment in page["items"]:
        status, timeline = request(
            server.url(f"/v1/payments/{payment['id']}/timeline"), token=server.payer_token
        )
        if status != 200:
            continue
        sampled += 1
        at = {(step["step"], step["outcome"]): _instant(step["at"]) for step in timeline["steps"]}
        created = _instant(payment["created_at"])
        marks = [
            ("insert the payment row", created, at.get(("created", "ok"))),
            ("risk decision (evaluate)", at.get(("created", "ok")), at.get(("risk", "allow"))),
            ("record the ledger step", at.get(("risk", "allow")), at.get(("ledger", "attempted"))),
            ("ledger batch", at.get(("ledger", "attempted")), at.get(("ledger", "posted"))),
            ("row created -> succeeded", created, _instant(payment["updated_at"])),
        ]
        for name, start, end in marks:
            if start is not None and end is not None:
                phases.setdefault(name, []).append((end - start) * 1e3)
    medians = {name: statistics.median(values) for name, values in phases.items()}
    inside = medians.get("row created -> succeeded")
    if inside is not None:
        medians["before the row and after success (wrk p50 - the above)"] = latency_ms_p50 - inside
    medians["payments sampled"] = float(sampled)
    return medians


# --- py-spy (PAYMESH_BENCH_PROFILE) ------------------------------------------------------------


def package(frame: str) -> str:
    """The package a py-spy frame (`function (path/to/file.py:line)`) belongs to:
    `paymesh.<service>`, a third-party distribution, or the standard library module."""
    path = frame[frame.rfind("(") + 1 :].rsplit(":", 1)[0] if "(" in frame else frame
    if "/paymesh/" in path:
        parts = path.split("/paymesh/", 1)[1].split("/")
        return "paymesh." + (parts[0].removesuffix(".py") if parts else "?")
    for marker in ("site-packages/", "dist-packages/"):
        if marker in path:
            return path.split(marker, 1)[1].split("/")[0].removesuffix(".py")
    match = re.search(r"python3\.\d+/(.+)$", path)
    if match:
        return "stdlib." + match.group(1).split("/")[0].removesuffix(".py")
    return path.lstrip("/").split("/")[0] or "?"  # a compiled module: `uvloop/loop.pyx`


def profile(supervisor: Supervisor, server: Server, work: Path) -> dict[str, Any] | None:
    """py-spy on the server while wrk drives payments: samples of the thread holding the
    GIL, by the package of the innermost frame, and inclusive by package."""
    if not PROFILER:
        return None
    say("profiling the PostgreSQL server under the payments load")
    raw = work / "payments-profile.txt"
    spy = supervisor.start(
        [PROFILER, "record", "--pid", str(server.process.pid), "--gil",
         "--rate", "250", "--duration", str(SECONDS), "--format", "raw", "--output", str(raw)],
        output=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(1)  # py-spy attaches
    drive(supervisor, server, SECONDS + 1)
    spy.wait(timeout=60)
    supervisor.stop(spy)
    return summarise_profile(raw)


def summarise_profile(raw: Path) -> dict[str, Any]:
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
    kept = results / f"payments-profile-{time.strftime('%Y%m%dT%H%M%S')}.txt"
    shutil.copyfile(raw, kept)
    every = max(total, 1)
    return {
        "samples": total,
        "innermost_by_package": {k: n / every for k, n in innermost.most_common(25)},
        "inclusive_by_package": {k: n / every for k, n in inclusive.most_common(25)},
        "top_functions": {k: n / every for k, n in functions.most_common(20)},
        "raw": str(kept),
    }


# --- report --------------------------------------------------------------------------------------


def verdict(row: dict[str, Any], c1: float | None) -> bool | None:
    if c1 is None:
        return None
    return bool(
        row["requests_per_second"] >= TARGET_RATIO_TO_C1 * c1
        and row["latency_ms_p99"] <= TARGET_P99_MS
        and row["not_succeeded"] + row["not_201"] + row["socket_errors"] == 0
    )


def print_table(c1: dict[str, float] | None, rows: dict[str, dict[str, Any]]) -> None:
    print(
        f"\nLow-risk P2P payments end to end (`paymesh up --demo`, gateway, alice's password-"
        f"grant token, 1 minor unit to bob): wrk {CONNECTIONS} connections, {THREADS} threads, "
        f"{SECONDS} s after a {WARMUP_SECONDS} s warm-up"
    )
    print(
        f"{'scenario':<20}{'per s':>8}{'x C1':>7}{'p50 ms':>9}{'p99 ms':>9}{'cpu ms':>8}"
        f"{'db ms':>7}{'not 201':>8}{'load':>10}  statuses"
    )
    if c1 is not None:
        print(
            f"{'c1_pgbench':<20}{c1['transfers_per_second']:>8.0f}{1:>7.2f}"
            f"{c1['latency_ms_avg']:>9.2f}  (average; pgbench, 8 clients)"
        )
    for name, row in rows.items():
        ratio = row.get("ratio_to_c1")
        db = row["database_cpu_ms_per_payment"]
        met = {True: "PASS", False: "FAIL", None: ""}[row.get("target_met")]
        load = f"{row['load_average']['before']:.1f}-{row['load_average']['after']:.1f}"
        print(
            f"{name:<20}{row['requests_per_second']:>8.1f}"
            f"{'' if ratio is None else f'{ratio:.3f}':>7}"
            f"{row['latency_ms_p50']:>9.1f}{row['latency_ms_p99']:>9.1f}"
            f"{row['server_cpu_ms_per_payment']:>8.2f}{'' if db is None else f'{db:.2f}':>7}"
            f"{row['not_201'] + row['socket_errors']:>8}{load:>10}  "
            f"{row['status_codes']} {row['payment_statuses']} {met}"
        )
        for refusal in row.get("first_refusals", []):
            print(f"{name}: a refusal: {refusal}")
        for error, n in row.get("server_errors", {}).items():
            print(f"{name}: server log: {n} x {error}")
    print(
        f"target on payments_postgres: >= {TARGET_RATIO_TO_C1} x C1 and p99 <= "
        f"{TARGET_P99_MS:g} ms, every answer 201 succeeded. cpu ms: server CPU per payment "
        "(the server's process tree); db ms: PostgreSQL backends' CPU per payment"
    )
    for name, row in rows.items():
        if row.get("timeline_ms"):
            print(f"\nWhere a payment's time goes on {name} (medians, ms, from timelines):")
            for phase, ms in row["timeline_ms"].items():
                print(f"{ms:>9.1f}  {phase}")
        print(f"{name}: balances of alice and bob conserved: {row['balances_conserved']}")
        if row.get("postgres_connections"):
            print(
                f"{name}: PostgreSQL connections after the run {row['postgres_connections']}, "
                f"before the server started {row.get('postgres_connections_before_start')}"
            )


def print_profile(found: dict[str, Any]) -> None:
    print(f"\nWhere the PostgreSQL server's time goes (py-spy, {found['samples']} GIL samples)")
    print("by package of the innermost frame:")
    for name, share in list(found["innermost_by_package"].items())[:15]:
        print(f"{share:>7.1%}  {name}")
    print("inclusive (a package anywhere on the stack):")
    for name, share in list(found["inclusive_by_package"].items())[:15]:
        print(f"{share:>7.1%}  {name}")
    print(f"raw stacks: {found['raw']}")


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
        "benchmark": "payments",
        "commit": commit(),
        "seconds": SECONDS,
        "warmup_seconds": WARMUP_SECONDS,
        "connections": CONNECTIONS,
        "threads": THREADS,
        "amount_minor": AMOUNT_MINOR,
        "database_pool_size": POOL_SIZE or "default",
        "ruleset": "default (the demo's), payer alice (KYC verified, level full)",
        "target": {"ratio_to_c1": TARGET_RATIO_TO_C1, "latency_ms_p99": TARGET_P99_MS},
        "load_average": {"before": loads[0], "after": loads[1]},
        "c1": c1,
        "scenarios": rows,
        "skipped": skipped,
        "profile": found,
    }
    print(json.dumps(line))
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"payments-{time.strftime('%Y%m%dT%H%M%S')}.json").write_text(json.dumps(line, indent=2))


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
    ledger = ledger_bench()
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
    before = connections()
    with paymesh_up(supervisor, work, env, "postgres") as server:
        server.database_pids = database_backends
        rows["payments_postgres"] = measure(supervisor, server, "postgres")
        rows["payments_postgres"]["postgres_connections_before_start"] = before
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
        with tempfile.TemporaryDirectory(prefix="paymesh-bench-payments-") as scratch:
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
                    rows["payments_sqlite"] = measure(supervisor, server, "sqlite")
    except KeyboardInterrupt:
        supervisor.stop_all()
        sys.exit("interrupted: every process the benchmark started has been stopped")
    finally:
        supervisor.stop_all()
        signal.signal(signal.SIGTERM, previous)
    for row in rows.values():
        row["ratio_to_c1"] = row["requests_per_second"] / c1["transfers_per_second"] if c1 else None
    if "payments_postgres" in rows:
        rows["payments_postgres"]["target_met"] = verdict(
            rows["payments_postgres"], c1["transfers_per_second"] if c1 else None
        )
    report(c1, rows, found, [load_before, loadavg()], skipped)


if __name__ == "__main__":
    main()
