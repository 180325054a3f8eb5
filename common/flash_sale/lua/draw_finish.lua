-- The end of a draw's walk (flash_sale/draw.py): every lobby place counts as served and
-- placed, so the tickets admitted after the start (waiting in the after-lobby list) can go
-- into the stream behind it (release_after_lobby.lua) for any unit the draw left; the draw
-- is marked done. Idempotent.
-- KEYS: 1 draw state, 2 counters, 3 draw order
-- ARGV: none
-- Returns {"finished"} | {"not_walked", walked or prepared, of}
local draw_key, counters_key, order_key = KEYS[1], KEYS[2], KEYS[3]
local state = redis.call('HMGET', draw_key, 'walked', 'prepared', 'done')
if state[3] == '1' then return {'finished'} end
local lobby = redis.call('HMGET', counters_key, 'lobby_size', 'lobby_units', 'served', 'served_units')
local size, units = tonumber(lobby[1] or '0'), tonumber(lobby[2] or '0')
local prepared, walked = tonumber(state[2] or '0'), tonumber(state[1] or '0')
if prepared < size then return {'not_walked', prepared, size} end
local entries = redis.call('LLEN', order_key)
if walked < entries then return {'not_walked', walked, entries} end
redis.call('HSET', counters_key, 'lobby_placed', size, 'lobby_placed_units', units,
  'served', math.max(size, tonumber(lobby[3] or '0')),
  'served_units', math.max(units, tonumber(lobby[4] or '0')), 'served_at_ms', now_ms())
redis.call('HSET', draw_key, 'done', 1)
return {'finished'}
