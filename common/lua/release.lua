-- End a ticket that has not been paid, giving back its stock at once. Used for owner
-- cancellation, reservation expiry, declined payments and dead letters.
-- KEYS: 1 ticket, 2 counters, 3 live, 4 held, 5 expiry
-- ARGV: 1 new status (cancelled|expired|payment_failed), 2 allowed current statuses
--       (comma list), 3 "due" to require expires_at_ms <= now (expiry), else "any",
--       4 payment_intent_id that must match, or "" for any
-- Returns {"released", payment_intent_id or ""} | {"skipped", status}
local ticket = redis.call('HMGET', KEYS[1], 'id', 'status', 'quantity', 'user_id',
  'expires_at_ms', 'payment_intent_id')
local id, status = ticket[1], ticket[2]
if not id then return {'skipped', 'missing'} end
if not string.find(',' .. ARGV[2] .. ',', ',' .. status .. ',', 1, true) then
  return {'skipped', status}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[3] == 'due' and tonumber(ticket[5] or '0') > now then return {'skipped', 'not_due'} end
if ARGV[4] ~= '' and ticket[6] ~= ARGV[4] then return {'skipped', 'other_intent'} end
local quantity = tonumber(ticket[3])
if status == 'queued' then
  redis.call('HINCRBY', KEYS[2], 'queued', -1)
else
  -- reserving or reserved: the units go back to the pool for the next in line.
  redis.call('HINCRBY', KEYS[2], 'reserved', -quantity)
  redis.call('HINCRBY', KEYS[2], 'available', quantity)
  redis.call('HINCRBY', KEYS[4], ticket[4], -quantity)
  redis.call('ZREM', KEYS[5], id)
end
redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'updated_at_ms', now)
if redis.call('HGET', KEYS[3], ticket[4]) == id then redis.call('HDEL', KEYS[3], ticket[4]) end
return {'released', ticket[6] or ''}
