-- Admit one shopper into a sale's waiting room, in one round trip.
-- KEYS: 1 config, 2 counters, 3 stream, 4 live, 5 latest, 6 held, 7 kick, 8 new ticket
-- ARGV: 1 ticket_id, 2 user_id, 3 quantity, 4 kick debounce ms, 5 sale_id
-- Returns {"issued", ticket_id, kick(0|1)} | {"existing", ticket_id} | {"no_sale"}
--       | {"not_open", "scheduled"|"ended"} | {"sold_out"} | {"over_limit", limit}
--       | {"limit_reached", held}
local config = redis.call('HMGET', KEYS[1], 'starts_at_ms', 'ends_at_ms', 'per_user_limit', 'expire_at_s')
if not config[1] then return {'no_sale'} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
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
local kick = redis.call('SET', KEYS[7], '1', 'NX', 'PX', tonumber(ARGV[4]))
return {'issued', ARGV[1], kick and 1 or 0}
