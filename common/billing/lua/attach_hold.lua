-- Give a draw entry (a `lobby` ticket with a hold, billing/holds.py) a new hold intent in
-- place of the one it had (none, or one declined): only while the entry is still in a lobby
-- that has not closed, and only over the intent the caller read (so two attempts at once
-- attach one). The replaced intent goes into the sale's cancellation outbox in the same step.
-- KEYS: 1 ticket, 2 counters, 3 intent cancellation outbox
-- ARGV: 1 new intent id, 2 its client_secret, 3 the intent the caller read ("" for none)
-- Returns {"attached"} | {"other", current intent id} | {"ended", status or "drawing"}
local ticket_key, counters_key, outbox_key = KEYS[1], KEYS[2], KEYS[3]
local intent_id, client_secret, expected = ARGV[1], ARGV[2], ARGV[3]

local ticket = redis.call('HMGET', ticket_key, 'status', 'hold_status', 'hold_intent_id')
if ticket[1] ~= 'lobby' or not ticket[2] then return {'ended', ticket[1] or 'missing'} end
if redis.call('HGET', counters_key, 'lobby_closed') == '1' then return {'ended', 'drawing'} end
local current = ticket[3] or ''
if current == intent_id then return {'attached'} end
if current ~= expected then return {'other', current} end
if current ~= '' then
  redis.call('ZADD', outbox_key, now_ms(), current)
  -- A held intent replaced is released (counters draw_held, draw_released).
  if ticket[2] == 'held' then
    redis.call('HINCRBY', counters_key, 'draw_held', -1)
    redis.call('HINCRBY', counters_key, 'draw_released', 1)
  end
end
redis.call('HSET', ticket_key, 'hold_intent_id', intent_id, 'hold_client_secret', client_secret,
  'hold_status', 'required', 'updated_at_ms', now_ms())
return {'attached'}
