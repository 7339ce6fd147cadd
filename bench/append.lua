-- wrk script: POST ~300-byte typed messages, round-robin over CXDB_CONTEXTS contexts.
local contexts = tonumber(os.getenv("CXDB_CONTEXTS") or "64")
local counter = 0
local text = string.rep("The quick brown fox jumps over the lazy dog. ", 5)
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

function setup(thread)
  thread:set("offset", math.random(0, contexts - 1))
end

request = function()
  counter = counter + 1
  local context = ((counter + (offset or 0)) % contexts) + 1
  local body = '{"type_id":"bench.Message","type_version":1,"data":{"role":"user","text":"' ..
    counter .. ' ' .. text .. '","timestamp":' .. (1706615000000 + counter) .. '}}'
  return wrk.format("POST", "/v1/contexts/" .. context .. "/append", nil, body)
end
