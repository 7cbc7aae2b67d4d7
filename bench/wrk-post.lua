-- wrk script: POST a fixed work body as JSON. Used by bench/*.sh.
wrk.method = "POST"
wrk.body = '{"text":"hello world","count":3}'
wrk.headers["Content-Type"] = "application/json"
