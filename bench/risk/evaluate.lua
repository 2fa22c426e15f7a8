-- wrk script: POST /v1/risk/evaluate, a new transaction id on every request (a thread
-- number, a counter and a random part), so each one is a decision of its own.
-- Environment: TOKEN (bearer, role service), CUSTOMER (a user id with a profile), RUN
-- (unique per wrk process), COUNTERPARTIES (names separated by "|", taken in turn; default
-- "Maria Lopez"; letters, spaces and hyphens only: they go into the JSON unescaped),
-- IDEMPOTENCY (set: send `Idempotency-Key: evaluate:<transaction id>`, as payments'
-- HttpRiskClient does), AMOUNT (USD cents; default 1500).
local token = os.getenv("TOKEN")
local customer = os.getenv("CUSTOMER")
local run = os.getenv("RUN") or "r"
local counterparties = {}
for name in string.gmatch(os.getenv("COUNTERPARTIES") or "Maria Lopez", "[^|]+") do
  table.insert(counterparties, name)
end
local idempotency = os.getenv("IDEMPOTENCY")
local amount = tonumber(os.getenv("AMOUNT") or "1500")
local counter = 0
local threads = {}

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(os.time() * 100 + tid)
end

function request()
  counter = counter + 1
  local id = string.format("txn_%s_%d_%d_%06d", run, tid, counter, math.random(0, 999999))
  local headers = {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. token,
  }
  if idempotency then
    headers["Idempotency-Key"] = "evaluate:" .. id
  end
  return wrk.format("POST", "/v1/risk/evaluate", headers, string.format(
    '{"transaction_id":"%s","customer_id":"%s","type":"p2p","amount":%d,"currency":"USD",'
      .. '"counterparty":{"name":"%s","country":"ES"}}',
    id, customer, amount, counterparties[(counter - 1) % #counterparties + 1]))
end

-- The decision mix (allow / step_up / review / block) and the first refusal of each thread.
function response(status, headers, body)
  if status >= 300 then
    if first_error == nil then
      first_error = string.format("%d %s", status, string.sub(body or "", 1, 300))
    end
    return
  end
  local decision = string.match(body or "", '"decision":"([a-z_]+)"') or "unreadable"
  _G["n_" .. decision] = (_G["n_" .. decision] or 0) + 1
end

function done(summary, latency, requests)
  local totals = {}
  for _, thread in ipairs(threads) do
    local refusal = thread:get("first_error")
    if refusal then
      io.write("first refusal: " .. refusal .. "\n")
    end
    for _, name in ipairs({"allow", "step_up", "review", "block", "unreadable"}) do
      local n = thread:get("n_" .. name)
      if n then
        totals[name] = (totals[name] or 0) + n
      end
    end
  end
  for name, n in pairs(totals) do
    io.write(string.format("decision: %s %d\n", name, n))
  end
end
