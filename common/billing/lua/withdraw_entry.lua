-- Withdraw a draw entry before the draw (billing/holds.py): the ticket ends `cancelled` with
-- reason `withdrawn`, leaves the lobby (so it is not among the draw's entries), gives back
-- the card it claimed, and its hold intent goes into the sale's cancellation outbox, in one
-- step. Refused once the lobby has closed (the draw has its entries).
-- KEYS: 1 ticket, 2 counters, 3 live, 4 lobby, 5 intent cancellation outbox, 6 card claims
-- ARGV: 1 the owner's user id
-- Returns {"withdrawn", hold intent id or ""} | {"ended", status or "drawing"}
local ticket_key, counters_key, live_key, lobby_key, outbox_key, card_claims_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local owner = ARGV[1]

local ticket = redis.call('HMGET', ticket_key, 'id', 'status', 'user_id', 'quantity',
  'hold_status', 'hold_intent_id', 'card_fingerprint')
local id, status, user = ticket[1], ticket[2], ticket[3]
if not id or user ~= owner then return {'ended', 'missing'} end
if status ~= 'lobby' or not ticket[5] then return {'ended', status} end
if redis.call('HGET', counters_key, 'lobby_closed') == '1' then return {'ended', 'drawing'} end
local now = now_ms()
redis.call('HSET', ticket_key, 'status', 'cancelled', 'reason', 'withdrawn', 'updated_at_ms', now)
redis.call('ZREM', lobby_key, id)
redis.call('HINCRBY', counters_key, 'lobby', -1)
redis.call('HINCRBY', counters_key, 'lobby_size', -1)
redis.call('HINCRBY', counters_key, 'lobby_units', -tonumber(ticket[4]))
redis.call('HINCRBY', counters_key, 'cancelled', 1)
unlink_live_ticket(live_key, user, id)
local card = ticket[7]
if card and redis.call('HGET', card_claims_key, card) == id .. ' ' .. user then
  redis.call('HDEL', card_claims_key, card)
end
local intent_id = ticket[6] or ''
if intent_id ~= '' then
  redis.call('ZADD', outbox_key, now, intent_id)
  redis.call('HINCRBY', counters_key, 'draw_released', 1)
end
if ticket[5] == 'held' then redis.call('HINCRBY', counters_key, 'draw_held', -1) end
publish_ticket_events(counters_key, '- - -', {id})
return {'withdrawn', intent_id}
