-- wrk script: the same GET on every request (a static request: wrk builds it once).
-- Environment: BENCH_PATH (e.g. /v1/ledger/accounts/demo_alice_usd), TOKEN (optional bearer).
wrk.method = "GET"
wrk.path = os.getenv("BENCH_PATH") or "/health"
local token = os.getenv("TOKEN") or ""
if token ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. token
end
