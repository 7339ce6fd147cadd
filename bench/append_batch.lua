-- wrk script: POST batches of CXDB_BATCH ~300-byte typed messages, round-robin over CXDB_CONTEXTS contexts.
-- Bodies are unique (run start, thread, counter), as in append.lua, so no turn is a dedup hit.
local started = os.time()
local threads = 0
local contexts = tonumber(os.getenv("CXDB_CONTEXTS") or "64")
local size = tonumber(os.getenv("CXDB_BATCH") or "100")
local counter = 0
local text = string.rep("The quick brown fox jumps over the lazy dog. ", 5)
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

function setup(thread)
  threads = threads + 1
  thread:set("offset", math.random(0, contexts - 1))
  thread:set("tag", started .. "-" .. threads)
end

request = function()
  counter = counter + 1
  local context = ((counter + (offset or 0)) % contexts) + 1
  local turns = {}
  for i = 1, size do
    turns[i] = '{"type_id":"bench.Message","type_version":1,"data":{"role":"user","text":"' ..
      (tag or "") .. ' ' .. counter .. ' ' .. i .. ' ' .. text .. '","timestamp":' .. (1706615000000 + i) .. '}}'
  end
  local body = '{"turns":[' .. table.concat(turns, ",") .. ']}'
  return wrk.format("POST", "/v1/contexts/" .. context .. "/append-batch", nil, body)
end
