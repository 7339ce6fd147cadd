-- wrk script: POST ~300-byte typed messages, round-robin over CXDB_CONTEXTS contexts.
-- Every body is unique (run start, thread, counter): each wrk thread has its own Lua state and counter,
-- so without the tag the threads, and successive runs, would send the same bodies and turn most appends
-- into dedup hits that skip compression and the blob write.
local started = os.time()
local threads = 0
local contexts = tonumber(os.getenv("CXDB_CONTEXTS") or "64")
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
  local body = '{"type_id":"bench.Message","type_version":1,"data":{"role":"user","text":"' ..
    (tag or "") .. ' ' .. counter .. ' ' .. text .. '","timestamp":' .. (1706615000000 + counter) .. '}}'
  return wrk.format("POST", "/v1/contexts/" .. context .. "/append", nil, body)
end
