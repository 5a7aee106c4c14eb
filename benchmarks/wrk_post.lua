-- The wrk script of benchmarks/bench_serve.py: POST the benchmark's images (the paths
-- after --) in turn, or GET /ping when there are none; print a JSON summary at the end.
function init(args)
  requests = {}
  if #args == 0 then requests[1] = wrk.format("GET", "/ping") end
  for _, path in ipairs(args) do
    local file = assert(io.open(path, "rb"))
    local body = file:read("*a")
    file:close()
    requests[#requests + 1] = wrk.format("POST", "/invocations",
      {["Content-Type"] = "application/x-image", ["Accept"] = "application/json"}, body)
  end
  index = 0
end

function request()
  index = index + 1
  return requests[index % #requests + 1]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRK {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "errors": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
