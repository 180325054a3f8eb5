-- Admit one shopper into a sale's waiting room, in one round trip.
-- KEYS: 1 config, 2 counters, 3 stream, 4 live, 5 latest, 6 held, 7 kick, 8 new ticket,
--       9 the shopper's admission rate (GCRA), 10 drain lock
-- ARGV: 1 ticket_id, 2 user_id, 3 quantity, 4 kick debounce ms, 5 sale_id,
--       6 ms between admissions at the limit's rate, 7 burst allowance ms (0 = no limit)
-- Returns {"issued", ticket_id, kick(0|1), seq, created_at_ms, served, rate}
--       (all the answer needs, so an admission is this one call) | {"existing", ticket_id} | {"no_sale"}
--       | {"not_open", "scheduled"|"ended"} | {"sold_out"} | {"over_limit", limit}
--       | {"limit_reached", held} | {"rate_limited", retry_after_ms}
local config_key, counters_key, stream_key, live_key, latest_key, held_key, kick_key,
  ticket_key, rate_key, drain_lock_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10]
local ticket_id, user, quantity, kick_debounce_ms, sale_id, interval, allowance =
  ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6]),
  tonumber(ARGV[7])
local now = now_ms()

-- Rate limit first, in this same round trip (GCRA: one key holding the theoretical arrival
-- time): a client hammering admission is refused before anything else is touched.
if interval > 0 then
  local tat = math.max(tonumber(redis.call('GET', rate_key) or '0'), now)
  if tat - now > allowance then return {'rate_limited', tat - now - allowance} end
  redis.call('SET', rate_key, tat + interval, 'PX', tat + interval - now)
end

local config = redis.call('HMGET', config_key, 'starts_at_ms', 'ends_at_ms', 'per_user_limit', 'expire_at_s')
if not config[1] then return {'no_sale'} end
if now < tonumber(config[1]) then return {'not_open', 'scheduled'} end
if now >= tonumber(config[2]) then return {'not_open', 'ended'} end

local live = redis.call('HGET', live_key, user)
if live then return {'existing', live} end

local limit = tonumber(config[3])
if quantity > limit then return {'over_limit', limit} end
local held = tonumber(redis.call('HGET', held_key, user) or '0')
if held + quantity > limit then return {'limit_reached', held} end

local stock = redis.call('HMGET', counters_key, 'available', 'reserved', 'served', 'rate')
if tonumber(stock[1]) <= 0 and tonumber(stock[2]) <= 0 then return {'sold_out'} end

local seq = redis.call('HINCRBY', counters_key, 'issued', 1)
redis.call('HINCRBY', counters_key, 'queued', 1)
local stamp = tostring(now)
redis.call('HSET', ticket_key, 'id', ticket_id, 'sale_id', sale_id, 'user_id', user,
  'quantity', quantity, 'seq', seq, 'status', 'queued', 'created_at_ms', stamp, 'updated_at_ms', stamp)
redis.call('EXPIREAT', ticket_key, tonumber(config[4]))
redis.call('XADD', stream_key, '*', 'ticket_id', ticket_id, 'seq', seq)
redis.call('HSET', live_key, user, ticket_id)
redis.call('HSET', latest_key, user, ticket_id)
-- A decider already draining this sale will read the entry: nudge workers only when none is.
-- (A decider re-checks for undecided tickets after letting go of its lock.)
local kick = false
if redis.call('EXISTS', drain_lock_key) == 0 then
  kick = redis.call('SET', kick_key, '1', 'NX', 'PX', kick_debounce_ms)
end
return {'issued', ticket_id, kick and 1 or 0, seq, stamp, stock[3] or '0', stock[4] or '0'}
