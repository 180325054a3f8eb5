-- Admit one shopper into a sale's waiting room, in one round trip.
-- KEYS: 1 config, 2 counters, 3 stream, 4 live, 5 latest, 6 held, 7 kick, 8 new ticket,
--       9 the shopper's admission rate (GCRA), 10 drain lock
-- ARGV: 1 ticket_id, 2 user_id, 3 quantity, 4 kick debounce ms, 5 sale_id,
--       6 ms between admissions at the limit's rate, 7 burst allowance ms (0 = no limit)
-- Returns {"issued", ticket_id, kick(0|1)} | {"existing", ticket_id} | {"no_sale"}
--       | {"not_open", "scheduled"|"ended"} | {"sold_out"} | {"over_limit", limit}
--       | {"limit_reached", held} | {"rate_limited", retry_after_ms}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

-- Rate limit first, in this same round trip (GCRA: one key holding the theoretical arrival
-- time): a client hammering admission is refused before anything else is touched.
local interval = tonumber(ARGV[6])
if interval > 0 then
  local tat = math.max(tonumber(redis.call('GET', KEYS[9]) or '0'), now)
  local allowance = tonumber(ARGV[7])
  if tat - now > allowance then return {'rate_limited', tat - now - allowance} end
  redis.call('SET', KEYS[9], tat + interval, 'PX', tat + interval - now)
end

local config = redis.call('HMGET', KEYS[1], 'starts_at_ms', 'ends_at_ms', 'per_user_limit', 'expire_at_s')
if not config[1] then return {'no_sale'} end
if now < tonumber(config[1]) then return {'not_open', 'scheduled'} end
if now >= tonumber(config[2]) then return {'not_open', 'ended'} end

local user = ARGV[2]
local live = redis.call('HGET', KEYS[4], user)
if live then return {'existing', live} end

local quantity = tonumber(ARGV[3])
local limit = tonumber(config[3])
if quantity > limit then return {'over_limit', limit} end
local held = tonumber(redis.call('HGET', KEYS[6], user) or '0')
if held + quantity > limit then return {'limit_reached', held} end

local stock = redis.call('HMGET', KEYS[2], 'available', 'reserved')
if tonumber(stock[1]) <= 0 and tonumber(stock[2]) <= 0 then return {'sold_out'} end

local seq = redis.call('HINCRBY', KEYS[2], 'issued', 1)
redis.call('HINCRBY', KEYS[2], 'queued', 1)
local stamp = tostring(now)
redis.call('HSET', KEYS[8], 'id', ARGV[1], 'sale_id', ARGV[5], 'user_id', user,
  'quantity', quantity, 'seq', seq, 'status', 'queued', 'created_at_ms', stamp, 'updated_at_ms', stamp)
redis.call('EXPIREAT', KEYS[8], tonumber(config[4]))
redis.call('XADD', KEYS[3], '*', 'ticket_id', ARGV[1], 'seq', seq)
redis.call('HSET', KEYS[4], user, ARGV[1])
redis.call('HSET', KEYS[5], user, ARGV[1])
-- A decider already draining this sale will read the entry: nudge workers only when none is.
-- (A decider re-checks for undecided tickets after letting go of its lock.)
local kick = false
if redis.call('EXISTS', KEYS[10]) == 0 then
  kick = redis.call('SET', KEYS[7], '1', 'NX', 'PX', tonumber(ARGV[4]))
end
return {'issued', ARGV[1], kick and 1 or 0}
