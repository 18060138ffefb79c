-- wrk script: GET with rotating Authorization values (100 000 users, each far below 10 req/s), the requests
-- built once in init() so that the load generator spends as little as possible per request (users.lua builds
-- each one with wrk.format, which costs the generator's core more than some proxies spend per request).
local reqs, n, total = {}, 0, 100000
init = function(args)
  for i = 1, total do
    reqs[i] = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\nAuthorization: Bearer user-"
      .. i .. "\r\n\r\n"
  end
end
request = function()
  n = n % total + 1
  return reqs[n]
end
