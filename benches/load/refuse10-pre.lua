-- wrk script: as refuse10.lua (100 000 rotating users, every 10th request without Accept), the requests built
-- once in init().
local reqs, n, total = {}, 0, 100000
init = function(args)
  for i = 1, total do
    local accept = (i % 10 ~= 0) and "Accept: application/json\r\n" or ""
    reqs[i] = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n" .. accept .. "Authorization: Bearer user-" .. i .. "\r\n\r\n"
  end
end
request = function()
  n = n % total + 1
  return reqs[n]
end
