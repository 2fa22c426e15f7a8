-- wrk script: OAuth2 client credentials grant, client authenticated with HTTP Basic
-- (RFC 6749 4.4, 2.3.1); the same request every time, so wrk builds it once.
-- Environment: BENCH_PATH (/oauth2/token or /token), BASIC (base64 of id:secret), SCOPE.
wrk.method = "POST"
wrk.path = os.getenv("BENCH_PATH") or "/oauth2/token"
wrk.headers["Authorization"] = "Basic " .. os.getenv("BASIC")
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.body = "grant_type=client_credentials&scope=" .. (os.getenv("SCOPE") or "")
