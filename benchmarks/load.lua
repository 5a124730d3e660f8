-- wrk script of benchmarks/load.py: each request POSTs the next JSON body of a file (one a
-- line; thread i of n sends lines i, i+n, i+2n, ...: every request asks its own question), each
-- response is checked, and done() writes the figures as JSON. Without LOAD_BODIES it GETs the
-- URL's path (the /healthz baseline). Settings come from the environment:
--   LOAD_BODIES   file of request bodies          LOAD_THREADS  wrk's -t
--   LOAD_CHECK    health | retrieval | answer      LOAD_OUT      where done() writes its JSON
--   LOAD_KEY      the API key (Bearer)

local threads = {}
local started = 0

function setup(thread)
  thread:set("id", started)
  started = started + 1
  table.insert(threads, thread)
end

function init(args)
  bodies = {}
  local path = os.getenv("LOAD_BODIES")
  if path and path ~= "" then
    for line in io.lines(path) do
      bodies[#bodies + 1] = line
    end
  end
  step = tonumber(os.getenv("LOAD_THREADS") or "1")
  check = os.getenv("LOAD_CHECK") or "health"
  next_line = id
  sent = 0
  bad = 0
  kinds = {}
  local key = os.getenv("LOAD_KEY")
  if key and key ~= "" then
    wrk.headers["Authorization"] = "Bearer " .. key
  end
  if #bodies > 0 then
    wrk.method = "POST"
    wrk.headers["Content-Type"] = "application/json"
  end
end

function request()
  sent = sent + 1
  if #bodies == 0 then
    return wrk.format()
  end
  local body = bodies[(next_line % #bodies) + 1]
  next_line = next_line + step
  return wrk.format(nil, nil, nil, body)
end

local function problem(status, body)
  if status ~= 200 then
    return "HTTP " .. status
  end
  if check == "health" then
    if not body:find('"status":"ok"', 1, true) then return "not {status: ok}" end
  elseif check == "retrieval" then
    if not body:find('"citations":[{', 1, true) then return "no passages retrieved" end
  elseif check == "answer" then
    if not body:find('"citations":', 1, true) then return "not a query result" end
    if body:find('"answer":""', 1, true) then return "empty answer" end
    if body:find('"degraded":true', 1, true) then return "degraded answer" end
  end
  return nil
end

function response(status, headers, body)
  local p = problem(status, body)
  if p then
    bad = bad + 1
    kinds[p] = (kinds[p] or 0) + 1
  end
end

function done(summary, latency, requests)
  local checked, sent_total, kinds_total, answered_abstained = 0, 0, {}, 0
  for _, t in ipairs(threads) do
    checked = checked + t:get("bad")
    sent_total = sent_total + t:get("sent")
    for k, v in pairs(t:get("kinds")) do
      kinds_total[k] = (kinds_total[k] or 0) + v
    end
  end
  local parts = {}
  for k, v in pairs(kinds_total) do
    parts[#parts + 1] = string.format('"%s":%d', k:gsub('"', "'"), v)
  end
  local e = summary.errors
  local out = io.open(os.getenv("LOAD_OUT"), "w")
  out:write(string.format(
    '{"requests":%d,"duration_us":%d,"bytes":%d,"sent":%d,"checked_errors":%d,'
      .. '"socket_errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d},"non_2xx":%d,'
      .. '"latency_us":{"p50":%d,"p90":%d,"p95":%d,"p99":%d,"max":%d,"mean":%.1f},'
      .. '"error_kinds":{%s}}',
    summary.requests, summary.duration, summary.bytes, sent_total, checked,
    e.connect, e.read, e.write, e.timeout, e.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(95),
    latency:percentile(99), latency.max, latency.mean, table.concat(parts, ",")))
  out:close()
end
