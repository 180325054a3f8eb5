-- Last step of a succeeded payment, after the order is stored: the ticket shows paid.
-- KEYS: 1 ticket, 2 counters
-- ARGV: 1 order_id
-- Returns 1 when this call marked it, 0 when it already was (or is not settling).
local ticket_key, counters_key = KEYS[1], KEYS[2]
local order_id = ARGV[1]

if redis.call('HGET', ticket_key, 'status') ~= 'settling' then return 0 end
redis.call('HSET', ticket_key, 'status', 'paid', 'order_id', order_id, 'updated_at_ms', now_ms())
redis.call('HINCRBY', counters_key, 'paid', 1)
publish_ticket_events(ticket_key, '- - -', {ticket_id_of(ticket_key)})
return 1
