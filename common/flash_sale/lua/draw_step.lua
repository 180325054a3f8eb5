-- One step of a draw's walk (flash_sale/draw.py), at the cursor `walked` (0-based) of the
-- draw's order. "take": decide the entry at the cursor: while units remain (and its owner's
-- per-user limit allows) it becomes `reserving` with its hold intent as its payment (the
-- units held for it, as a reservation's: billing's settle.lua then makes it `paid` from the
-- capture's answer or its webhook, whichever comes first); otherwise it ends `not_selected`,
-- gives back its card, and its hold enters the cancellation outbox. An entry decided already
-- (a walk that crashed after this step) answers what remains to do for it.
-- "advance": move the cursor past ARGV[1], once.
-- KEYS: 1 draw state, 2 ticket at the cursor, 3 counters, 4 held, 5 live, 6 config,
--       7 intent cancellation outbox, 8 card claims
-- ARGV: 1 the cursor the caller read, 2 "take" | "advance"
-- Returns {"capture", intent id} | {"release", intent id} | {"done", status}
--       | {"moved", cursor} (the cursor is not where the caller read it) | {"advanced", cursor}
local draw_key, ticket_key, counters_key, held_key, live_key, config_key, outbox_key,
  card_claims_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local cursor, action = tonumber(ARGV[1]), ARGV[2]

local walked = tonumber(redis.call('HGET', draw_key, 'walked') or '0')
if walked ~= cursor then return {'moved', walked} end
if action == 'advance' then
  redis.call('HSET', draw_key, 'walked', cursor + 1)
  return {'advanced', cursor + 1}
end
local ticket = redis.call('HMGET', ticket_key, 'id', 'status', 'user_id', 'quantity',
  'hold_intent_id', 'hold_amount_cents', 'hold_currency', 'card_fingerprint', 'hold_status')
local id, status, user, intent_id = ticket[1], ticket[2], ticket[3], ticket[5] or ''
if status == 'reserving' then return {'capture', intent_id} end
if status == 'not_selected' then return {'release', intent_id} end
if status ~= 'lobby' or ticket[9] ~= 'held' then return {'done', status or 'missing'} end
local quantity = tonumber(ticket[4])
local now = now_ms()
local available = tonumber(redis.call('HGET', counters_key, 'available') or '0')
local limit = tonumber(redis.call('HGET', config_key, 'per_user_limit') or '1')
local held = tonumber(redis.call('HGET', held_key, user) or '0')
redis.call('HINCRBY', counters_key, 'lobby', -1)
if available >= quantity and held + quantity <= limit then
  redis.call('HINCRBY', counters_key, 'available', -quantity)
  redis.call('HINCRBY', counters_key, 'reserved', quantity)
  redis.call('HINCRBY', held_key, user, quantity)
  redis.call('HSET', ticket_key, 'status', 'reserving', 'payment_intent_id', intent_id,
    'amount_cents', ticket[6], 'currency', ticket[7], 'updated_at_ms', now)
  publish_ticket_events(counters_key, '- - -', {id})
  return {'capture', intent_id}
end
redis.call('HSET', ticket_key, 'status', 'not_selected', 'updated_at_ms', now)
if available >= quantity then redis.call('HSET', ticket_key, 'reason', 'per_user_limit') end
redis.call('HINCRBY', counters_key, 'not_selected', 1)
redis.call('HINCRBY', counters_key, 'draw_held', -1)
if intent_id ~= '' then redis.call('HINCRBY', counters_key, 'draw_released', 1) end
unlink_live_ticket(live_key, user, id)
local card = ticket[8]
if card and redis.call('HGET', card_claims_key, card) == id .. ' ' .. user then
  redis.call('HDEL', card_claims_key, card)
end
if intent_id ~= '' then redis.call('ZADD', outbox_key, now, intent_id) end
publish_ticket_events(counters_key, '- - -', {id})
return {'release', intent_id}
