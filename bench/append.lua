-- wrk script: POST ~300-byte typed messages, round-robin over CXDB_CONTEXTS contexts: one per request to
-- /append, or, with CXDB_BATCH=N, N per request to /append-batch.
-- Every body is unique (run start, thread, counter): each wrk thread has its own Lua state and counter,
-- so without the tag the threads, and successive runs, would send the same bodies and turn most appends
-- into dedup hits that skip compression and the blob write.
local started = os.time()
local threads = 0
local contexts = tonumber(os.getenv("CXDB_CONTEXTS") or "64")
local batch = tonumber(os.getenv("CXDB_BATCH") or "0")
local counter = 0
local text = string.rep("The quick brown fox jumps over the lazy dog. ", 5)
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

function setup(thread)
  threads = threads + 1
  thread:set("offset", math.random(0, contexts - 1))
  thread:set("tag", started .. "-" .. threads)
end

local function message(label, timestamp)
  return '{"type_id":"bench.Message","type_version":1,"data":{"role":"user","text":"' ..
    (tag or "") .. ' ' .. label .. ' ' .. text .. '","timestamp":' .. timestamp .. '}}'
end

request = function()
  counter = counter + 1
  local context = ((counter + (offset or 0)) % contexts) + 1
  if batch == 0 then
    return wrk.format("POST", "/v1/contexts/" .. context .. "/append", nil,
                      message(counter, 1706615000000 + counter))
  end
  local turns = {}
  for i = 1, batch do
    turns[i] = message(counter .. ' ' .. i, 1706615000000 + i)
  end
  return wrk.format("POST", "/v1/contexts/" .. context .. "/append-batch", nil,
                    '{"turns":[' .. table.concat(turns, ",") .. ']}')
end
