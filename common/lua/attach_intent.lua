-- Record a reservation's PaymentIntent and show the ticket as reserved.
-- KEYS: 1 ticket
-- ARGV: 1 payment_intent_id, 2 client_secret, 3 amount_cents, 4 currency
-- Returns "attached" (now reserved, or already with this intent), "duplicate" (another
-- intent won: cancel this one), "gone" (the ticket left the reservation: cancel this one),
-- or "missing".
local ticket = redis.call('HMGET', KEYS[1], 'status', 'payment_intent_id')
local status, current = ticket[1], ticket[2]
if not status then return 'missing' end
if current and current ~= ARGV[1] then return 'duplicate' end
if status == 'reserving' then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('HSET', KEYS[1], 'status', 'reserved', 'payment_intent_id', ARGV[1],
    'client_secret', ARGV[2], 'amount_cents', ARGV[3], 'currency', ARGV[4], 'updated_at_ms', now)
  return 'attached'
end
if current == ARGV[1] then return 'attached' end
return 'gone'
