-- First step of a succeeded payment: move the ticket's units into `sold`.
-- A live reservation settles directly. A ticket whose reservation already expired is
-- honoured only if a unit is still free and its owner's per-user limit allows it; any other
-- ended ticket (cancelled, declined, sold out) is never charged: its money is refunded.
-- A late payment takes back the card claim its ticket gave up on expiry (one_card), and is
-- refunded if another account's ticket has claimed that card since.
-- KEYS: 1 ticket, 2 counters, 3 live, 4 held, 5 expiry, 6 settled, 7 config, 8 card claims
-- ARGV: 1 payment_intent_id, 2 candidate order id
-- Returns {"settle", order_id} (write the order, then mark paid) | {"paid", order_id}
--       | {"refund", reason} | {"refunded"} | {"foreign"} | {"missing"}
local ticket_key, counters_key, live_key, held_key, expiry_key, settled_key, config_key,
  card_claims_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local intent_id, candidate_order_id = ARGV[1], ARGV[2]

local ticket = redis.call('HMGET', ticket_key, 'id', 'status', 'quantity', 'user_id',
  'payment_intent_id', 'order_id', 'refund_id', 'refund_due', 'card_fingerprint',
  'hold_intent_id')
local id, status, user = ticket[1], ticket[2], ticket[4]
if not id then return {'missing'} end
if ticket[5] ~= intent_id then return {'foreign'} end
if status == 'paid' then return {'paid', ticket[6]} end
if status == 'settling' then return {'settle', ticket[6]} end
if ticket[7] then return {'refunded'} end
-- Once a refund is decided it is finished, even if stock has come free since: the refund
-- may have reached Stripe with its answer lost, and must not be followed by an order.
if ticket[8] then return {'refund', ticket[8]} end
local quantity = tonumber(ticket[3])
local now = now_ms()

local function refund(reason)
  redis.call('HSET', ticket_key, 'refund_due', reason, 'updated_at_ms', now)
  publish_ticket_events(ticket_key, '- - -', {id})
  return {'refund', reason}
end

if status == 'reserving' or status == 'reserved' then
  -- The units are already counted in the owner's `held`.
  redis.call('HINCRBY', counters_key, 'reserved', -quantity)
  redis.call('ZREM', expiry_key, id)
  if ticket[10] == intent_id then
    -- A drawn entry's hold captured (counters draw_held, draw_captured).
    redis.call('HINCRBY', counters_key, 'draw_held', -1)
    redis.call('HINCRBY', counters_key, 'draw_captured', 1)
  end
elseif status == 'expired' then
  -- Paid after its reservation ended: honour it only if units are still free and the
  -- owner has not since held or bought their share with another ticket.
  local available = tonumber(redis.call('HGET', counters_key, 'available'))
  if available < quantity then return refund('no_stock') end
  local limit = tonumber(redis.call('HGET', config_key, 'per_user_limit'))
  local held = tonumber(redis.call('HGET', held_key, user) or '0')
  if held + quantity > limit then return refund('per_user_limit') end
  local card = ticket[9]
  if card and card_claims_key and redis.call('HGET', config_key, 'one_card') == '1' then
    local holder = redis.call('HGET', card_claims_key, card)
    if holder and string.match(holder, ' (.*)$') ~= user then return refund('card_already_used') end
    if not holder then redis.call('HSET', card_claims_key, card, id .. ' ' .. user) end
  end
  redis.call('HINCRBY', counters_key, 'available', -quantity)
  redis.call('HINCRBY', held_key, user, quantity)
  redis.call('HINCRBY', counters_key, status, -1)
  redis.call('HSET', ticket_key, 'honoured_after', status)
else
  -- cancelled, payment_failed, sold_out: final, and never charged.
  return refund(status)
end
redis.call('HINCRBY', counters_key, 'sold', quantity)
redis.call('SADD', settled_key, id)
redis.call('HSET', ticket_key, 'status', 'settling', 'order_id', candidate_order_id, 'updated_at_ms', now)
unlink_live_ticket(live_key, user, id)
publish_ticket_events(ticket_key, '- - -', {id})
return {'settle', candidate_order_id}
