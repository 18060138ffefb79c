-- wrk script: GET with the Accept header the ingress requires.
wrk.headers["Accept"] = "application/json"
