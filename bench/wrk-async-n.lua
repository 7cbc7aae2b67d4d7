-- wrk script: POST /async with a fixed body, at most TOTAL responses over THREADS threads
-- (each thread stops after TOTAL / THREADS). The callback URL comes from CALLBACK_URL.
local url = os.getenv("CALLBACK_URL") or "http://127.0.0.1:9/hook"
local total = tonumber(os.getenv("TOTAL") or "20000")
local threads = tonumber(os.getenv("THREADS") or "2")
wrk.method = "POST"
wrk.body = '{"text":"hello world","count":3,"callback_url":"' .. url .. '"}'
wrk.headers["Content-Type"] = "application/json"

local done = 0
function response(status, headers, body)
  done = done + 1
  if done >= total / threads then
    wrk.thread:stop()
  end
end
