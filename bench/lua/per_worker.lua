-- Counts the answers per X-Worker-Pid; done() prints "worker PID COUNT" lines.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  counts = {}
end

function response(status, headers, body)
  local pid = headers["X-Worker-Pid"] or headers["x-worker-pid"]
  if pid then
    counts[pid] = (counts[pid] or 0) + 1
  end
end

function done(summary, latency, requests)
  for _, thread in ipairs(threads) do
    for pid, count in pairs(thread:get("counts")) do
      io.write(string.format("worker %s %d\n", pid, count))
    end
  end
end
