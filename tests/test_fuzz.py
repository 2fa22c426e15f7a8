"""Schemathesis over every operation of the merged /openapi.json (issue 7's proof).

The whole platform runs once for this module (every service, migrated, behind uvicorn on
a loopback port; see tests/fuzz_support.py) and each operation is one test: Schemathesis
sends the document's examples, its coverage cases (boundaries, invalid values, unexpected
methods) and `PAYMESH_FUZZ_EXAMPLES` generated cases (default 25), positive and negative,
derandomized so every run sends the same cases. Each request goes out as one caller:
anonymous, a development token per role, an identity-issued admin client token or an
identity-issued admin user token — every caller for the first case of an operation, then
drawn by Hypothesis for generated cases and by a stable hash of the request for coverage
cases — so every role meets every operation and most cases get past 401/403. Path
parameters name seeded rows half the time (past 404) and transfer bodies name seeded
accounts half the time (into the posting engine); metadata sometimes carries values that
once crashed servers.

Every request must get an answer that is not a server error, with a documented status
code, the documented media type and a body matching the documented schema.
`KNOWN_FAILURES` allows named (operation, check, status) failures while their fixes are
in flight, each with its reason; the goal is an empty dict.

    make fuzz                                      # 200 examples, both backends
    PAYMESH_FUZZ_EXAMPLES=100 pytest tests/test_fuzz.py
    PAYMESH_FUZZ_REPORT=var/fuzz.md pytest tests/test_fuzz.py   # the figures
    PAYMESH_FUZZ_CENSUS=1 ...     # record every failure, fail nothing (surveys)
    PAYMESH_FUZZ_SHRINK=1 ...     # minimise a failing case (slow)
"""

from __future__ import annotations

import copy
import os
import tempfile
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
import structlog
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from paymesh.kernel.observability import configure_logging
from tests.fuzz_support import (
    CALLER_SLOTS,
    CALLERS,
    FuzzServer,
    Identities,
    Known,
    running,
    schema_document,
)

pytestmark = pytest.mark.fuzz

MAX_EXAMPLES = int(os.environ.get("PAYMESH_FUZZ_EXAMPLES", "25"))
# Census: record every failure in the report and fail nothing, so each operation runs all
# its cases instead of stopping at its first failure (for surveys, never in CI).
CENSUS = os.environ.get("PAYMESH_FUZZ_CENSUS", "") not in ("", "0")
# Shrinking a failure to its smallest case costs many requests (unbounded time in CI);
# PAYMESH_FUZZ_SHRINK=1 turns it on when reproducing one locally.
SHRINK = os.environ.get("PAYMESH_FUZZ_SHRINK", "") not in ("", "0")
REQUEST_TIMEOUT_SECONDS = 30
# The check name under which a request that got no response at all is recorded.
NO_RESPONSE = "no_response"
# Carries the drawn caller from generation to the test; never sent.
CALLER_HEADER = "X-Paymesh-Fuzz-Caller"

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]

# (operation or "*", check, status code) -> why it still fails, while the fix is in
# flight. A failure matching an entry is recorded but does not fail the test. The goal is
# an empty dict: remove an entry with its fix (TestKnownFailures lists stale entries).
KNOWN_FAILURES: dict[tuple[str, str, int], str] = {}

with tempfile.TemporaryDirectory() as _directory:
    DOCUMENT = schema_document(Path(_directory))

# Reports show requests as sent, tokens included (they are this run's test tokens):
# sanitizing also deep-copies bodies and gives up on the deeply nested metadata below.
CONFIG = schemathesis.Config.from_dict({"output": {"sanitization": {"enabled": False}}})
schema = schemathesis.openapi.from_dict(DOCUMENT, config=CONFIG)

OPERATIONS = sorted(
    f"{method.upper()} {path}"
    for path, item in DOCUMENT["paths"].items()
    for method in item
    if method in ("get", "put", "post", "delete", "options", "head", "patch", "trace")
)

# Filled by the module fixture before any case is generated (hooks run at generation).
KNOWN = Known()


@schema.hook
def flatmap_headers(
    context: schemathesis.HookContext, headers: dict[str, Any] | None
) -> st.SearchStrategy[dict[str, Any]]:
    """Hypothesis draws the caller of each generated case, so operations without
    parameters still go out as every caller; the test turns it into a token."""
    return st.sampled_from(CALLER_SLOTS).map(lambda name: {**(headers or {}), CALLER_HEADER: name})


@schema.hook
def flatmap_path_parameters(
    context: schemathesis.HookContext, path_parameters: dict[str, Any]
) -> st.SearchStrategy[dict[str, Any]]:
    """Half the time a path parameter names a row that exists (a seeded account,
    transfer, user or client), so the operation runs past its 404."""
    choices = {name: KNOWN.ids[name] for name in (path_parameters or {}) if KNOWN.ids.get(name)}
    if not choices:
        return st.just(path_parameters)
    replaced = st.fixed_dictionaries({name: st.sampled_from(ids) for name, ids in choices.items()})
    return st.one_of(st.just(path_parameters), replaced.map(lambda ids: {**path_parameters, **ids}))


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"n": value}
    return value


# Metadata that crashed servers when the document allowed any JSON object: integers
# outside int64, deep nesting, lone surrogates and NUL in values and keys. Now bounded by
# the document, so these must be refused with a documented 4xx.
HOSTILE_METADATA: list[dict[str, Any]] = [
    {"big": 2**64},
    {"small": -(2**63) - 1},
    _nested(300),
    {"surrogate": "\ud800"},
    {"nul": "a\x00b"},
    {"\x00": "key"},
]
ACCOUNT_FIELDS = ("debit_account_id", "credit_account_id")
INTEGER_FIELDS = ("amount", "code", "timeout_seconds")


@st.composite
def _steered_body(draw: st.DrawFn, body: Any) -> Any:
    """A generated body, where each transfer-like object may name seeded accounts (so the
    transfer reaches the posting engine) and may carry hostile metadata."""
    body = copy.deepcopy(body)
    items = [body] + (body.get("transfers") if isinstance(body.get("transfers"), list) else [])
    accounts = KNOWN.ids.get("account_id", [])
    for item in items:
        if not isinstance(item, dict):
            continue
        if accounts and any(name in item for name in ACCOUNT_FIELDS) and draw(st.booleans()):
            debit, credit = draw(st.permutations(accounts))[:2]
            item.update(debit_account_id=debit, credit_account_id=credit, currency="USD")
            # Schemathesis writes integers with float bounds as integral floats (413.0):
            # JSON Schema counts them as integers, the strict money schemas refuse them.
            for name in INTEGER_FIELDS:
                value = item.get(name)
                if isinstance(value, float) and value.is_integer():
                    item[name] = int(value)
        if "metadata" in item and draw(st.integers(0, 3)) == 0:
            item["metadata"] = draw(st.sampled_from(HOSTILE_METADATA))
    return body


@schema.hook
def flatmap_body(context: schemathesis.HookContext, body: Any) -> st.SearchStrategy[Any]:
    if not isinstance(body, dict):
        return st.just(body)
    return _steered_body(body)


@dataclass
class Finding:
    """One distinct failure (operation, check, status code) and the first case showing it."""

    count: int
    caller: str
    example: str


@dataclass
class Tally:
    """What the run did, per operation: requests, status codes, distinct failures."""

    requests: Counter[str] = field(default_factory=Counter)
    seconds: Counter[str] = field(default_factory=Counter)
    # Answers other than 401/403 to a caller with a token: the operation was exercised
    # past authorization.
    authorized: Counter[str] = field(default_factory=Counter)
    statuses: defaultdict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    callers: defaultdict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    findings: dict[tuple[str, str, int], Finding] = field(default_factory=dict)
    allowed_seen: set[tuple[str, str, int]] = field(default_factory=set)
    # Operations whose test failed (and so stopped at that case).
    failed: set[str] = field(default_factory=set)

    def record(self, key: tuple[str, str, int], caller: str, example: str) -> None:
        if key in self.findings:
            self.findings[key].count += 1
        else:
            self.findings[key] = Finding(1, caller, example)

    def report(self) -> str:
        total = sum(self.requests.values())
        server_errors = sum(
            n for counts in self.statuses.values() for code, n in counts.items() if code >= 500
        )
        lines = [
            f"# Schemathesis: {len(OPERATIONS)} operations, {total} requests, "
            f"{server_errors} 5xx responses, {len(self.findings)} distinct failures "
            f"(PAYMESH_FUZZ_EXAMPLES={MAX_EXAMPLES})",
            "",
            "| operation | requests | seconds waiting | status codes |",
            "|---|---|---|---|",
        ]
        for label in OPERATIONS:
            statuses = ", ".join(f"{c}x{n}" for c, n in sorted(self.statuses[label].items()))
            waited = f"{self.seconds[label]:.1f}"
            lines.append(f"| {label} | {self.requests[label]} | {waited} | {statuses} |")
        lines += ["", "| caller | status classes |", "|---|---|"]
        for caller, classes in sorted(self.callers.items()):
            lines.append(
                f"| {caller} | {', '.join(f'{c}x{n}' for c, n in sorted(classes.items()))} |"
            )
        lines += ["", "## Distinct failures (operation, check, status)", ""]
        for (label, check, status), finding in sorted(self.findings.items()):
            allowed = " (allowed)" if known_failure(label, check, status) else ""
            lines += [
                f"- `{label}` {check} {status} x{finding.count}{allowed}, caller {finding.caller}",
                f"    {finding.example}",
            ]
        return "\n".join(lines) + "\n"


@dataclass
class Fuzz:
    server: FuzzServer
    identities: Identities
    session: requests.Session
    tally: Tally


@pytest.fixture(scope="module")
def production_logging() -> Iterator[None]:
    """Log as production does (JSON lines, plain tracebacks): structlog's default renders
    rich tracebacks with locals, seconds per 5xx when a fuzzed body is large."""
    previous = structlog.get_config()
    configure_logging("WARNING", "json")
    structlog.configure(cache_logger_on_first_use=False)
    yield
    structlog.configure(**previous)


@pytest.fixture(scope="module")
def fuzz(
    tmp_path_factory: pytest.TempPathFactory,
    postgres_database: str | None,
    production_logging: None,
) -> Iterator[Fuzz]:
    with running(tmp_path_factory.mktemp("fuzz") / "var", postgres_database) as server:
        identities = server.identities()
        KNOWN.ids = server.seed(identities.headers["dev-admin"]).ids
        with requests.Session() as session:
            tally = Tally()
            yield Fuzz(server, identities, session, tally)
        KNOWN.ids = {}
        if report := os.environ.get("PAYMESH_FUZZ_REPORT"):
            Path(report).write_text(tally.report())


def caller_key(case: schemathesis.Case) -> bytes:
    headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
    return repr(
        (case.method, case.path, case.path_parameters, case.query, headers, case.body)
    ).encode("utf-8", "surrogatepass")


def check_name(failure: Failure) -> str:
    return ",".join(type(failure).checks) or type(failure).__name__


def known_failure(label: str, check: str, status: int) -> tuple[str, str, int] | None:
    """The KNOWN_FAILURES entry that allows this failure, if any."""
    for key in ((label, check, status), ("*", check, status)):
        if key in KNOWN_FAILURES:
            return key
    return None


class TestServedDocument:
    def test_fuzzed_document_is_the_one_served(self, fuzz: Fuzz) -> None:
        served = fuzz.session.get(f"{fuzz.server.url}/openapi.json", timeout=30)
        assert served.status_code == 200
        assert served.json() == DOCUMENT

    def test_every_operation_is_fuzzed(self) -> None:
        labels = sorted(
            f"{result.ok().method.upper()} {result.ok().path}"
            for result in schema.get_all_operations()
        )
        assert labels == OPERATIONS
        assert len(OPERATIONS) >= 40

    def test_known_failures_name_real_operations(self) -> None:
        assert {label for label, _, _ in KNOWN_FAILURES} <= {*OPERATIONS, "*"}


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate] + ([Phase.shrink] if SHRINK else []),
)
def test_operation(case: schemathesis.Case, fuzz: Fuzz) -> None:
    label = case.operation.label
    drawn = (case.headers or {}).pop(CALLER_HEADER, None)
    # The first case of each operation goes out as every caller, so each role meets each
    # operation whatever the draws; later cases as the one drawn (or hashed).
    first = not fuzz.tally.requests[label]
    callers = list(CALLERS) if first else [drawn or fuzz.identities.pick(caller_key(case))]
    for name in callers:
        send_and_check(fuzz, case, name)


def send_and_check(fuzz: Fuzz, case: schemathesis.Case, name: str) -> None:
    label = case.operation.label
    headers = fuzz.identities.headers[name]
    started = time.perf_counter()
    try:
        response = case.call(
            base_url=fuzz.server.url,
            session=fuzz.session,
            headers=headers,
            timeout=REQUEST_TIMEOUT_SECONDS,
        )
    except requests.RequestException as error:
        # A dropped connection or no answer in time: as bad as a 5xx, and no response
        # for the checks to look at.
        fuzz.tally.requests[label] += 1
        no_response(fuzz, case, name, error)
        return
    finally:
        fuzz.tally.seconds[label] += time.perf_counter() - started
    fuzz.tally.requests[label] += 1
    fuzz.tally.statuses[label][response.status_code] += 1
    fuzz.tally.callers[name][f"{response.status_code // 100}xx"] += 1
    if name != "anonymous" and response.status_code not in (401, 403):
        fuzz.tally.authorized[label] += 1
    try:
        case.validate_response(response, checks=CHECKS, headers=headers)
    except FailureGroup as group:
        remaining: list[Failure] = []
        for failure in group.exceptions:
            check = check_name(failure)
            # The report names the caller instead of printing its token.
            curl = case.as_curl_command(base_url=fuzz.server.url)[:1000]
            message = " ".join(f"{failure.title}. {failure.message}".split())[:400]
            answer = f"-> {response.status_code} {response.text[:300]}"
            example = f"{message}\n    {curl}\n    {answer}"
            fuzz.tally.record((label, check, response.status_code), name, example)
            if allowed := known_failure(label, check, response.status_code):
                fuzz.tally.allowed_seen.add(allowed)
            elif not CENSUS:
                remaining.append(failure)
        if remaining:
            fuzz.tally.failed.add(label)
            raise FailureGroup(remaining, f"caller: {name}\n{group.message}") from None


def no_response(fuzz: Fuzz, case: schemathesis.Case, caller: str, error: Exception) -> None:
    label = case.operation.label
    fuzz.tally.statuses[label][0] += 1
    fuzz.tally.callers[caller]["no response"] += 1
    curl = case.as_curl_command(base_url=fuzz.server.url)[:1000]
    detail = f"No response. {error.__class__.__name__}: {error}"[:400]
    fuzz.tally.record((label, NO_RESPONSE, 0), caller, f"{detail}\n    {curl}")
    if allowed := known_failure(label, NO_RESPONSE, 0):
        fuzz.tally.allowed_seen.add(allowed)
    elif not CENSUS:
        fuzz.tally.failed.add(label)
        raise AssertionError(f"caller: {caller}\n{detail}\n{curl}") from error


class TestKnownFailures:
    """Runs after every operation. An allowed failure that no longer happens is fixed:
    it is reported here (a warning, not a failure, so that the fix that made it stale does
    not break the build on one backend while the other still shows it)."""

    def test_every_operation_got_past_authorization(self, fuzz: Fuzz) -> None:
        # An operation whose test failed stopped early; its failure is reported there.
        ran = [
            label
            for label in OPERATIONS
            if fuzz.tally.requests[label] and label not in fuzz.tally.failed
        ]
        assert ran, "no operation ran to the end"
        blocked = [label for label in ran if not fuzz.tally.authorized[label]]
        assert not blocked, f"every request was refused 401/403 or not answered: {blocked}"

    def test_stale_entries_are_reported(self, fuzz: Fuzz) -> None:
        if not all(fuzz.tally.requests[label] for label in OPERATIONS):
            pytest.skip("only some operations ran (-k): staleness is judged on full runs")
        stale = sorted(set(KNOWN_FAILURES) - fuzz.tally.allowed_seen)
        if stale:
            warnings.warn(
                f"KNOWN_FAILURES entries that no longer fail here, remove them: {stale}",
                stacklevel=1,
            )
