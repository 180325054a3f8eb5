-- wrk script of loadtests/bench_peer.py: a new shopper in every request.
--
--   wrk -t N -s bench_peer.lua URL -- tokens FILE N
--       POST {"quantity":1}, the bearer token being the next line of FILE this thread owns
--       (thread k of N owns lines k+1, k+1+N, ...: no two threads share a shopper)
--   wrk -s bench_peer.lua URL -- users PREFIX
--       POST {"userIdentifier":"PREFIX-<thread>-<n>"}
--
-- done() prints one line, `bench-peer {json}`: completed requests, seconds, latency
-- percentiles (us), socket errors, the answers counted by "status" or, for a refusal,
-- "status reason" (a 2xx whose body says "success":false is a refusal too), and how many
-- requests reused a token because a thread had used up its share.

local threads = {}

function setup(thread)
  thread:set("index", #threads)
  table.insert(threads, thread)
end

function init(args)
  mode, source, thread_count = args[1], args[2], tonumber(args[3])
  answers, sent, tokens, reused = {}, 0, {}, 0
  if mode == "tokens" then
    local line_number = 0
    for line in io.lines(source) do
      if line_number % thread_count == index then
        tokens[#tokens + 1] = line
      end
      line_number = line_number + 1
    end
  end
end

function request()
  sent = sent + 1
  if mode == "tokens" then
    -- Past the end of its share a thread starts over, and counts the shoppers who came again.
    if sent > #tokens then reused = reused + 1 end
    local token = tokens[(sent - 1) % #tokens + 1]
    return wrk.format("POST", nil, {["Content-Type"] = "application/json",
                                    ["Authorization"] = "Bearer " .. token}, '{"quantity":1}')
  end
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"},
                    string.format('{"userIdentifier":"%s-%d-%d"}', source, index, sent))
end

function response(status, headers, body)
  local key = tostring(status)
  if status >= 300 or body:find('"success":false', 1, true) then
    local reason = body:match('"code":%s*"([^"]*)"') or body:match('"message":%s*"([^"]*)"') or ""
    key = key .. " " .. (reason:gsub('[%c"\\]', "?"))
  end
  answers[key] = (answers[key] or 0) + 1
end

function done(summary, latency, requests)
  local counted, fields, reused_in_all = {}, {}, 0
  for _, thread in ipairs(threads) do
    reused_in_all = reused_in_all + thread:get("reused")
    for key, count in pairs(thread:get("answers")) do
      counted[key] = (counted[key] or 0) + count
    end
  end
  for key, count in pairs(counted) do
    fields[#fields + 1] = string.format('"%s": %d', key, count)
  end
  local errors = summary.errors
  io.write(string.format(
    'bench-peer {"requests": %d, "seconds": %.3f, "p50_us": %d, "p95_us": %d, "p99_us": %d, ' ..
    '"socket_errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d}, "answers": {%s}, ' ..
    '"shoppers_again": %d}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50), latency:percentile(95),
    latency:percentile(99), errors.connect, errors.read, errors.write, errors.timeout,
    table.concat(fields, ", "), reused_in_all))
end
