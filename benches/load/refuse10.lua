-- wrk script: GET with rotating Authorization values (100 000 users); every 10th request has no Accept
-- header, so a proxy enforcing the API's rules refuses it (406).
local n = 0
request = function()
  n = (n + 1) % 100000
  local h = { ["Authorization"] = "Bearer user-" .. n }
  if n % 10 ~= 0 then
    h["Accept"] = "application/json"
  end
  return wrk.format("GET", "/", h)
end
