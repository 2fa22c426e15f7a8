"""Gateway benchmark (issue 9): the latency the API gateway adds, with token validation and
rate limiting on, against calling the service directly, and the gateway's maximum
throughput, in one run.

Starts the distributed shape on SQLite in a scratch directory: `paymesh serve identity`,
`paymesh serve ledger` and `paymesh serve gateway` (in front of the other two), each a
process of its own on a free loopback port. A confidential client (`paymesh identity
create-client`, tier `unlimited`) gets an RS256 access token from identity's
`/oauth2/token` (client credentials); the ledger and the gateway verify it against
identity's JWKS. Every request is `GET /v1/ledger/accounts/{id}` of an account created
first, with that token.

Rate limiting stays on: an `unlimited` client is not counted against a tier, so the run
gives `/v1/ledger/accounts` an operator route limit (`PAYMESH_GATEWAY_ROUTES`) high enough
never to refuse, and raises the per-second burst window likewise; every request then takes
the full check (burst window, minute window and its stats: one storage call), as a tiered
client's does.

1. Maximum throughput with wrk (closed loop, 8 connections), direct and through the
   gateway; server CPU per request of the gateway and of the ledger from /proc/<pid>/stat.
2. Latency at a fixed rate (open loop, bench/gateway/load.py, latency from each request's
   due time) of 500 requests/s: direct to the ledger and through the gateway, in rounds
   ordered direct, gateway, gateway, direct so that a drift of the machine's load falls on
   both alike; p50 and p99 of each and the difference. When 500/s is more than half of
   what either path can do (step 1), the same again at half the lower maximum, a rate
   both keep up with: the figure a saturated 500/s cannot give.

Prints a table and one JSON line, writes bench/results/gateway-<timestamp>.json, and
judges issue 9's target (p99 added <= 2 ms at 500/s, the gateway keeping up). Every
process it starts is stopped on exit, on error and on Ctrl-C.

Knobs: PAYMESH_BENCH_SECONDS (10: per path, at the fixed rate and under wrk),
PAYMESH_BENCH_RATE (500 requests/s), PAYMESH_BENCH_CONNECTIONS (8, wrk's),
PAYMESH_BENCH_OPEN_CONNECTIONS (32, the fixed-rate generator's keep-alive pool),
PAYMESH_BENCH_WARMUP_SECONDS (1), PAYMESH_BENCH_ACCESS_LOG (false: the servers' access
logs), PAYMESH_BENCH_PROFILE (a py-spy executable: profile the gateway under wrk after the
measurements and print where its time goes).
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench/: support.py
from support import (
    Supervisor,
    commit,
    free_port,
    parse_wrk,
    stop_on_sigterm,
    tree_cpu_seconds,
    wait_ready,
)
from support import create_client as support_create_client

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
BIN = Path(sys.executable).parent
SECONDS = int(os.environ.get("PAYMESH_BENCH_SECONDS", "10"))
RATE = float(os.environ.get("PAYMESH_BENCH_RATE", "500"))
CONNECTIONS = int(os.environ.get("PAYMESH_BENCH_CONNECTIONS", "8"))
OPEN_CONNECTIONS = int(os.environ.get("PAYMESH_BENCH_OPEN_CONNECTIONS", "32"))
WARMUP_SECONDS = float(os.environ.get("PAYMESH_BENCH_WARMUP_SECONDS", "1"))
ACCESS_LOG = os.environ.get("PAYMESH_BENCH_ACCESS_LOG", "false").lower() in ("1", "true", "yes")
PROFILER = os.environ.get("PAYMESH_BENCH_PROFILE", "")
THREADS = min(2, CONNECTIONS)

ACCOUNT_ID = "acc_bench_gateway"
ACCOUNT_PATH = f"/v1/ledger/accounts/{ACCOUNT_ID}"
SCOPE = "ledger:read ledger:write"
# Far above anything two cores can serve: never refuses, but every request is counted.
ROUTE_PER_MINUTE = 6_000_000
BURST_PER_SECOND = 100_000
TARGET_P99_ADDED_MS = 2.0
ORDER = ("direct", "gateway", "gateway", "direct")  # ABBA: a linear drift hits both alike


# --- processes ------------------------------------------------------------------------------


def say(text: str) -> None:
    """Progress, on stderr: the table and the JSON line stay alone on stdout."""
    print(f"[gateway bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# --- the cluster ------------------------------------------------------------------------------


@dataclass
class Cluster:
    ports: dict[str, int]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    token: str = ""

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def cpu(self) -> dict[str, float]:
        return {name: tree_cpu_seconds(process.pid) for name, process in self.processes.items()}


def cluster_env(work: Path, ports: dict[str, int]) -> dict[str, str]:
    """The caller's environment without its PAYMESH_ settings (the servers run in a scratch
    directory, so no .env is read): every run measures the same configuration."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("PAYMESH_") or name.startswith("PAYMESH_BENCH_")
    }
    identity = f"http://127.0.0.1:{ports['identity']}"
    return env | {
        "PAYMESH_ENV": "development",
        "PAYMESH_SIGNING_SECRET": secrets.token_urlsafe(32),
        "PAYMESH_ACCESS_LOG": "true" if ACCESS_LOG else "false",
        "PAYMESH_LOG_LEVEL": "INFO" if ACCESS_LOG else "WARNING",
        "PAYMESH_HOST": "127.0.0.1",
        "PAYMESH_DATA_DIR": str(work / "var"),
        "PAYMESH_IDENTITY_URL": identity,
        # Identity's tokens carry its own origin as `iss`; the ledger and the gateway
        # must expect that, not their own.
        "PAYMESH_IDENTITY_ISSUER": identity,
        "PAYMESH_LEDGER_URL": f"http://127.0.0.1:{ports['ledger']}",
    }


def gateway_env(env: dict[str, str]) -> dict[str, str]:
    routes = [{"prefix": "/v1/ledger/accounts", "per_minute": ROUTE_PER_MINUTE}]
    return env | {
        "PAYMESH_GATEWAY_ROUTES": json.dumps(routes),
        "PAYMESH_GATEWAY_BURST_PER_SECOND": str(BURST_PER_SECOND),
    }


def serve(
    supervisor: Supervisor, cluster: Cluster, name: str, env: dict[str, str], work: Path
) -> None:
    with (work / f"{name}.log").open("wb") as output:
        cluster.processes[name] = supervisor.start(
            [str(BIN / "paymesh"), "serve", name, "--port", str(cluster.ports[name])],
            output=output,
            env=env,
            cwd=work,
        )


def create_client(supervisor: Supervisor, env: dict[str, str], work: Path) -> tuple[str, str]:
    """A client of tier `unlimited` (its tier is not counted; the route limit is), with
    the ledger's scopes."""
    scopes = [argument for scope in SCOPE.split() for argument in ("--scope", scope)]
    return support_create_client(supervisor, env, work, "bench-gateway", scopes)


def request(
    url: str, *, headers: dict[str, str], body: bytes | None = None
) -> tuple[int, dict[str, str], bytes]:
    call = urllib.request.Request(url, body, headers)
    try:
        with urllib.request.urlopen(call, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def client_credentials_token(cluster: Cluster, client_id: str, client_secret: str) -> str:
    basic = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()
    status, _, body = request(
        f"{cluster.url('identity')}/oauth2/token",
        headers={
            "Authorization": f"Basic {basic}",
            "Content-Type": "application/x-www-form-urlencoded",
        },
        body=urllib.parse.urlencode({"grant_type": "client_credentials", "scope": SCOPE}).encode(),
    )
    if status != 200:
        raise RuntimeError(f"/oauth2/token answered {status}: {body.decode(errors='replace')}")
    token: str = json.loads(body)["access_token"]
    return token


def prepare_account(cluster: Cluster) -> None:
    """Creates the account (directly on the ledger), then reads it both ways; through the
    gateway until its health probe has found the ledger, and with the route limit's
    headers, the proof that the request was counted."""
    bearer = {"Authorization": f"Bearer {cluster.token}"}
    status, _, body = request(
        f"{cluster.url('ledger')}/v1/ledger/accounts",
        headers=bearer | {"Content-Type": "application/json", "Idempotency-Key": ACCOUNT_ID},
        body=json.dumps({"id": ACCOUNT_ID, "currency": "USD", "code": 1}).encode(),
    )
    if status not in (200, 201):
        raise RuntimeError(f"creating the account answered {status}: {body!r}")
    status, _, body = request(cluster.url("ledger") + ACCOUNT_PATH, headers=bearer)
    if status != 200:
        raise RuntimeError(f"the ledger answered {status}: {body!r}")
    deadline = time.monotonic() + 30
    while True:
        status, headers, body = request(cluster.url("gateway") + ACCOUNT_PATH, headers=bearer)
        if status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    if status != 200:
        raise RuntimeError(f"the gateway answered {status}: {body!r}")
    limit = {name.lower(): value for name, value in headers.items()}.get("ratelimit-limit")
    if limit != str(ROUTE_PER_MINUTE):
        raise RuntimeError(f"the gateway's answer has RateLimit-Limit {limit!r}: not counted?")


@contextmanager
def running_cluster(supervisor: Supervisor, work: Path) -> Iterator[Cluster]:
    """Identity, the ledger and the gateway, each `paymesh serve`, ready to measure. The
    client is created (its own short process, identity's database) while the ledger
    starts; identity and the gateway start once it is there."""
    cluster = Cluster({name: free_port() for name in ("identity", "ledger", "gateway")})
    env = cluster_env(work, cluster.ports)
    try:
        serve(supervisor, cluster, "ledger", env, work)
        client_id, client_secret = create_client(supervisor, env, work)
        serve(supervisor, cluster, "identity", env, work)
        serve(supervisor, cluster, "gateway", gateway_env(env), work)
        for name in ("ledger", "identity", "gateway"):
            wait_ready(
                cluster.processes[name],
                f"{cluster.url(name)}/health",
                work / f"{name}.log",
                timeout_seconds=180,
            )
        cluster.token = client_credentials_token(cluster, client_id, client_secret)
        prepare_account(cluster)
        say(f"identity, ledger and gateway ready: {cluster.ports}")
        yield cluster
    finally:
        for process in cluster.processes.values():
            supervisor.stop(process)


# --- latency at a fixed rate ---------------------------------------------------------------


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of values already sorted."""
    if not values:
        return math.nan
    return values[max(0, math.ceil(fraction * len(values)) - 1)]


def fixed_rate_round(
    supervisor: Supervisor, cluster: Cluster, path: str, rate: float, seconds: float, work: Path
) -> dict[str, Any]:
    """One run of load.py against `path` ("direct": the ledger; "gateway"), with the CPU
    the servers used meanwhile."""
    port = cluster.ports["ledger" if path == "direct" else "gateway"]
    out = work / f"load-{path}-{secrets.token_hex(3)}.json"
    command = [
        sys.executable,
        str(HERE / "load.py"),
        f"http://127.0.0.1:{port}{ACCOUNT_PATH}",
        f"--rate={rate}",
        f"--seconds={seconds}",
        f"--warmup-seconds={WARMUP_SECONDS}",
        f"--connections={OPEN_CONNECTIONS}",
        "--drain-seconds=2",  # a path that fell behind: its leftovers are unanswered
        f"--out={out}",
    ]
    with tempfile.TemporaryFile() as output:
        before = cluster.cpu()
        process = supervisor.start(
            command, output=output, env={**os.environ, "BENCH_TOKEN": cluster.token}
        )
        process.wait(timeout=seconds + WARMUP_SECONDS + 60)
        after = cluster.cpu()
        supervisor.stop(process)
        output.seek(0)
        text = output.read().decode(errors="replace")
    if process.returncode != 0:
        raise RuntimeError(f"load.py failed ({process.returncode}):\n{text}")
    result: dict[str, Any] = json.loads(out.read_text())
    answered = max(result["answered_total"], 1)
    result["cpu_ms_per_request"] = {
        name: (after[name] - before[name]) * 1e3 / answered for name in ("gateway", "ledger")
    }
    return result


def merge_rounds(rate: float, rounds: list[dict[str, Any]]) -> dict[str, Any]:
    latencies = sorted(value for one in rounds for value in one["latencies_ms"])
    statuses: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    for one in rounds:
        statuses.update(one["statuses"])
        errors.update(one["errors"])
    cpu = {
        name: sum(one["cpu_ms_per_request"][name] for one in rounds) / len(rounds)
        for name in ("gateway", "ledger")
    }
    row = {
        "rate": rate,
        "scheduled": sum(one["scheduled"] for one in rounds),
        "completed": len(latencies),
        "unanswered": sum(one["unanswered"] for one in rounds),
        "backlogged": sum(one["backlogged"] for one in rounds),
        "achieved_per_second": sum(one["achieved_per_second"] for one in rounds) / len(rounds),
        "non_2xx": sum(n for code, n in statuses.items() if not code.startswith("2")),
        "errors": dict(errors),
        "first_refusal": next((r["first_refusal"] for r in rounds if r["first_refusal"]), None),
        "latency_ms_p50": percentile(latencies, 0.50),
        "latency_ms_p90": percentile(latencies, 0.90),
        "latency_ms_p99": percentile(latencies, 0.99),
        "latency_ms_max": latencies[-1] if latencies else math.nan,
        "gateway_cpu_ms_per_request": cpu["gateway"],
        "ledger_cpu_ms_per_request": cpu["ledger"],
    }
    row["sustained"] = sustained(row)
    return row


def sustained(row: dict[str, Any]) -> bool:
    """Did the path keep up with the rate: every request answered with a 2xx, its rate
    within 3%, and (nearly) no request finding all the generator's connections busy, which
    happens only when that many answers are late at once?"""
    return (
        row["completed"] == row["scheduled"]
        and row["non_2xx"] == 0
        and not row["errors"]
        and row["achieved_per_second"] >= 0.97 * row["rate"]
        and row["backlogged"] <= 0.01 * row["scheduled"]
    )


def fixed_rate(supervisor: Supervisor, cluster: Cluster, rate: float, work: Path) -> dict[str, Any]:
    """Both paths at `rate`, each for SECONDS in two rounds (ABBA), merged."""
    say(f"fixed rate {rate:g}/s, rounds {'/'.join(ORDER)}")
    rounds: dict[str, list[dict[str, Any]]] = {"direct": [], "gateway": []}
    for path in ORDER:
        rounds[path].append(fixed_rate_round(supervisor, cluster, path, rate, SECONDS / 2, work))
        time.sleep(0.5)  # whatever queued at the end drains before the next round
    rows = {path: merge_rounds(rate, results) for path, results in rounds.items()}
    rows["added"] = {
        "latency_ms_p50": rows["gateway"]["latency_ms_p50"] - rows["direct"]["latency_ms_p50"],
        "latency_ms_p99": rows["gateway"]["latency_ms_p99"] - rows["direct"]["latency_ms_p99"],
    }
    return rows


def comfortable_rate(most: dict[str, Any]) -> float | None:
    """Half the lower maximum throughput (a multiple of 10): a rate both paths should keep
    up with, measured too when the issue's rate is above it."""
    ceiling = min(row["requests_per_second"] for row in most.values())
    rate = max(10.0, math.floor(ceiling / 2 / 10) * 10)
    return rate if rate < RATE else None


# --- maximum throughput (wrk) ----------------------------------------------------------------


def wrk_command(port: int, seconds: float) -> list[str]:
    return [
        "wrk",
        f"-t{THREADS}",
        f"-c{CONNECTIONS}",
        f"-d{max(1, round(seconds))}s",
        "--latency",
        "--timeout",
        "10s",
        "-s",
        str(HERE / "get.lua"),
        f"http://127.0.0.1:{port}",
    ]


def drive_wrk(supervisor: Supervisor, cluster: Cluster, port: int, seconds: float) -> str:
    env = {**os.environ, "BENCH_PATH": ACCOUNT_PATH, "TOKEN": cluster.token}
    with tempfile.TemporaryFile() as output:
        process = supervisor.start(wrk_command(port, seconds), output=output, env=env)
        process.wait(timeout=seconds + 60)
        supervisor.stop(process)
        output.seek(0)
        text = output.read().decode(errors="replace")
    if process.returncode != 0:
        raise RuntimeError(f"wrk failed ({process.returncode}):\n{text}")
    return text


def throughput_run(supervisor: Supervisor, cluster: Cluster, path: str) -> dict[str, Any]:
    say(f"maximum throughput, {path}")
    port = cluster.ports["ledger" if path == "direct" else "gateway"]
    if WARMUP_SECONDS > 0:
        drive_wrk(supervisor, cluster, port, WARMUP_SECONDS)
        time.sleep(1)  # the requests wrk dropped at its end finish on the server
    before = cluster.cpu()
    row = parse_wrk(drive_wrk(supervisor, cluster, port, SECONDS))
    after = cluster.cpu()
    for name in ("gateway", "ledger"):
        row[f"{name}_cpu_ms_per_request"] = (
            (after[name] - before[name]) * 1e3 / max(row["requests"], 1)
        )
    return row


def throughput(supervisor: Supervisor, cluster: Cluster) -> dict[str, Any]:
    rows = {path: throughput_run(supervisor, cluster, path) for path in ("direct", "gateway")}
    rows["gateway"]["ratio"] = (
        rows["gateway"]["requests_per_second"] / rows["direct"]["requests_per_second"]
    )
    return rows


# --- profile (PAYMESH_BENCH_PROFILE) ----------------------------------------------------------

# Where a sample's time goes: the innermost frame that matches decides (so the ledger's
# answer being written back by uvicorn counts as the HTTP server, not as the proxy).
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("rate limiting (limits, gateway/ratelimit.py)", ("limits/", "ratelimit.py", "._limit ")),
    ("token verification (kernel/auth.py, oidc.py)", ("._authenticate ", "kernel/auth.py",
                                                      "gateway/authenticators.py",
                                                      "kernel/oidc.py", "kernel/revocation")),
    ("circuit breaker (purgatory, gateway/breaker.py)", ("purgatory/", "gateway/breaker.py")),
    ("upstream call (gateway/upstreams.py, pool.py, httptools)", ("gateway/upstreams.py",
                                                                   "gateway/pool.py")),
    ("HTTP server (uvicorn, httptools)", ("uvicorn/",)),
    ("logging (structlog, logging)", ("structlog/", "logging/")),
    ("gateway's own code (gateway/app.py, platform.py)", ("gateway/app.py", "platform.py",
                                                          "kernel/observability.py")),
)  # fmt: skip


def categorize(stack: list[str]) -> str:
    for frame in reversed(stack):
        for label, markers in CATEGORIES:
            if any(marker in frame for marker in markers):
                return label
    return "event loop and the rest (uvloop, asyncio)"


def profile(supervisor: Supervisor, cluster: Cluster, work: Path) -> dict[str, Any] | None:
    """py-spy on the gateway while wrk drives it: samples of the thread holding the GIL
    (the CPU a Python process can use), by category and by function."""
    if not PROFILER:
        return None
    say("profiling the gateway under wrk")
    raw = work / "gateway-profile.txt"
    spy = supervisor.start(
        [PROFILER, "record", "--pid", str(cluster.processes["gateway"].pid), "--gil",
         "--rate", "250", "--duration", str(SECONDS), "--format", "raw", "--output", str(raw)],
        output=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(1)  # py-spy attaches
    drive_wrk(supervisor, cluster, cluster.ports["gateway"], SECONDS + 1)
    spy.wait(timeout=60)
    supervisor.stop(spy)
    categories: Counter[str] = Counter()
    functions: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack_text, _, count_text = line.rpartition(" ")
        stack, count = stack_text.split(";"), int(count_text)
        total += count
        categories[categorize(stack)] += count
        for frame in {re.sub(r":\d+\)$", ")", frame) for frame in stack}:
            functions[frame] += count
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    kept = results / f"gateway-profile-{time.strftime('%Y%m%dT%H%M%S')}.txt"
    shutil.copyfile(raw, kept)
    share = {label: count / max(total, 1) for label, count in categories.most_common()}
    inclusive = {name: count / max(total, 1) for name, count in functions.most_common(60)}
    return {"samples": total, "categories": share, "inclusive": inclusive, "raw": str(kept)}


# --- report -------------------------------------------------------------------------------------


def _f(value: float | None, digits: int = 2) -> str:
    return "" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def judge(rows: dict[str, Any]) -> tuple[bool | None, str]:
    """Issue 9's target at one rate: the gateway keeps up, and its p99 is at most 2 ms
    above the direct one's (None: the ledger alone did not keep up, nothing to add to)."""
    rate, added = rows["direct"]["rate"], rows["added"]["latency_ms_p99"]
    gateway, direct = rows["gateway"], rows["direct"]
    difference = f"p99 added {added:+.2f} ms (target <= {TARGET_P99_ADDED_MS:g} ms)"
    if not gateway["sustained"]:
        also = "; nor did the ledger alone" if not direct["sustained"] else ""
        return False, (
            f"FAIL at {rate:g}/s: the gateway did not keep up (answered "
            f"{gateway['achieved_per_second']:.0f}/s, {gateway['backlogged']} requests "
            f"found every connection busy){also}; {difference}"
        )
    if not direct["sustained"]:
        return None, f"NOT MEASURED at {rate:g}/s: the ledger alone did not keep up"
    met = added <= TARGET_P99_ADDED_MS
    return met, f"{'PASS' if met else 'FAIL'} at {rate:g}/s: {difference}"


def print_tables(
    latency: dict[str, dict[str, Any]], most: dict[str, Any], loads: list[float]
) -> None:
    print(
        f"\nGateway benchmark: RS256 identity token, rate limiting on (route limit "
        f"{ROUTE_PER_MINUTE:,}/min, burst {BURST_PER_SECOND:,}/s), access log "
        f"{'on' if ACCESS_LOG else 'off'}; load average {loads[0]:.1f} before, "
        f"{loads[1]:.1f} after"
    )
    print(
        f"\nFixed rate, open loop, {OPEN_CONNECTIONS} connections, {SECONDS}s per path "
        f"in rounds {'/'.join(ORDER)}"
    )
    print(
        f"{'rate':>6} {'path':<8}{'answered/s':>11}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}"
        f"{'max ms':>9}{'gw cpu':>8}{'ledger cpu':>11}{'backlog':>8}{'failed':>7}{'unanswered':>11}"
        "  kept up"
    )
    for rate, rows in latency.items():
        for path in ("direct", "gateway"):
            row = rows[path]
            failed = row["non_2xx"] + sum(row["errors"].values())
            print(
                f"{rate:>6} {path:<8}{row['achieved_per_second']:>11.0f}"
                f"{_f(row['latency_ms_p50']):>9}{_f(row['latency_ms_p90']):>9}"
                f"{_f(row['latency_ms_p99']):>9}{_f(row['latency_ms_max'], 1):>9}"
                f"{_f(row['gateway_cpu_ms_per_request'], 3):>8}"
                f"{_f(row['ledger_cpu_ms_per_request'], 3):>11}{row['backlogged']:>8}"
                f"{failed:>7}{row['unanswered']:>11}  {'yes' if row['sustained'] else 'NO'}"
            )
        added = rows["added"]
        print(
            f"{rate:>6} {'added':<8}{'':>11}{added['latency_ms_p50']:>+9.2f}{'':>9}"
            f"{added['latency_ms_p99']:>+9.2f}"
        )
    print(f"\nMaximum throughput, wrk {CONNECTIONS} connections, {THREADS} threads, {SECONDS}s")
    print(
        f"{'path':<9}{'req/s':>8}{'ratio':>7}{'p50 ms':>8}{'p99 ms':>9}{'gw cpu':>8}"
        f"{'ledger cpu':>11}{'errors':>7}"
    )
    for path in ("direct", "gateway"):
        row = most[path]
        print(
            f"{path:<9}{row['requests_per_second']:>8.0f}{_f(row.get('ratio', 1.0)):>7}"
            f"{_f(row['latency_ms_p50']):>8}{_f(row['latency_ms_p99']):>9}"
            f"{_f(row['gateway_cpu_ms_per_request'], 3):>8}"
            f"{_f(row['ledger_cpu_ms_per_request'], 3):>11}"
            f"{row['non_2xx'] + row['socket_errors']:>7}"
        )
    print(
        "cpu: ms of CPU per request (utime+stime from /proc) of the gateway's and the "
        "ledger's process; added: the gateway's percentile minus the direct one; backlog: "
        "requests that found every connection busy (the path fell behind); unanswered: still "
        "waiting 2 s after the last was due"
    )


def print_profile(found: dict[str, Any]) -> None:
    print(f"\nWhere the gateway's time goes (py-spy, {found['samples']} samples holding the GIL)")
    for label, share in found["categories"].items():
        print(f"{share:>7.1%}  {label}")
    print(f"raw stacks: {found['raw']}")


def report(
    latency: dict[str, dict[str, Any]],
    most: dict[str, Any],
    found: dict[str, Any] | None,
    loads: list[float],
) -> bool | None:
    print_tables(latency, most, loads)
    if found:
        print_profile(found)
    verdicts = {rate: judge(rows) for rate, rows in latency.items()}
    met, text = verdicts[f"{RATE:g}"]
    print(f"\nTarget (issue 9): {text}")
    for rate, (_, other) in verdicts.items():
        if rate != f"{RATE:g}":
            print(f"  and at half the gateway's maximum throughput: {other}")
    line = {
        "benchmark": "gateway",
        "commit": commit(),
        "token": "RS256 access token from identity (client_credentials), tier unlimited",
        "rate_limit": {"route_per_minute": ROUTE_PER_MINUTE, "burst_per_second": BURST_PER_SECOND},
        "access_log": ACCESS_LOG,
        "seconds": SECONDS,
        "rate": RATE,
        "open_loop_connections": OPEN_CONNECTIONS,
        "wrk_connections": CONNECTIONS,
        "wrk_threads": THREADS,
        "load_average": {"before": loads[0], "after": loads[1]},
        "fixed_rate": latency,
        "throughput": most,
        "target": {
            "latency_ms_p99_added_max": TARGET_P99_ADDED_MS,
            "met": met,
            "verdicts": {rate: text for rate, (_, text) in verdicts.items()},
        },
        "profile": found,
    }
    print(json.dumps(line))
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"gateway-{time.strftime('%Y%m%dT%H%M%S')}.json").write_text(json.dumps(line, indent=2))
    return met


def main() -> None:
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk (make bench-tools)")
    if PROFILER and shutil.which(PROFILER) is None:
        sys.exit(f"PAYMESH_BENCH_PROFILE={PROFILER}: no such executable (py-spy)")
    previous = signal.signal(signal.SIGTERM, stop_on_sigterm)
    supervisor = Supervisor()
    load_before = os.getloadavg()[0]
    try:
        with (
            tempfile.TemporaryDirectory(prefix="paymesh-bench-gateway-") as scratch,
            running_cluster(supervisor, Path(scratch)) as cluster,
        ):
            most = throughput(supervisor, cluster)
            rates = [RATE] + [rate for rate in [comfortable_rate(most)] if rate is not None]
            latency = {
                f"{rate:g}": fixed_rate(supervisor, cluster, rate, Path(scratch)) for rate in rates
            }
            found = profile(supervisor, cluster, Path(scratch))
    except KeyboardInterrupt:
        supervisor.stop_all()
        sys.exit("interrupted: every process the benchmark started has been stopped")
    finally:
        supervisor.stop_all()
        signal.signal(signal.SIGTERM, previous)
    report(latency, most, found, [load_before, os.getloadavg()[0]])


if __name__ == "__main__":
    main()
