-- Last step of a succeeded payment, after the order is stored: the ticket shows paid.
-- KEYS: 1 ticket, 2 counters
-- ARGV: 1 order_id
-- Returns 1 when this call marked it, 0 when it already was (or is not settling).
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'settling' then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], 'status', 'paid', 'order_id', ARGV[1], 'updated_at_ms', now)
redis.call('HINCRBY', KEYS[2], 'paid', 1)
return 1
