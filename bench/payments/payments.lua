-- wrk script: POST /v1/payments, a P2P payment of AMOUNT minor units (default 1) from
-- SOURCE to DESTINATION, with a fresh Idempotency-Key on every request (run, thread,
-- counter and a random part), so each request is a payment of its own.
-- Environment: TOKEN (the payer's bearer token), SOURCE and DESTINATION (wallet ids),
-- CURRENCY (default USD), AMOUNT (default 1), RUN (unique per wrk process); or BODY, the
-- whole JSON body sent as it is (bench/payouts: a payout to a beneficiary).
-- At the end it prints, per HTTP status, `status: <code> <n>`; per payment status read
-- from 2xx bodies, `payment: <status> <n>`; and each thread's first refusal (non-2xx) as
-- `first refusal: <status> <body>`.
local token = os.getenv("TOKEN")
local source = os.getenv("SOURCE")
local destination = os.getenv("DESTINATION")
local currency = os.getenv("CURRENCY") or "USD"
local amount = tonumber(os.getenv("AMOUNT") or "1")
local run = os.getenv("RUN") or "r"
local counter = 0
local threads = {}
local body = os.getenv("BODY") or string.format(
  '{"type":"p2p","source_wallet_id":"%s","destination":{"wallet_id":"%s"},'
    .. '"amount":%d,"currency":"%s"}',
  source, destination, amount, currency)

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(os.time() * 100 + tid)
  statuses = {}
  outcomes = {}
end

function request()
  counter = counter + 1
  local key = string.format("bench-%s-%d-%d-%06d", run, tid, counter, math.random(0, 999999))
  return wrk.format("POST", "/v1/payments", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. token,
    ["Idempotency-Key"] = key,
  }, body)
end

function response(status, headers, answer)
  statuses[status] = (statuses[status] or 0) + 1
  if status >= 300 then
    if first_error == nil then
      first_error = string.format("%d %s", status, string.sub(answer or "", 1, 300))
    end
    return
  end
  local outcome = string.match(answer or "", '"status":"([a-z_]+)"') or "unreadable"
  outcomes[outcome] = (outcomes[outcome] or 0) + 1
end

function done(summary, latency, requests)
  local totals = {}
  for _, thread in ipairs(threads) do
    local refusal = thread:get("first_error")
    if refusal then
      io.write("first refusal: " .. refusal .. "\n")
    end
    for code, n in pairs(thread:get("statuses") or {}) do
      local label = "status: " .. code
      totals[label] = (totals[label] or 0) + n
    end
    for name, n in pairs(thread:get("outcomes") or {}) do
      local label = "payment: " .. name
      totals[label] = (totals[label] or 0) + n
    end
  end
  for label, n in pairs(totals) do
    io.write(string.format("%s %d\n", label, n))
  end
end
