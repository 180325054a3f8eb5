-- Record the refund of a payment that could not be honoured.
-- KEYS: 1 ticket   ARGV: 1 refund_id   Returns 1.
local ticket_key = KEYS[1]
local refund_id = ARGV[1]

redis.call('HSET', ticket_key, 'refund_id', refund_id, 'updated_at_ms', now_ms())
redis.call('HDEL', ticket_key, 'refund_due')
publish_ticket_events(ticket_key, '- - -', {ticket_id_of(ticket_key)})
return 1
