-- wrk script for POST /sync with the same body `consuma load` sends in
-- bench/load-vs-wrk.sh (--text "hello world" --count 3).
wrk.method = "POST"
wrk.body = '{"text":"hello world","count":3}'
wrk.headers["Content-Type"] = "application/json"
