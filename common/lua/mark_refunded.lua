-- Record the refund of a payment that arrived too late to be honoured.
-- KEYS: 1 ticket   ARGV: 1 refund_id
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], 'refund_id', ARGV[1], 'updated_at_ms', now)
redis.call('HDEL', KEYS[1], 'refund_due')
return 1
