-- Record what Stripe said of a draw entry's hold (billing/holds.py): `held` (requires_capture)
-- or `failed` (declined). Only for the entry's current hold intent, while it is in the lobby;
-- `held` only before the lobby closes, unless the draw itself asks (it checks pending holds
-- as it starts, flash_sale/draw.py).
-- KEYS: 1 ticket, 2 counters
-- ARGV: 1 intent id, 2 "held" | "failed", 3 "draw" when the draw asks, else ""
-- Returns {"marked"} | {"ended", status or "drawing" or "other_intent"}
-- Counts (counters draw_held, draw_failed) only a change of status, so a replay counts nothing.
local ticket_key, counters_key = KEYS[1], KEYS[2]
local intent_id, hold_status, asker = ARGV[1], ARGV[2], ARGV[3]

local ticket = redis.call('HMGET', ticket_key, 'id', 'status', 'hold_intent_id', 'hold_status')
if ticket[2] ~= 'lobby' then return {'ended', ticket[2] or 'missing'} end
if ticket[3] ~= intent_id then return {'ended', 'other_intent'} end
if hold_status == 'held' and asker ~= 'draw'
    and redis.call('HGET', counters_key, 'lobby_closed') == '1' then
  return {'ended', 'drawing'}
end
local previous = ticket[4]
if previous ~= hold_status then
  if hold_status == 'held' then redis.call('HINCRBY', counters_key, 'draw_held', 1) end
  if previous == 'held' then redis.call('HINCRBY', counters_key, 'draw_held', -1) end
  if hold_status == 'failed' then redis.call('HINCRBY', counters_key, 'draw_failed', 1) end
end
redis.call('HSET', ticket_key, 'hold_status', hold_status, 'updated_at_ms', now_ms())
publish_ticket_events(ticket_key, '- - -', {ticket[1]})
return {'marked'}
