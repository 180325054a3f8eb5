-- Decide a batch of tickets in arrival order: reserve stock for each while it lasts, else
-- sold out. Never below zero; a ticket already decided keeps its decision (idempotent).
-- A ticket whose owner already holds or bought their share (a late payment for an expired
-- ticket was honoured meanwhile) is not reserved: it ends sold out with reason
-- `per_user_limit`, and its turn passes to the next in line.
-- KEYS: 1 config, 2 counters, 3 live, 4 held, 5 expiry, 6.. ticket keys (in stream order)
-- ARGV: 1 decisions-per-second sample (0 = none)
-- Returns a flat list: ticket_id, outcome, per ticket; outcome is "reserving", "sold_out",
-- "limit_reached", "missing" or "already:<status>".
local config = redis.call('HMGET', KEYS[1], 'ttl_s', 'per_user_limit')
local ttl_ms = tonumber(config[1]) * 1000
local per_user_limit = tonumber(config[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local available = tonumber(redis.call('HGET', KEYS[2], 'available'))
local served = tonumber(redis.call('HGET', KEYS[2], 'served') or '0')
local out = {}
local reserved_units, sold_out, decided = 0, 0, 0
for i = 6, #KEYS do
  local ticket = redis.call('HMGET', KEYS[i], 'id', 'status', 'quantity', 'user_id', 'seq')
  local id, status = ticket[1], ticket[2]
  if not id then
    out[#out + 1] = KEYS[i]
    out[#out + 1] = 'missing'
  elseif status ~= 'queued' then
    out[#out + 1] = id
    out[#out + 1] = 'already:' .. status
    served = math.max(served, tonumber(ticket[5]))
  else
    local quantity = tonumber(ticket[3])
    local held = tonumber(redis.call('HGET', KEYS[4], ticket[4]) or '0')
    if held + quantity > per_user_limit then
      redis.call('HSET', KEYS[i], 'status', 'sold_out', 'reason', 'per_user_limit',
        'updated_at_ms', now)
      if redis.call('HGET', KEYS[3], ticket[4]) == id then redis.call('HDEL', KEYS[3], ticket[4]) end
      sold_out = sold_out + 1
      out[#out + 1] = id
      out[#out + 1] = 'limit_reached'
    elseif available >= quantity then
      available = available - quantity
      reserved_units = reserved_units + quantity
      local expires = now + ttl_ms
      redis.call('HSET', KEYS[i], 'status', 'reserving', 'expires_at_ms', expires,
        'updated_at_ms', now)
      redis.call('ZADD', KEYS[5], expires, id)
      redis.call('HINCRBY', KEYS[4], ticket[4], quantity)
      out[#out + 1] = id
      out[#out + 1] = 'reserving'
    else
      redis.call('HSET', KEYS[i], 'status', 'sold_out', 'updated_at_ms', now)
      if redis.call('HGET', KEYS[3], ticket[4]) == id then redis.call('HDEL', KEYS[3], ticket[4]) end
      sold_out = sold_out + 1
      out[#out + 1] = id
      out[#out + 1] = 'sold_out'
    end
    decided = decided + 1
    served = math.max(served, tonumber(ticket[5]))
  end
end
redis.call('HSET', KEYS[2], 'available', available, 'served', served)
if reserved_units > 0 then redis.call('HINCRBY', KEYS[2], 'reserved', reserved_units) end
if sold_out > 0 then redis.call('HINCRBY', KEYS[2], 'sold_out', sold_out) end
if decided > 0 then redis.call('HINCRBY', KEYS[2], 'queued', -decided) end
local sample = tonumber(ARGV[1])
if sample > 0 then
  local rate = tonumber(redis.call('HGET', KEYS[2], 'rate') or '0')
  if rate <= 0 then rate = sample else rate = rate * 0.7 + sample * 0.3 end
  redis.call('HSET', KEYS[2], 'rate', tostring(rate))
end
return out
