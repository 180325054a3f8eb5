-- A draw sale's start, one chunk of its lobby in drawn order (flash_sale/draw.py): every
-- entry gets its drawn rank as `seq` (so the lobby's fairness check reads a draw as it reads
-- a placed lobby); a held entry joins the draw's order; any other ends `cancelled` with
-- reason `no_hold`, gives back its card, and its hold intent (if any) enters the
-- cancellation outbox. Idempotent: a chunk applies only right after the ranks already given.
-- KEYS: 1 draw state, 2 draw order, 3 counters, 4 live, 5 intent cancellation outbox,
--       6 card claims, 7.. ticket keys in drawn order, starting at rank ARGV[1]
-- ARGV: 1 the first ticket's rank (1 = first)
-- Returns {"prepared", ranks given, intents queued for cancellation...} | {"gap", ranks given}
local draw_key, order_key, counters_key, live_key, outbox_key, card_claims_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local FIRST_TICKET = 7
local first = tonumber(ARGV[1])
local prepared = tonumber(redis.call('HGET', draw_key, 'prepared') or '0')
if first ~= prepared + 1 then return {'gap', prepared} end
local now = now_ms()
local reply = {'prepared', 0}
local changed = {}
for i = FIRST_TICKET, #KEYS do
  local rank = first + i - FIRST_TICKET
  local ticket = redis.call('HMGET', KEYS[i], 'id', 'status', 'user_id', 'hold_status',
    'hold_intent_id', 'card_fingerprint')
  local id, user = ticket[1], ticket[3]
  if id and ticket[2] == 'lobby' then
    redis.call('HSET', KEYS[i], 'seq', rank)
    if ticket[4] == 'held' then
      redis.call('RPUSH', order_key, id)
    else
      redis.call('HSET', KEYS[i], 'status', 'cancelled', 'reason', 'no_hold', 'updated_at_ms', now)
      redis.call('HINCRBY', counters_key, 'lobby', -1)
      redis.call('HINCRBY', counters_key, 'cancelled', 1)
      unlink_live_ticket(live_key, user, id)
      local card = ticket[6]
      if card and redis.call('HGET', card_claims_key, card) == id .. ' ' .. user then
        redis.call('HDEL', card_claims_key, card)
      end
      if ticket[5] and ticket[5] ~= '' then
        redis.call('ZADD', outbox_key, now, ticket[5])
        redis.call('HINCRBY', counters_key, 'draw_released', 1)
        table.insert(reply, ticket[5])
      end
      table.insert(changed, id)
    end
  end
  prepared = rank
end
redis.call('HSET', draw_key, 'prepared', prepared)
reply[2] = prepared
if #changed > 0 then publish_ticket_events(counters_key, '- - -', changed) end
return reply
