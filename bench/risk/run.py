"""Risk benchmark (issue 11): the cost of one risk decision with the default rule set and
the UN consolidated list loaded, in two layers, each beside a reference measured in the
same run (the machine is shared and its speed drifts; the ratios are what compare).

1. The decision engine in this process, no HTTP, no database: per decision, `Facts(...)`,
   `CompiledRuleSet(1, DEFAULT_RULESET).evaluate` and `ScreeningIndex.screen` of the
   counterparty's name and of the customer's legal name (with date of birth and country),
   over the UN list of 2020-11-24 (`src/paymesh/risk/data`). Names: mostly ordinary names
   (first names and surnames of many languages, combined), some listed names with one
   typo. Reference: `json.dumps` of the evaluation's request body, in blocks alternating
   with the decisions' blocks, so a drift of the machine's speed falls on both alike. The
   issue's target: p99 <= 5 ms per decision and >= 1,000 decisions/s on one core.
2. `POST /v1/risk/evaluate` end to end on `paymesh up --demo` (SQLite in a scratch
   directory; with PostgreSQL too, database `paymesh_bench_risk`, recreated, when psql
   reaches PAYMESH_BENCH_POSTGRES_URL): an RS256 client-credentials token of a client with
   role `service` made with `paymesh identity create-client`, the demo customer alice (her
   id through the password grant and userinfo, as wallets/demo.py finds it), a new
   transaction id per request (evaluate.lua). Reference: `GET /health` on the same server.
   Scenarios: the counterparty "Maria Lopez" on every request; the engine's name mix; with
   an `Idempotency-Key` on every request, as payments' `HttpRiskClient` sends it; one
   connection (one request at a time: latency without a queue in front of it). Each
   payment is of PAYMESH_BENCH_AMOUNT US cents (1): alice stays under her daily limit, so
   every decision is an `allow` that writes its activity; the decision mix is reported.
   The target's rate is judged on the 8-connection row, its p99 on the one-connection row
   (at 1,000/s with 8 requests in flight the mean latency is 8 ms: Little's law).
3. With PAYMESH_BENCH_PROFILE (a py-spy executable): py-spy on the SQLite server under the
   evaluation load, and where its time goes.

Prints a table and one JSON line; the JSON is also written to
bench/results/risk-<timestamp>.json. Every process it starts is stopped on exit, on error
and on Ctrl-C.

Knobs: PAYMESH_BENCH_SECONDS (10, per HTTP scenario), PAYMESH_BENCH_CONNECTIONS (8),
PAYMESH_BENCH_WARMUP_SECONDS (1), PAYMESH_BENCH_DECISIONS (20000, engine decisions),
PAYMESH_BENCH_AMOUNT (1, US cents), PAYMESH_BENCH_POSTGRES_URL
(postgresql://postgres@127.0.0.1:5432; PostgreSQL rows are skipped when psql cannot reach
it), PAYMESH_BENCH_PROFILE.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
import os
import random
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
from dataclasses import dataclass, field
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
from support import create_client as support_create_client

from paymesh.risk.rules import DEFAULT_RULESET, CompiledRuleSet, Facts
from paymesh.risk.screening import DEFAULT_THRESHOLD, ListedEntry, ScreeningIndex, load_un_xml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
BIN = Path(sys.executable).parent
UN_LIST = ROOT / "src" / "paymesh" / "risk" / "data" / "un-consolidated-2020-11-24.xml.gz"
ADMIN_URL = os.environ.get("PAYMESH_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432")
DATABASE = "paymesh_bench_risk"
SECONDS = int(os.environ.get("PAYMESH_BENCH_SECONDS", "10"))
CONNECTIONS = int(os.environ.get("PAYMESH_BENCH_CONNECTIONS", "8"))
WARMUP_SECONDS = int(os.environ.get("PAYMESH_BENCH_WARMUP_SECONDS", "1"))
DECISIONS = int(os.environ.get("PAYMESH_BENCH_DECISIONS", "20000"))
AMOUNT = int(os.environ.get("PAYMESH_BENCH_AMOUNT", "1"))
"""USD cents per evaluated payment. One cent keeps alice under her daily limit for the
whole run, so every decision is an `allow` that writes its activity (the costlier path);
a larger amount turns the later ones into `block`s."""
PROFILER = os.environ.get("PAYMESH_BENCH_PROFILE", "")
THREADS = min(2, CONNECTIONS)
SIGNING_SECRET = secrets.token_urlsafe(32)

TARGET_P99_MS = 5.0
TARGET_PER_SECOND = 1000.0
BLOCK = 250  # decisions (or reference calls) per alternating block
TYPO_SHARE = 0.15  # of counterparty names: a listed name with one typo; the rest ordinary
COUNTERPARTY = "Maria Lopez"
# identity/demo.py's documented demo credentials (wallets/demo.py finds alice the same way).
DEMO_PASSWORD = "paymesh-demo-password"
LEGACY_CLIENT = ("demo-legacy", "demo-legacy-secret")

FIRST_NAMES = (
    "Maria", "Jose", "Anna", "John", "Wei", "Li", "Sofia", "Lucas", "Emma", "Noah", "Olga",
    "Ivan", "Fatima", "Aisha", "Kenji", "Yuki", "Priya", "Rahul", "Chloe", "Liam", "Mateo",
    "Camila", "Lars", "Ingrid", "Pierre", "Claire", "Giulia", "Marco", "Hannah", "Jonas",
    "Zofia", "Piotr", "Ana", "Joao", "Nia", "Kwame", "Amara", "Sven", "Elif", "Mehmet",
    "Daniel", "Sarah", "Thomas", "Laura", "Paul", "Julia", "Peter", "Eva", "Minh", "Linh",
)  # fmt: skip
SURNAMES = (
    "Lopez", "Garcia", "Smith", "Johnson", "Wang", "Zhang", "Muller", "Schmidt", "Rossi",
    "Bianchi", "Dubois", "Martin", "Nowak", "Kowalski", "Silva", "Santos", "Tanaka",
    "Suzuki", "Sharma", "Patel", "Nguyen", "Tran", "Kim", "Park", "Ivanova", "Petrov",
    "Andersson", "Larsen", "Jensen", "OBrien", "Murphy", "Fernandez", "Gonzalez", "Costa",
    "Mensah", "Okafor", "Yilmaz", "Demir", "Novak", "Horvat", "Dijkstra", "Janssen",
    "Brown", "Taylor", "Wilson", "Moreau", "Laurent", "Weber", "Fischer", "Haddad",
)  # fmt: skip


def say(text: str) -> None:
    """Progress, on stderr: the table and the JSON line stay alone on stdout."""
    print(f"[risk bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def loadavg() -> float:
    return os.getloadavg()[0]


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of values already sorted."""
    return values[max(0, math.ceil(fraction * len(values)) - 1)]


# --- the names --------------------------------------------------------------------------------


def ordinary_names(rng: random.Random, count: int) -> list[str]:
    return [f"{rng.choice(FIRST_NAMES)} {rng.choice(SURNAMES)}" for _ in range(count)]


def with_typo(rng: random.Random, name: str) -> str:
    """One letter substituted, dropped, doubled or swapped with its neighbour, in one word
    of three letters or more."""
    words = name.split()
    candidates = [i for i, word in enumerate(words) if len(word) >= 3]
    if not candidates:
        return name
    at = rng.choice(candidates)
    word = words[at]
    i = rng.randrange(1, len(word) - 1)
    kind = rng.randrange(4)
    if kind == 0:
        word = word[:i] + rng.choice("aeiourstnl") + word[i + 1 :]
    elif kind == 1:
        word = word[:i] + word[i + 1 :]
    elif kind == 2:
        word = word[:i] + word[i] + word[i:]
    else:
        word = word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    words[at] = word
    return " ".join(words)


def listed_names(entries: tuple[ListedEntry, ...]) -> list[str]:
    """Primary Latin-script names of the list (letters, spaces and hyphens only, so they
    travel in wrk's JSON bodies unescaped)."""
    plain = re.compile(r"^[A-Za-z][A-Za-z \-]{3,80}$")
    return [
        " ".join(name.text.split())
        for entry in entries
        for name in entry.names
        if name.strength == "primary" and plain.match(name.text)
    ]


def counterparty_mix(rng: random.Random, listed: list[str], count: int) -> list[str]:
    """`count` counterparty names: TYPO_SHARE listed names with a typo, the rest ordinary."""
    typos = round(count * TYPO_SHARE)
    names = [with_typo(rng, rng.choice(listed)) for _ in range(typos)]
    names += ordinary_names(rng, count - typos)
    rng.shuffle(names)
    return names


# --- layer 1: the decision engine in this process -----------------------------------------------


@dataclass
class Case:
    """One decision's input: the request body as a payment service would send it and the
    facts profiles, forex and the velocity store would give."""

    body: dict[str, Any]
    customer: str
    customer_birth: dt.date
    facts: dict[str, Any]


def cases(rng: random.Random, counterparties: list[str]) -> list[Case]:
    customers = ordinary_names(rng, len(counterparties))
    out = []
    for number, (party, customer) in enumerate(zip(counterparties, customers, strict=True)):
        amount = rng.choice((500, 1500, 4999, 25_000, 120_000, 600_000, 1_500_000))
        body = {
            "transaction_id": f"txn_engine_{number}",
            "customer_id": f"usr_{number % 500:05d}",
            "type": "p2p",
            "amount": amount,
            "currency": "USD",
            "counterparty": {"name": party, "country": "ES", "type": "individual"},
        }
        facts = {
            "amount_usd": amount,
            "kyc_status": "verified" if rng.random() < 0.85 else "pending",
            "kyc_level": "full",
            "transactions_24h": rng.randrange(0, 9),
            "daily_usd": rng.randrange(0, 500_000),
            "monthly_usd": rng.randrange(0, 3_000_000),
            "limit_per_transaction_usd": 1_000_000,
            "limit_daily_usd": 2_500_000,
            "limit_monthly_usd": 10_000_000,
            "type": "p2p",
            "currency": "USD",
            "counterparty_country": "ES",
        }
        birth = dt.date(rng.randrange(1950, 2004), rng.randrange(1, 13), rng.randrange(1, 29))
        out.append(Case(body, customer, birth, facts))
    return out


def decide(index: ScreeningIndex, ruleset: CompiledRuleSet, case: Case) -> tuple[str, bool]:
    """What the service does in CPU for one evaluation once the remote facts are in."""
    party = case.body["counterparty"]
    matches = index.screen(
        party["name"], type=party["type"], country=party["country"], threshold=DEFAULT_THRESHOLD
    )
    matches += index.screen(
        case.customer,
        type="individual",
        country="GB",
        date_of_birth=case.customer_birth,
        threshold=DEFAULT_THRESHOLD,
    )
    facts = Facts(**case.facts, sanctions_hit=bool(matches))
    return ruleset.evaluate(facts).decision, bool(matches)


def engine() -> dict[str, Any]:
    """Decisions and reference calls in alternating blocks; per-call latency of each."""
    say("engine: loading the UN list and building the index")
    load_before = loadavg()
    started = time.perf_counter()
    sanctions = load_un_xml(UN_LIST)
    loaded = time.perf_counter()
    index = ScreeningIndex(sanctions.entries)
    built = time.perf_counter()
    ruleset = CompiledRuleSet(1, DEFAULT_RULESET)
    rng = random.Random(11)
    listed = listed_names(sanctions.entries)
    work = cases(rng, counterparty_mix(rng, listed, DECISIONS))
    for case in work[:500]:  # warm up: caches, branch predictors, the allocator
        decide(index, ruleset, case)
        json.dumps(case.body)
    say(f"engine: {DECISIONS} decisions, in blocks of {BLOCK} beside json.dumps blocks")
    run = alternating_blocks(index, ruleset, work)
    best = best_of(index, ruleset, work[:2000], 3)
    parts = components(index, ruleset, work[:2000], rng, listed)
    decision_ms = sorted(ns / 1e6 for ns in run.decision_ns)
    reference_ms = sorted(ns / 1e6 for ns in run.reference_ns)
    return {
        "list": {
            "published": sanctions.published,
            "entries": len(sanctions.entries),
            "names": index.size,
            "load_seconds": loaded - started,
            "index_seconds": built - loaded,
        },
        "decisions": len(decision_ms),
        "typo_share": TYPO_SHARE,
        "decision_mix": dict(run.outcomes),
        "screening_hits": run.hits,
        "decisions_per_second": len(decision_ms) / run.decision_wall,
        # The process's own CPU time over the decisions' blocks: on a shared machine the
        # wall clock also counts the time other processes held the core.
        "decisions_per_cpu_second": len(decision_ms) / run.decision_cpu,
        "cpu_share_of_wall": run.decision_cpu / run.decision_wall,
        "latency_ms_p50_best_of_3": percentile(best, 0.50),
        "latency_ms_p99_best_of_3": percentile(best, 0.99),
        "latency_ms_p50": percentile(decision_ms, 0.50),
        "latency_ms_p99": percentile(decision_ms, 0.99),
        "latency_ms_max": decision_ms[-1],
        "latency_ms_mean": statistics.fmean(decision_ms),
        "reference": "json.dumps of the evaluation request body",
        "reference_per_second": len(reference_ms) / run.reference_wall,
        "reference_ms_p50": percentile(reference_ms, 0.50),
        "reference_ms_p99": percentile(reference_ms, 0.99),
        "decision_over_reference_p50": percentile(decision_ms, 0.50)
        / percentile(reference_ms, 0.50),
        "decision_over_reference_mean": statistics.fmean(decision_ms)
        / statistics.fmean(reference_ms),
        "components": parts,
        "load_average": {"before": load_before, "after": loadavg()},
    }


@dataclass
class Blocks:
    decision_ns: list[int] = field(default_factory=list)
    reference_ns: list[int] = field(default_factory=list)
    decision_wall: float = 0.0
    decision_cpu: float = 0.0
    reference_wall: float = 0.0
    outcomes: Counter[str] = field(default_factory=Counter)
    hits: int = 0


def alternating_blocks(index: ScreeningIndex, ruleset: CompiledRuleSet, work: list[Case]) -> Blocks:
    """A block of decisions, then a block of reference calls on the same cases, and so on:
    a drift of the machine's speed falls on both alike."""
    run = Blocks()
    clock = time.perf_counter_ns
    for start in range(0, len(work), BLOCK):
        block = work[start : start + BLOCK]
        begin, begin_cpu = time.perf_counter(), time.process_time()
        for case in block:
            t0 = clock()
            decision, hit = decide(index, ruleset, case)
            run.decision_ns.append(clock() - t0)
            run.outcomes[decision] += 1
            run.hits += hit
        run.decision_wall += time.perf_counter() - begin
        run.decision_cpu += time.process_time() - begin_cpu
        begin = time.perf_counter()
        for case in block:
            t0 = clock()
            json.dumps(case.body)
            run.reference_ns.append(clock() - t0)
        run.reference_wall += time.perf_counter() - begin
    return run


def best_of(
    index: ScreeningIndex, ruleset: CompiledRuleSet, work: list[Case], repeats: int
) -> list[float]:
    """Each decision's fastest of `repeats` runs (ms, sorted): its cost without the pauses
    another process's turn on the core (or anything else passing) adds to one run."""
    clock = time.perf_counter_ns
    best = []
    for case in work:
        spent = []
        for _ in range(repeats):
            t0 = clock()
            decide(index, ruleset, case)
            spent.append(clock() - t0)
        best.append(min(spent) / 1e6)
    return sorted(best)


def _timed(calls: list[Callable[[], object]]) -> dict[str, float]:
    clock = time.perf_counter_ns
    spent = []
    for call in calls:
        t0 = clock()
        call()
        spent.append(clock() - t0)
    ms = sorted(ns / 1e6 for ns in spent)
    return {
        "ms_p50": percentile(ms, 0.5),
        "ms_p99": percentile(ms, 0.99),
        "ms_mean": statistics.fmean(ms),
    }


def components(
    index: ScreeningIndex,
    ruleset: CompiledRuleSet,
    work: list[Case],
    rng: random.Random,
    listed: list[str],
) -> dict[str, dict[str, float]]:
    """Each part of a decision on its own (same cases): where the engine's time goes."""
    facts = [Facts(**case.facts) for case in work]
    typos = [with_typo(rng, rng.choice(listed)) for _ in work]
    ordinary = ordinary_names(rng, len(work))

    def screen(name: str) -> Callable[[], object]:
        return lambda: index.screen(
            name, type="individual", country="ES", threshold=DEFAULT_THRESHOLD
        )

    return {
        "facts_model": _timed([lambda c=case: Facts(**c.facts) for case in work]),  # type: ignore[misc]
        "rules_evaluate": _timed([lambda f=f: ruleset.evaluate(f) for f in facts]),  # type: ignore[misc]
        "screen_ordinary_name": _timed([screen(name) for name in ordinary]),
        "screen_listed_name_with_typo": _timed([screen(name) for name in typos]),
        "reference_json_dumps": _timed([lambda c=case: json.dumps(c.body) for case in work]),  # type: ignore[misc]
    }


# --- layer 2: the HTTP endpoint -------------------------------------------------------------------


@dataclass
class Server:
    port: int
    process: subprocess.Popen[bytes]
    database_pids: Callable[[], list[int]] | None = None
    token: str = ""
    customer: str = ""

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
    return env


def request(
    url: str, *, headers: dict[str, str] | None = None, body: bytes | None = None
) -> tuple[int, bytes]:
    call = urllib.request.Request(url, body, headers or {})
    try:
        with urllib.request.urlopen(call, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def create_client(supervisor: Supervisor, env: dict[str, str], work: Path) -> tuple[str, str]:
    """A client with role `service` (risk's evaluators)."""
    name = f"bench-risk-{secrets.token_hex(3)}"
    client: tuple[str, str] = support_create_client(
        supervisor, env, work, name, ["--role", "service"]
    )
    return client


def token(server: Server, form: dict[str, str], client: tuple[str, str]) -> str:
    basic = base64.b64encode(f"{client[0]}:{client[1]}".encode()).decode()
    status, body = request(
        server.url("/oauth2/token"),
        headers={
            "Authorization": f"Basic {basic}",
            "Content-Type": "application/x-www-form-urlencoded",
        },
        body=urllib.parse.urlencode(form).encode(),
    )
    if status != 200:
        raise RuntimeError(f"/oauth2/token answered {status}: {body.decode(errors='replace')}")
    access: str = json.loads(body)["access_token"]
    return access


def alice_id(server: Server) -> str:
    """The demo customer alice's user id: password grant, then `sub` from userinfo."""
    access = token(
        server,
        {
            "grant_type": "password",
            "username": "alice",
            "password": DEMO_PASSWORD,
            "scope": "openid",
        },
        LEGACY_CLIENT,
    )
    status, body = request(
        server.url("/oauth2/userinfo"), headers={"Authorization": f"Bearer {access}"}
    )
    if status != 200:
        raise RuntimeError(f"/oauth2/userinfo answered {status}: {body!r}")
    subject: str = json.loads(body)["sub"]
    return subject


def probe_evaluate(server: Server) -> dict[str, Any]:
    """One evaluation before the load: a misconfigured run fails loudly here."""
    body = {
        "transaction_id": f"txn_probe_{secrets.token_hex(4)}",
        "customer_id": server.customer,
        "type": "p2p",
        "amount": 1500,
        "currency": "USD",
        "counterparty": {"name": COUNTERPARTY, "country": "ES"},
    }
    status, answer = request(
        server.url("/v1/risk/evaluate"),
        headers={"Authorization": f"Bearer {server.token}", "Content-Type": "application/json"},
        body=json.dumps(body).encode(),
    )
    if status != 200:
        raise RuntimeError(f"POST /v1/risk/evaluate answered {status}: {answer!r}")
    decision: dict[str, Any] = json.loads(answer)
    return decision


@contextmanager
def paymesh_up(
    supervisor: Supervisor, work: Path, env: dict[str, str], shape: str
) -> Iterator[Server]:
    """`paymesh up --demo` (every service in one process, the UN list seeded), a service
    client's token and alice's id."""
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
        server = Server(port, process)
        client = create_client(supervisor, env, work)
        server.token = token(server, {"grant_type": "client_credentials"}, client)
        server.customer = alice_id(server)
        deadline = time.monotonic() + 60
        while True:  # the demo seed loads the list after the server answers /health
            try:
                probe_evaluate(server)
                break
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
        yield server
    finally:
        supervisor.stop(process)


@dataclass
class Load:
    """One wrk run: no script (a GET of `path`) or evaluate.lua with its environment."""

    path: str
    script: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    connections: int = CONNECTIONS

    def command(self, port: int, seconds: int) -> list[str]:
        script = ["-s", str(HERE / self.script)] if self.script else []
        return [
            "wrk",
            f"-t{min(THREADS, self.connections)}",
            f"-c{self.connections}",
            f"-d{seconds}s",
            "--latency",
            "--timeout",
            "10s",
            *script,
            f"http://127.0.0.1:{port}{self.path}",
        ]


def evaluate_load(
    server: Server,
    counterparties: list[str] | None,
    connections: int = CONNECTIONS,
    *,
    idempotency: bool = False,
) -> Load:
    env = {"TOKEN": server.token, "CUSTOMER": server.customer, "AMOUNT": str(AMOUNT)}
    if counterparties:
        env["COUNTERPARTIES"] = "|".join(counterparties)
    if idempotency:
        env["IDEMPOTENCY"] = "1"
    return Load("/", "evaluate.lua", env, connections)


def drive(supervisor: Supervisor, port: int, load: Load, seconds: int) -> str:
    with tempfile.TemporaryFile() as output:
        process = supervisor.start(
            load.command(port, seconds),
            output=output,
            env={**os.environ, **load.env, "RUN": secrets.token_hex(4)},
        )
        process.wait(timeout=seconds + 60)
        supervisor.stop(process)
        output.seek(0)
        text = output.read().decode(errors="replace")
    if process.returncode != 0:
        raise RuntimeError(f"wrk failed ({process.returncode}):\n{text}")
    return text


def measure(supervisor: Supervisor, server: Server, load: Load) -> dict[str, Any]:
    """Warm up, then one measured wrk run; server (and PostgreSQL) CPU per request from
    /proc over the run; the decision mix evaluate.lua counted."""
    if WARMUP_SECONDS > 0:
        drive(supervisor, server.port, load, WARMUP_SECONDS)
        time.sleep(1)  # the requests wrk dropped at its end finish on the server
    database = server.database_pids() if server.database_pids else []
    load_before = loadavg()
    server_before = cpu_snapshot(server.server_pids())
    database_before = cpu_snapshot(database)
    out = drive(supervisor, server.port, load, SECONDS)
    server_after = cpu_snapshot(server.server_pids())
    database = list({*database, *(server.database_pids() if server.database_pids else [])})
    database_after = cpu_snapshot(database)
    row: dict[str, Any] = parse_wrk(out)
    requests = row["requests"] or 1
    row["server_cpu_ms_per_request"] = cpu_used(server_before, server_after) * 1e3 / requests
    row["database_cpu_ms_per_request"] = (
        cpu_used(database_before, database_after) * 1e3 / requests if database_after else None
    )
    row["decision_mix"] = {
        name: int(n) for name, n in re.findall(r"^decision: (\S+) (\d+)$", out, re.MULTILINE)
    }
    row["load_average"] = {"before": load_before, "after": loadavg()}
    return row


def http_scenarios(
    supervisor: Supervisor, server: Server, shape: str, mix: list[str]
) -> dict[str, dict[str, Any]]:
    say(f"{shape}: GET /health, then POST /v1/risk/evaluate (4 scenarios)")
    rows = {f"health_{shape}": measure(supervisor, server, Load("/health"))}
    rows[f"evaluate_{shape}"] = measure(supervisor, server, evaluate_load(server, None))
    rows[f"evaluate_mixed_names_{shape}"] = measure(supervisor, server, evaluate_load(server, mix))
    # As payments calls it (HttpRiskClient): with an Idempotency-Key, stored with the answer.
    rows[f"evaluate_idempotency_key_{shape}"] = measure(
        supervisor, server, evaluate_load(server, None, idempotency=True)
    )
    # One request at a time: the latency of an evaluation without a queue in front of it.
    rows[f"evaluate_one_connection_{shape}"] = measure(
        supervisor, server, evaluate_load(server, None, connections=1)
    )
    for row in rows.values():
        reference = rows[f"health_{shape}"]
        row["reference"] = f"health_{shape}"
        row["ratio"] = row["requests_per_second"] / reference["requests_per_second"]
    # The two halves of the target are met by different rows (Little's law: at 1,000/s
    # with 8 requests in flight the mean latency is 8 ms, so no 8-connection row can show
    # p99 <= 5 ms, and one connection cannot show 1,000/s unless a request takes < 1 ms):
    # the rate by the 8-connection evaluate row, the latency by the one-connection row.
    throughput = rows[f"evaluate_{shape}"]
    latency = rows[f"evaluate_one_connection_{shape}"]
    throughput["target_met"] = throughput["requests_per_second"] >= TARGET_PER_SECOND
    latency["target_met"] = latency["latency_ms_p99"] <= TARGET_P99_MS
    for row in (throughput, latency):
        row["target_met"] = row["target_met"] and row["non_2xx"] + row["socket_errors"] == 0
    return rows


def psql(sql: str, database: str = "postgres") -> str:
    return subprocess.run(
        ["psql", f"{ADMIN_URL}/{database}", "-v", "ON_ERROR_STOP=1", "-qAtc", sql],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout


def postgres_reachable() -> bool:
    if shutil.which("psql") is None:
        return False
    try:
        psql("SELECT 1")
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        return False
    return True


def database_backends() -> list[int]:
    out = psql(f"SELECT pid FROM pg_stat_activity WHERE datname = '{DATABASE}'")
    return [int(line) for line in out.split()]


# --- where the time goes (PAYMESH_BENCH_PROFILE) ---------------------------------------------

# The innermost matching frame decides: SQL run for profiles inside its in-process call
# counts as the database, the call's own HTTP machinery as the in-process call.
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("screening (risk/screening, rapidfuzz)", ("risk/screening/", "rapidfuzz")),
    ("rules (risk/rules.py, CEL)", ("risk/rules.py",)),
    ("database (SQLAlchemy, SQLite/asyncpg driver)", ("sqlalchemy/", "sqlite_driver.py",
                                                      "aiosqlite/", "asyncpg/", "sqlite3/")),
    ("pydantic (validation, serialisation)", ("pydantic/", "pydantic_core/")),
    ("in-process HTTP calls (httpx, kernel/http.py)", ("httpx/", "httpcore/", "kernel/http.py")),
    ("token verification (kernel/auth.py, identity keys)", ("kernel/auth.py", "jwt/", "authlib/",
                                                            "joserfc/", "kernel/oidc.py")),
    ("outbox and events (kernel/events)", ("kernel/events",)),
    ("HTTP server (uvicorn, httptools)", ("uvicorn/",)),
    ("FastAPI, Starlette, middleware, gateway", ("fastapi/", "starlette/", "kernel/routing.py",
                                                 "kernel/observability.py", "gateway/",
                                                 "platform.py", "kernel/decoding.py")),
    ("risk service code (risk/service.py, api.py, repository.py)", ("risk/",)),
    ("profiles and forex service code", ("profiles/", "forex/")),
)  # fmt: skip

# Which part of an evaluation a sample belongs to (outermost match). SQLAlchemy's work runs
# in greenlets whose stacks py-spy shows without the caller: those are "ORM work, caller
# not visible".
PHASES: tuple[tuple[str, str], ...] = (
    ("profiles/forex calls (in-process HTTP)", "Evaluations._in_usd"),
    ("profiles/forex calls (in-process HTTP)", "_gathered"),
    ("profiles/forex calls (in-process HTTP)", "ServiceClient.request"),
    ("velocity query", "_velocity"),
    ("screening", "Evaluations._screen"),
    ("rules", "CompiledRuleSet.evaluate"),
    ("active rule set look-up", "RuleSets.active"),
    ("decision row, activity, flush", "Evaluations.evaluate"),
    ("commit (unit of work)", "_in_unit_of_work"),
    ("route, auth, validation, middleware", "FastAPI.__call__"),
    ("HTTP server (uvicorn)", "uvicorn/"),
)


def phase(stack: list[str]) -> str:
    for label, marker in PHASES:
        if any(marker in frame for frame in stack):
            return label
    if any("sqlalchemy/" in frame for frame in stack) and not any(
        "Runner.run" in frame for frame in stack
    ):
        return "ORM work in a greenlet (caller not visible)"
    return "event loop and the rest"


def categorize(stack: list[str]) -> str:
    for frame in reversed(stack):
        for label, markers in CATEGORIES:
            if any(marker in frame for marker in markers):
                return label
    return "event loop and the rest (uvloop, asyncio)"


def profile(supervisor: Supervisor, server: Server, work: Path) -> dict[str, Any] | None:
    """py-spy on the server while wrk drives evaluations: samples of the thread holding
    the GIL, by kind of work (innermost frame) and by part of the evaluation."""
    if not PROFILER:
        return None
    say("profiling the SQLite server under the evaluation load")
    raw = work / "risk-profile.txt"
    spy = supervisor.start(
        [PROFILER, "record", "--pid", str(server.process.pid), "--gil",
         "--rate", "250", "--duration", str(SECONDS), "--format", "raw", "--output", str(raw)],
        output=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(1)  # py-spy attaches
    drive(supervisor, server.port, evaluate_load(server, None), SECONDS + 1)
    spy.wait(timeout=60)
    supervisor.stop(spy)
    kinds: Counter[str] = Counter()
    phases: Counter[str] = Counter()
    functions: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack_text, _, count_text = line.rpartition(" ")
        stack, count = stack_text.split(";"), int(count_text)
        total += count
        kinds[categorize(stack)] += count
        phases[phase(stack)] += count
        for frame in {re.sub(r":\d+\)$", ")", frame) for frame in stack}:
            functions[frame] += count
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    kept = results / f"risk-profile-{time.strftime('%Y%m%dT%H%M%S')}.txt"
    shutil.copyfile(raw, kept)
    every = max(total, 1)
    return {
        "samples": total,
        "kinds": {label: count / every for label, count in kinds.most_common()},
        "phases": {label: count / every for label, count in phases.most_common()},
        "inclusive": {name: count / every for name, count in functions.most_common(80)},
        "raw": str(kept),
    }


# --- report -------------------------------------------------------------------------------------


def _f(value: float | None, digits: int = 2) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def print_engine(row: dict[str, Any]) -> None:
    listed = row["list"]
    met = (
        row["latency_ms_p99"] <= TARGET_P99_MS and row["decisions_per_second"] >= TARGET_PER_SECOND
    )
    print(
        f"\nRisk engine in one process (no HTTP, no database): UN list {listed['published']}, "
        f"{listed['entries']} entries, {listed['names']} names (load {listed['load_seconds']:.2f}"
        f" s, index {listed['index_seconds']:.2f} s); {row['decisions']} decisions, "
        f"{row['typo_share']:.0%} listed names with a typo; load average "
        f"{row['load_average']['before']:.1f} -> {row['load_average']['after']:.1f}"
    )
    print(f"{'':<34}{'per s':>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    print(
        f"{'decision (2 screenings + rules)':<34}{row['decisions_per_second']:>9.0f}"
        f"{row['latency_ms_p50']:>9.3f}{row['latency_ms_p99']:>9.3f}{row['latency_ms_max']:>9.2f}"
        f"  {'PASS' if met else 'FAIL'} p99 <= {TARGET_P99_MS:g} ms, >= {TARGET_PER_SECOND:,.0f}/s"
    )
    print(
        f"{'  the same, each best of 3 runs':<34}{'':>9}"
        f"{row['latency_ms_p50_best_of_3']:>9.3f}{row['latency_ms_p99_best_of_3']:>9.3f}"
    )
    print(
        f"{'  per CPU second (process time)':<34}{row['decisions_per_cpu_second']:>9.0f}"
        f"  (the process had the core {row['cpu_share_of_wall']:.0%} of the wall time)"
    )
    print(
        f"{'reference: json.dumps(body)':<34}{row['reference_per_second']:>9.0f}"
        f"{row['reference_ms_p50']:>9.4f}{row['reference_ms_p99']:>9.4f}"
    )
    print(
        f"one decision = {row['decision_over_reference_p50']:.0f} x the reference at p50 "
        f"({row['decision_over_reference_mean']:.0f} x in the mean); mix "
        f"{row['decision_mix']}, {row['screening_hits']} with a screening hit"
    )
    print(f"{'component':<34}{'p50 ms':>9}{'p99 ms':>9}{'mean ms':>9}")
    for name, part in row["components"].items():
        print(f"{name:<34}{part['ms_p50']:>9.4f}{part['ms_p99']:>9.4f}{part['ms_mean']:>9.4f}")


def print_http(rows: dict[str, dict[str, Any]]) -> None:
    print(
        f"\nPOST /v1/risk/evaluate on `paymesh up --demo`: wrk {CONNECTIONS} connections, "
        f"{THREADS} threads, {SECONDS}s each"
    )
    print(
        f"{'scenario':<30}{'req/s':>8}{'x health':>9}{'p50 ms':>9}{'p99 ms':>9}{'cpu ms':>8}"
        f"{'db ms':>7}{'errors':>7}{'load':>10}  decisions"
    )
    for name, row in rows.items():
        load = f"{row['load_average']['before']:.1f}-{row['load_average']['after']:.1f}"
        verdict = {True: "PASS", False: "FAIL"}.get(row.get("target_met"), "")  # type: ignore[arg-type]
        print(
            f"{name:<30}{row['requests_per_second']:>8.0f}{row['ratio']:>9.3f}"
            f"{row['latency_ms_p50']:>9.2f}{row['latency_ms_p99']:>9.2f}"
            f"{row['server_cpu_ms_per_request']:>8.2f}{_f(row['database_cpu_ms_per_request']):>7}"
            f"{row['non_2xx'] + row['socket_errors']:>7}{load:>10}  "
            f"{row['decision_mix'] or ''} {verdict}"
        )
    for name, row in rows.items():
        for refusal in row.get("first_refusals", []):
            print(f"{name}: a refusal: {refusal}")
    print(
        "cpu ms: server CPU per request (utime+stime of the server's process tree); db ms: "
        f"PostgreSQL backends'; amount {AMOUNT} US cent(s) per evaluation; target: >= 1,000/s "
        f"on evaluate_<db> ({CONNECTIONS} connections), p99 <= 5 ms on "
        "evaluate_one_connection_<db> (one request at a time)"
    )


def print_profile(found: dict[str, Any]) -> None:
    print(f"\nWhere the server's time goes (py-spy, {found['samples']} samples holding the GIL)")
    print("by kind of work (innermost frame):")
    for label, share in found["kinds"].items():
        print(f"{share:>7.1%}  {label}")
    print("by part of the evaluation (outermost frame):")
    for label, share in found["phases"].items():
        print(f"{share:>7.1%}  {label}")
    print(f"raw stacks: {found['raw']}")


def report(
    engine_row: dict[str, Any],
    http: dict[str, dict[str, Any]],
    found: dict[str, Any] | None,
    loads: list[float],
    skipped: list[str],
) -> None:
    print_engine(engine_row)
    if http:
        print_http(http)
    for reason in skipped:
        print(f"skipped: {reason}")
    if found:
        print_profile(found)
    line = {
        "benchmark": "risk",
        "commit": commit(),
        "seconds": SECONDS,
        "connections": CONNECTIONS,
        "threads": THREADS,
        "target": {"latency_ms_p99": TARGET_P99_MS, "per_second": TARGET_PER_SECOND},
        "amount_usd_cents": AMOUNT,
        "load_average": {"before": loads[0], "after": loads[1]},
        "engine": engine_row,
        "http": http,
        "skipped": skipped,
        "profile": found,
    }
    print(json.dumps(line))
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"risk-{time.strftime('%Y%m%dT%H%M%S')}.json").write_text(json.dumps(line, indent=2))


def main() -> None:
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk (make bench-tools)")
    if PROFILER and shutil.which(PROFILER) is None:
        sys.exit(f"PAYMESH_BENCH_PROFILE={PROFILER}: no such executable (py-spy)")
    load_before = loadavg()
    engine_row = engine()
    mix = counterparty_mix(random.Random(12), listed_names(load_un_xml(UN_LIST).entries), 200)
    previous = signal.signal(signal.SIGTERM, stop_on_sigterm)
    supervisor = Supervisor()
    http: dict[str, dict[str, Any]] = {}
    found = None
    skipped = []
    try:
        with tempfile.TemporaryDirectory(prefix="paymesh-bench-risk-") as scratch:
            work = Path(scratch)
            say("SQLite: paymesh up --demo")
            env = paymesh_env(work / "sqlite", None)
            with paymesh_up(supervisor, work, env, "sqlite") as server:
                http |= http_scenarios(supervisor, server, "sqlite", mix)
                found = profile(supervisor, server, work)
            if postgres_reachable():
                say("PostgreSQL: paymesh up --demo")
                psql(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
                psql(f'CREATE DATABASE "{DATABASE}"')
                env = paymesh_env(work / "postgres", f"{ADMIN_URL}/{DATABASE}")
                with paymesh_up(supervisor, work, env, "postgres") as server:
                    server.database_pids = database_backends
                    http |= http_scenarios(supervisor, server, "postgres", mix)
            else:
                skipped.append(f"PostgreSQL rows: psql cannot reach {ADMIN_URL}")
    except KeyboardInterrupt:
        supervisor.stop_all()
        sys.exit("interrupted: every process the benchmark started has been stopped")
    finally:
        supervisor.stop_all()
        signal.signal(signal.SIGTERM, previous)
    report(engine_row, http, found, [load_before, loadavg()], skipped)


if __name__ == "__main__":
    main()
