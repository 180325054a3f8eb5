-- Give one chunk of the lobby its places, in the drawn order (flash_sale/lobby.py): each
-- ticket becomes `queued` with seq = its place and units_before = the units of the places
-- before it, and enters the stream, so the deciders take the lobby first, in place order.
-- Idempotent: places up to the counter `lobby_placed` are kept as they are (a ticket never
-- gets a second place); a chunk that would leave a gap is refused.
-- The tickets placed now are published once per chunk on the sale's events channel, so a
-- lobby ticket whose stream is open learns its place at once (ticket_events.py).
-- KEYS: 1 counters, 2 stream, 3.. ticket keys in place order, starting at place ARGV[1]
-- ARGV: 1 the first ticket's place (1 = first)
-- Returns {"placed", lobby_placed, lobby_size} | {"gap", lobby_placed, lobby_size}
--       | {"not_closed", 0, 0}
local counters_key, stream_key = KEYS[1], KEYS[2]
local FIRST_TICKET = 3
local first_place = tonumber(ARGV[1])
local state = redis.call('HMGET', counters_key, 'lobby_closed', 'lobby_size', 'lobby_placed',
  'lobby_placed_units')
if state[1] ~= '1' then return {'not_closed', 0, 0} end
local size, placed, units = tonumber(state[2] or '0'), tonumber(state[3] or '0'),
  tonumber(state[4] or '0')
if first_place > placed + 1 then return {'gap', placed, size} end
local now = now_ms()
local moved = 0
local changed = {}
for i = FIRST_TICKET, #KEYS do
  local place = first_place + i - FIRST_TICKET
  if place > placed and place <= size then
    local ticket = redis.call('HMGET', KEYS[i], 'id', 'status', 'quantity')
    if ticket[2] == 'lobby' then
      redis.call('HSET', KEYS[i], 'status', 'queued', 'seq', place, 'units_before', units,
        'updated_at_ms', now)
      redis.call('XADD', stream_key, '*', 'ticket_id', ticket[1], 'seq', place)
      units = units + tonumber(ticket[3])
      moved = moved + 1
      changed[moved] = ticket[1]
    end
    placed = place
  end
end
redis.call('HSET', counters_key, 'lobby_placed', placed, 'lobby_placed_units', units)
if moved > 0 then
  redis.call('HINCRBY', counters_key, 'lobby', -moved)
  redis.call('HINCRBY', counters_key, 'queued', moved)
  publish_ticket_events(counters_key, '- - -', changed)
end
return {'placed', placed, size}
