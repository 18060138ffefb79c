-- wrk script: POST the JSON body of BODY_FILE (default body-1k.json) with rotating Authorization values
-- (USERS users, default 10 000, each far below 10 req/s), the requests built once in init() so that the load
-- generator's core does not saturate before the proxy's (see users-pre.lua).
local reqs, n, total = {}, 0, tonumber(os.getenv("USERS") or "10000")
init = function(args)
  local f = assert(io.open(os.getenv("BODY_FILE") or "benches/load/body-1k.json", "rb"))
  local body = f:read("*a")
  f:close()
  for i = 1, total do
    reqs[i] = "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\nContent-Type: application/json\r\n"
      .. "Authorization: Bearer user-" .. i .. "\r\nContent-Length: " .. #body .. "\r\n\r\n" .. body
  end
end
request = function()
  n = n % total + 1
  return reqs[n]
end
