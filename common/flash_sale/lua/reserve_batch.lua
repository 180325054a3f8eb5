-- Decide a batch of tickets in arrival order: reserve stock for each while it lasts, else
-- sold out. Never below zero; a ticket already decided keeps its decision (idempotent).
-- A ticket whose owner already holds or bought their share (a late payment for an expired
-- ticket was honoured meanwhile) is not reserved: it ends sold out with reason
-- `per_user_limit`, and its turn passes to the next in line.
-- With the sale's presence_timeout_s > 0, a ticket whose owner has not been seen (admission,
-- poll or open event stream, in the presence hash) for that long ends `abandoned`, and the
-- units go to the next ticket of this same batch.
-- The batch is published once on the sale's events channel (served counter and the tickets
-- decided), for the API processes that stream tickets to shoppers.
-- The operator's controls (flash_sale/controls.py), read here so they hold at once and atomically:
-- a `paused` sale decides nothing (every ticket "paused"); a sale with `outflow_per_second`
-- decides at most that many a second (a token bucket of at most max(1, pace / 10) tokens in the
-- counters' pace_tokens/pace_at_ms), the rest of the batch "deferred", unchanged, in order;
-- the ETA rate shown to shoppers (counters' `rate`) is capped by the pace. The counters'
-- `auto_pace` (Stripe's health) paces it the same way, when lower (0: nothing decided). A sale the operator
-- ended or cancelled (config `closing`: sale_ended | sale_cancelled) ends every queued ticket
-- `sold_out` or `cancelled` with that reason, whatever the pause or the pace.
-- Each ticket decided is counted for the operator's report (flash_sale/sale_report.py) in the
-- report hash: its minute of admission, its wait until now in WAIT_BUCKETS_MS, the longest wait.
-- KEYS: 1 config, 2 counters, 3 live, 4 held, 5 expiry, 6 presence, 7 report,
--       8.. ticket keys (in stream order)
-- ARGV: 1 decisions-per-second sample (0 = none)
-- Returns a flat list: ticket_id, outcome, per ticket; outcome is "reserving", "sold_out",
-- "limit_reached", "abandoned", "cancelled", "missing", "already:<status>", "paused" or
-- "deferred".
local config_key, counters_key, live_key, held_key, expiry_key, presence_key, report_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local FIRST_TICKET = 8
-- Upper bounds of the report's wait buckets (ms); sale_report.py reads the same list.
local WAIT_BUCKETS_MS = {100, 250, 500, 1000, 2000, 5000, 10000, 30000, 60000, 120000, 300000,
  600000, 1800000, 3600000, 86400000}
local report, wait_max, reserved_total = {}, 0, 0
local function count_for_report(created_at_ms, decided_at)
  local created = tonumber(created_at_ms or decided_at)
  local minute = 'admitted:' .. math.floor(created / 60000) * 60
  report[minute] = (report[minute] or 0) + 1
  local waited = math.max(0, decided_at - created)
  wait_max = math.max(wait_max, waited)
  local bucket = WAIT_BUCKETS_MS[#WAIT_BUCKETS_MS]
  for _, bound in ipairs(WAIT_BUCKETS_MS) do
    if waited <= bound then bucket = bound break end
  end
  report['wait:' .. bucket] = (report['wait:' .. bucket] or 0) + 1
end
local rate_sample = tonumber(ARGV[1])

local config = redis.call('HMGET', config_key, 'ttl_s', 'per_user_limit', 'presence_timeout_s',
  'paused', 'outflow_per_second', 'closing')
local closing = config[6]
if closing then config[4], config[5] = nil, nil end
if config[4] == '1' then
  local held_back = {}
  for i = FIRST_TICKET, #KEYS do
    held_back[#held_back + 1] = ticket_id_of(KEYS[i])
    held_back[#held_back + 1] = 'paused'
  end
  return held_back
end
local ttl_ms = tonumber(config[1]) * 1000
local per_user_limit = tonumber(config[2])
local presence_timeout_ms = tonumber(config[3] or '0') * 1000
local now = now_ms()
local pace = tonumber(config[5] or '')
-- The pace set by Stripe's health (flash_sale/health_pacing.py; 0 = paused): the lower wins.
local auto_pace = tonumber(redis.call('HGET', counters_key, 'auto_pace') or '')
if auto_pace and not closing and (not pace or auto_pace < pace) then pace = auto_pace end
local budget, tokens = math.huge, 0
if pace == 0 then
  budget = 0
elseif pace then
  local bucket = redis.call('HMGET', counters_key, 'pace_tokens', 'pace_at_ms')
  local capacity = math.max(1, math.floor(pace / 10))
  tokens = math.min(capacity, tonumber(bucket[1] or capacity) +
    math.max(0, now - tonumber(bucket[2] or now)) * pace / 1000)
  budget = math.floor(tokens)
end
local available = tonumber(redis.call('HGET', counters_key, 'available'))
local served = tonumber(redis.call('HGET', counters_key, 'served') or '0')
-- Units of every ticket decided so far (the tickets' running units_before + their own), so a
-- waiting ticket's units_ahead is O(1): its units_before minus this.
local served_units = tonumber(redis.call('HGET', counters_key, 'served_units') or '0')
local function pass_units(units_before, quantity)
  if units_before then served_units = math.max(served_units, tonumber(units_before) + tonumber(quantity)) end
end
local out = {}
local reserved_units, sold_out, abandoned, decided, cancelled = 0, 0, 0, 0, 0
local changed = {}
for i = FIRST_TICKET, #KEYS do
  local ticket = redis.call('HMGET', KEYS[i], 'id', 'status', 'quantity', 'user_id', 'seq',
    'created_at_ms', 'units_before')
  local id, status = ticket[1], ticket[2]
  if decided >= budget then
    -- Out of the pace's tokens: this ticket and every one after it wait for the next call.
    out[#out + 1] = id or ticket_id_of(KEYS[i])
    out[#out + 1] = 'deferred'
  elseif not id then
    out[#out + 1] = KEYS[i]
    out[#out + 1] = 'missing'
  elseif status ~= 'queued' then
    out[#out + 1] = id
    out[#out + 1] = 'already:' .. status
    served = math.max(served, tonumber(ticket[5]))
    pass_units(ticket[7], ticket[3])
  else
    local quantity = tonumber(ticket[3])
    local held = tonumber(redis.call('HGET', held_key, ticket[4]) or '0')
    local last_seen = 0
    if presence_timeout_ms > 0 then
      last_seen = math.max(tonumber(redis.call('HGET', presence_key, id) or '0'),
        tonumber(ticket[6] or '0'))
    end
    if closing then
      local ended_as = closing == 'sale_cancelled' and 'cancelled' or 'sold_out'
      redis.call('HSET', KEYS[i], 'status', ended_as, 'reason', closing, 'updated_at_ms', now)
      unlink_live_ticket(live_key, ticket[4], id)
      if ended_as == 'cancelled' then cancelled = cancelled + 1 else sold_out = sold_out + 1 end
      out[#out + 1] = id
      out[#out + 1] = ended_as
    elseif presence_timeout_ms > 0 and now - last_seen > presence_timeout_ms then
      redis.call('HSET', KEYS[i], 'status', 'abandoned', 'updated_at_ms', now)
      unlink_live_ticket(live_key, ticket[4], id)
      abandoned = abandoned + 1
      out[#out + 1] = id
      out[#out + 1] = 'abandoned'
    elseif held + quantity > per_user_limit then
      redis.call('HSET', KEYS[i], 'status', 'sold_out', 'reason', 'per_user_limit',
        'updated_at_ms', now)
      unlink_live_ticket(live_key, ticket[4], id)
      sold_out = sold_out + 1
      out[#out + 1] = id
      out[#out + 1] = 'limit_reached'
    elseif available >= quantity then
      available = available - quantity
      reserved_units = reserved_units + quantity
      local expires = now + ttl_ms
      redis.call('HSET', KEYS[i], 'status', 'reserving', 'expires_at_ms', expires,
        'updated_at_ms', now)
      redis.call('ZADD', expiry_key, expires, id)
      redis.call('HINCRBY', held_key, ticket[4], quantity)
      reserved_total = reserved_total + 1
      out[#out + 1] = id
      out[#out + 1] = 'reserving'
    else
      redis.call('HSET', KEYS[i], 'status', 'sold_out', 'updated_at_ms', now)
      unlink_live_ticket(live_key, ticket[4], id)
      sold_out = sold_out + 1
      out[#out + 1] = id
      out[#out + 1] = 'sold_out'
    end
    decided = decided + 1
    count_for_report(ticket[6], now)
    changed[#changed + 1] = id
    redis.call('HDEL', presence_key, id)
    served = math.max(served, tonumber(ticket[5]))
    pass_units(ticket[7], ticket[3])
  end
end
redis.call('HSET', counters_key, 'available', available, 'served', served, 'served_at_ms', now,
  'served_units', served_units)
if reserved_units > 0 then redis.call('HINCRBY', counters_key, 'reserved', reserved_units) end
if sold_out > 0 then redis.call('HINCRBY', counters_key, 'sold_out', sold_out) end
if abandoned > 0 then redis.call('HINCRBY', counters_key, 'abandoned', abandoned) end
if cancelled > 0 then redis.call('HINCRBY', counters_key, 'cancelled', cancelled) end
if decided > 0 then
  redis.call('HINCRBY', counters_key, 'queued', -decided)
  for name, count in pairs(report) do redis.call('HINCRBY', report_key, name, count) end
  if reserved_total > 0 then redis.call('HINCRBY', report_key, 'reserved_total', reserved_total) end
  local longest = tonumber(redis.call('HGET', report_key, 'wait_max_ms') or '0')
  if wait_max > longest then redis.call('HSET', report_key, 'wait_max_ms', wait_max) end
  local keep_until = tonumber(redis.call('HGET', config_key, 'expire_at_s') or '')
  if keep_until then redis.call('EXPIREAT', report_key, keep_until) end
end
if pace and pace > 0 then
  redis.call('HSET', counters_key, 'pace_tokens', tostring(tokens - decided), 'pace_at_ms', now)
end
if rate_sample > 0 or (pace and pace > 0) then
  local rate = tonumber(redis.call('HGET', counters_key, 'rate') or '0')
  if rate_sample > 0 then
    if rate <= 0 then rate = rate_sample else rate = rate * 0.7 + rate_sample * 0.3 end
  end
  if pace and (rate <= 0 or rate > pace) then rate = pace end
  redis.call('HSET', counters_key, 'rate', tostring(rate))
end
if decided > 0 then
  publish_ticket_events(counters_key, served .. ' ' .. now .. ' ' ..
    (redis.call('HGET', counters_key, 'rate') or '0'), changed)
end
return out
