-- End a ticket that has not been paid, giving back its stock at once. Used for owner
-- cancellation, reservation expiry, declined payments and dead letters.
-- The released ticket's PaymentIntent, if any, is put in the sale's cancellation outbox in
-- the same step, so that its cancellation at Stripe cannot be lost: beat sweeps the outbox
-- until Stripe confirms (common/billing/payments.py sweep_intent_cancellations).
-- A card the ticket claimed for the sale (one_card, billing/lua/claim_card.lua) is given back in
-- the same step, if this ticket still holds the claim.
-- KEYS: 1 ticket, 2 counters, 3 live, 4 held, 5 expiry, 6 intent cancellation outbox,
--       7 card claims
-- ARGV: 1 new status (cancelled|expired|payment_failed), 2 allowed current statuses
--       (comma list), 3 "due" to require expires_at_ms <= now (expiry), else "any",
--       4 payment_intent_id that must match, "none" for a ticket without one, "" for any,
--       5 "cancelled" when Stripe already confirmed the intent cancelled (not queued), else ""
-- Returns {"released", payment_intent_id or ""} | {"skipped", status or reason}
local ticket_key, counters_key, live_key, held_key, expiry_key, outbox_key, card_claims_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local new_status, allowed, due_mode, expected_intent, intent_state =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]

local ticket = redis.call('HMGET', ticket_key, 'id', 'status', 'quantity', 'user_id',
  'expires_at_ms', 'payment_intent_id', 'card_fingerprint', 'hold_intent_id')
local id, status, user, intent_id = ticket[1], ticket[2], ticket[4], ticket[6] or ''
if not id then return {'skipped', 'missing'} end
if not string.find(',' .. allowed .. ',', ',' .. status .. ',', 1, true) then
  return {'skipped', status}
end
local now = now_ms()
if due_mode == 'due' and tonumber(ticket[5] or '0') > now then return {'skipped', 'not_due'} end
if expected_intent == 'none' then
  if intent_id ~= '' then return {'skipped', 'other_intent'} end
elseif expected_intent ~= '' and intent_id ~= expected_intent then
  return {'skipped', 'other_intent'}
end
local quantity = tonumber(ticket[3])
if status == 'queued' then
  redis.call('HINCRBY', counters_key, 'queued', -1)
else
  -- reserving or reserved: the units go back to the pool for the next in line.
  redis.call('HINCRBY', counters_key, 'reserved', -quantity)
  redis.call('HINCRBY', counters_key, 'available', quantity)
  redis.call('HINCRBY', held_key, user, -quantity)
  redis.call('ZREM', expiry_key, id)
end
redis.call('HINCRBY', counters_key, new_status, 1)
if intent_id ~= '' and ticket[8] == intent_id then
  -- A drawn entry whose capture failed, or ended before it: its hold is no longer held.
  redis.call('HINCRBY', counters_key, 'draw_held', -1)
  redis.call('HINCRBY', counters_key,
    new_status == 'payment_failed' and 'draw_failed' or 'draw_released', 1)
end
redis.call('HSET', ticket_key, 'status', new_status, 'updated_at_ms', now)
unlink_live_ticket(live_key, user, id)
local card = ticket[7]
if card and redis.call('HGET', card_claims_key, card) == id .. ' ' .. user then
  redis.call('HDEL', card_claims_key, card)
end
if intent_id ~= '' and intent_state ~= 'cancelled' then
  redis.call('ZADD', outbox_key, now, intent_id)
end
publish_ticket_events(counters_key, '- - -', {id})
return {'released', intent_id}
