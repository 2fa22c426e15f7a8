-- wrk script: POST /v1/ledger/accounts through the ordinary (FastAPI) path, each request
-- with a new account id and its own Idempotency-Key, so every one is a real write.
-- Environment: TOKEN (bearer), RUN (unique per wrk process).
local token = os.getenv("TOKEN")
local run = os.getenv("RUN") or "r"
local counter = 0
local threads = {}

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function request()
  counter = counter + 1
  local id = string.format("bench_%s_%d_%d", run, tid, counter)
  return wrk.format("POST", "/v1/ledger/accounts", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. token,
    ["Idempotency-Key"] = "key_" .. id,
  }, string.format('{"id":"%s","currency":"USD","code":9}', id))
end

-- The first refusal of each thread, printed at the end: a write benchmark must say why a
-- write failed, not only that one did.
function response(status, headers, body)
  if status >= 300 and first_error == nil then
    first_error = string.format("%d %s", status, string.sub(body or "", 1, 300))
  end
end

function done(summary, latency, requests)
  for _, thread in ipairs(threads) do
    local refusal = thread:get("first_error")
    if refusal then
      io.write("first refusal: " .. refusal .. "\n")
    end
  end
end
