-- wrk script: POST the 1 KB JSON body of body-1k.json with the headers the ingress requires.
local f = assert(io.open(os.getenv("BODY_FILE") or "benches/load/body-1k.json", "rb"))
wrk.body = f:read("*a")
f:close()
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json"
