-- First step of a succeeded payment: move the ticket's units into `sold`.
-- A live reservation settles directly; a ticket that already expired or was cancelled is
-- honoured if stock can still be taken atomically, otherwise it must be refunded.
-- KEYS: 1 ticket, 2 counters, 3 live, 4 held, 5 expiry, 6 settled
-- ARGV: 1 payment_intent_id, 2 candidate order id
-- Returns {"settle", order_id} (write the order, then mark paid) | {"paid", order_id}
--       | {"refund"} | {"refunded"} | {"foreign"} | {"missing"}
local ticket = redis.call('HMGET', KEYS[1], 'id', 'status', 'quantity', 'user_id',
  'payment_intent_id', 'order_id', 'refund_id', 'refund_due')
local id, status = ticket[1], ticket[2]
if not id then return {'missing'} end
if ticket[5] ~= ARGV[1] then return {'foreign'} end
if status == 'paid' then return {'paid', ticket[6]} end
if status == 'settling' then return {'settle', ticket[6]} end
if ticket[7] then return {'refunded'} end
-- Once a refund is decided it is finished, even if stock has come free since: the refund
-- may have reached Stripe with its answer lost, and must not be followed by an order.
if ticket[8] then return {'refund'} end
local quantity = tonumber(ticket[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if status == 'reserving' or status == 'reserved' then
  redis.call('HINCRBY', KEYS[2], 'reserved', -quantity)
  redis.call('ZREM', KEYS[5], id)
else
  -- Paid after its reservation ended: honour it only if units are still free.
  local available = tonumber(redis.call('HGET', KEYS[2], 'available'))
  if available < quantity then
    redis.call('HSET', KEYS[1], 'refund_due', '1', 'updated_at_ms', now)
    return {'refund'}
  end
  redis.call('HINCRBY', KEYS[2], 'available', -quantity)
  redis.call('HINCRBY', KEYS[4], ticket[4], quantity)
  redis.call('HINCRBY', KEYS[2], status, -1)
  redis.call('HSET', KEYS[1], 'honoured_after', status)
end
redis.call('HINCRBY', KEYS[2], 'sold', quantity)
redis.call('SADD', KEYS[6], id)
redis.call('HSET', KEYS[1], 'status', 'settling', 'order_id', ARGV[2], 'updated_at_ms', now)
if redis.call('HGET', KEYS[3], ticket[4]) == id then redis.call('HDEL', KEYS[3], ticket[4]) end
return {'settle', ARGV[2]}
