#!/usr/bin/env bash
# One pytest pass on one database backend: `scripts/pytest_pass.sh sqlite|postgresql`.
#
# The suite runs on PYTEST_WORKERS processes (pytest-xdist, whole files per worker so a
# module's shared world stays in one process; default: the CPU count, at most 4, since each
# worker's platforms hold database connections). Then, in one plain process, the tests
# marked `fuzz` (Schemathesis collects its operations as separate tests only outside xdist,
# and the fuzz tally needs them all in one process) and `serial` (bursts of concurrent
# requests: two at once overran PostgreSQL's 100 connections). With PYTEST_ARGS (a path,
# -k ...) the pass is a single plain pytest run with those arguments.
#
# Output goes to the terminal and to $TEST_LOGS/<backend>.log; one verdict line per pass is
# appended to $TEST_LOGS/summary. The exit code is the first failing run's.
set -uo pipefail

backend="$1"
python="${PY:-.venv/bin/python}"
logs="${TEST_LOGS:-.venv/test-logs}"
mkdir -p "$logs"
log="$logs/$backend.log"
: >"$log"
echo "==> pytest on $backend"

color=()
if [ -t 1 ]; then color=(--color=yes); fi

workers="${PYTEST_WORKERS:-}"
if [ -z "$workers" ]; then
  workers="$(nproc 2>/dev/null || echo 2)"
  [ "$workers" -gt 4 ] && workers=4
fi

rc=0
lines=()
# One pytest run with the given arguments, its output added to the pass's log.
run_pytest() {
  PAYMESH_TEST_DATABASE="$backend" "$python" -m pytest "${color[@]}" "$@" 2>&1 \
    | tee "$log.part"
  local run_rc="${PIPESTATUS[0]}" line
  cat "$log.part" >>"$log"
  line="$(sed 's/\x1b\[[0-9;]*m//g' "$log.part" \
    | grep -E '^(=+ )?([0-9]+ [a-z]+|no tests ran).* in [0-9.]+s' | tail -n 1 \
    | sed -E 's/^=+ //; s/ =+$//')"
  lines+=("${line:-(no summary line)}")
  [ "$rc" -ne 0 ] || rc="$run_rc"
}

if [ -n "${PYTEST_ARGS:-}" ]; then
  # shellcheck disable=SC2086  # PYTEST_ARGS are words on purpose
  run_pytest $PYTEST_ARGS
elif [ "$workers" -gt 1 ]; then
  run_pytest -n "$workers" --dist loadfile -m "not (serial or fuzz)"
  run_pytest -m "serial or fuzz"
else
  run_pytest
fi
rm -f "$log.part"

if [ "$rc" -eq 5 ]; then
  verdict="FAIL (no tests collected)"
elif [ "$rc" -ne 0 ]; then
  verdict="FAIL (pytest exit code $rc)"
else
  verdict="ok"
fi
summary="$(printf '%s; ' "${lines[@]}")"
echo "$backend: $verdict ${summary%; }" >>"$logs/summary"
[ "$verdict" = ok ] || echo "FAIL: the $backend pass: $verdict"
exit "$rc"
