-- End the lobby tickets of a sale the operator ended or cancelled (flash_sale/controls.py),
-- a page at a time: each ticket still `lobby` ends `sold_out` (ended) or `cancelled`
-- (cancelled) with the reason, leaves the live index and the lobby's count; a draw entry's
-- card hold goes into the sale's cancellation outbox in the same step (beat's sweep cancels
-- it at Stripe until Stripe confirms: the hold is released). Idempotent: a ticket that moved
-- on (placed, withdrawn, drawn) is left alone. The tickets stay in the lobby's set (the
-- draw's public record).
-- KEYS: 1 counters, 2 live, 3 intent cancellation outbox, 4.. ticket keys
-- ARGV: 1 status (sold_out | cancelled), 2 reason (sale_ended | sale_cancelled)
-- Returns the ids of the tickets ended now.
local counters_key, live_key, outbox_key = KEYS[1], KEYS[2], KEYS[3]
local new_status, reason = ARGV[1], ARGV[2]
local FIRST_TICKET = 4
local now = now_ms()
local ended = {}
for i = FIRST_TICKET, #KEYS do
  local ticket = redis.call('HMGET', KEYS[i], 'id', 'status', 'user_id', 'hold_intent_id',
    'hold_status')
  if ticket[2] == 'lobby' then
    redis.call('HSET', KEYS[i], 'status', new_status, 'reason', reason, 'updated_at_ms', now)
    unlink_live_ticket(live_key, ticket[3], ticket[1])
    redis.call('HINCRBY', counters_key, 'lobby', -1)
    redis.call('HINCRBY', counters_key, new_status, 1)
    if ticket[4] and ticket[4] ~= '' then
      redis.call('ZADD', outbox_key, now, ticket[4])
      redis.call('HINCRBY', counters_key, 'draw_released', 1)
    end
    if ticket[5] == 'held' then redis.call('HINCRBY', counters_key, 'draw_held', -1) end
    ended[#ended + 1] = ticket[1]
  end
end
if #ended > 0 then publish_ticket_events(counters_key, '- - -', ended) end
return ended
