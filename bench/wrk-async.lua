-- wrk script: POST /async with a fixed body. The callback URL comes from the environment
-- (CALLBACK_URL), default http://127.0.0.1:9/hook (nothing listens there; fine for an
-- accept-only instance started with --workers 0).
local url = os.getenv("CALLBACK_URL") or "http://127.0.0.1:9/hook"
wrk.method = "POST"
wrk.body = '{"text":"hello world","count":3,"callback_url":"' .. url .. '"}'
wrk.headers["Content-Type"] = "application/json"
