-- wrk script: POST the JSON body of BODY_FILE (default body-1k.json) with rotating Authorization values
-- (100 000 users, each far below 10 req/s) and the headers the ingress requires.
local f = assert(io.open(os.getenv("BODY_FILE") or "benches/load/body-1k.json", "rb"))
local body = f:read("*a")
f:close()
local n = 0
request = function()
  n = (n + 1) % 100000
  return wrk.format("POST", "/", {
    ["Accept"] = "application/json",
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer user-" .. n,
  }, body)
end
