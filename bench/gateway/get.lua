-- wrk script: the same GET on every request (a static request: wrk builds it once).
-- Environment: BENCH_PATH (the account's path), TOKEN (the bearer token).
wrk.method = "GET"
wrk.path = os.getenv("BENCH_PATH")
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("TOKEN") or "")
