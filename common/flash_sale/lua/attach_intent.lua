-- Record a reservation's PaymentIntent and show the ticket as reserved.
-- KEYS: 1 ticket, 2 intent cancellation outbox
-- ARGV: 1 payment_intent_id, 2 client_secret, 3 amount_cents, 4 currency
-- Returns "attached" (now reserved, or already with this intent), "duplicate" (another
-- intent won), "gone" (the ticket left the reservation), or "missing". A losing intent is
-- put in the cancellation outbox in this same step, so its cancellation cannot be lost.
local ticket_key, outbox_key = KEYS[1], KEYS[2]
local intent_id, client_secret, amount_cents, currency = ARGV[1], ARGV[2], ARGV[3], ARGV[4]

local ticket = redis.call('HMGET', ticket_key, 'status', 'payment_intent_id')
local status, current = ticket[1], ticket[2]
local now = now_ms()
local function lost(outcome)
  redis.call('ZADD', outbox_key, now, intent_id)
  return outcome
end
if not status then return lost('missing') end
if current and current ~= intent_id then return lost('duplicate') end
if status == 'reserving' then
  redis.call('HSET', ticket_key, 'status', 'reserved', 'payment_intent_id', intent_id,
    'client_secret', client_secret, 'amount_cents', amount_cents, 'currency', currency,
    'updated_at_ms', now)
  publish_ticket_events(ticket_key, '- - -', {ticket_id_of(ticket_key)})
  return 'attached'
end
if current == intent_id then return 'attached' end
return lost('gone')
