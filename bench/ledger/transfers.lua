-- wrk script: POST /v1/ledger/transfers with a unique id and random accounts.
-- Environment: TOKEN, ACCOUNTS (count), HOT (0 = credit any account, N = one of N), BATCH
local counter = 0
local thread_id = 0
local token = os.getenv("TOKEN")
local accounts = tonumber(os.getenv("ACCOUNTS") or "1000")
local hot = tonumber(os.getenv("HOT") or "0")
local batch = tonumber(os.getenv("BATCH") or "0")
local run = os.getenv("RUN") or "r"
local threads = {}

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  thread_id = tid
  math.randomseed(os.time() + thread_id * 7919)
end

local function account(n)
  return string.format("acc_%06d", n)
end

local function one()
  counter = counter + 1
  local credit
  if hot > 0 then
    credit = accounts + math.random(1, hot)
  else
    credit = math.random(1, accounts)
  end
  local debit = math.random(1, accounts)
  while debit == credit do debit = math.random(1, accounts) end
  return string.format(
    '{"id":"%s-%d-%d","debit_account_id":"%s","credit_account_id":"%s","amount":1,"currency":"USD"}',
    run, thread_id, counter, account(debit), account(credit))
end

function request()
  local path = "/v1/ledger/transfers"
  local body
  if batch > 0 then
    path = "/v1/ledger/transfers/batch"
    local items = {}
    for i = 1, batch do items[i] = one() end
    body = '{"atomic":false,"transfers":[' .. table.concat(items, ",") .. ']}'
  else
    body = one()
  end
  return wrk.format("POST", path, {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. token,
  }, body)
end
