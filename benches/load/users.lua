-- wrk script: GET with rotating Authorization values, 100 000 distinct users (each far below 10 req/s).
local n = 0
request = function()
  n = (n + 1) % 100000
  return wrk.format("GET", "/", { ["Accept"] = "application/json", ["Authorization"] = "Bearer user-" .. n })
end
