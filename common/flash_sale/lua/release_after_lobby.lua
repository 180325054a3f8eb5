-- Once the whole lobby is placed: move the tickets admitted after the start meanwhile from
-- the after-lobby list into the stream, in arrival order (behind the lobby), and when none is
-- left mark the lobby done, from which admit.lua adds new tickets to the stream itself.
-- The list check and the flag are one atomic step, so no admission can fall between them.
-- KEYS: 1 counters, 2 stream, 3 after-lobby, 4.. keys of the list's first tickets (as read)
-- ARGV: none
-- Returns {"moved", n, done(0|1)} | {"not_placed", 0, 0} | {"changed", 0, 0} (the list's head
-- is not what the caller read: another step moved it; read again)
-- Publishes nothing: the tickets moved were `queued` with their place since admission; only
-- their stream entry is new, which no shopper sees.
local counters_key, stream_key, after_lobby_key = KEYS[1], KEYS[2], KEYS[3]
local FIRST_TICKET = 4
local state = redis.call('HMGET', counters_key, 'lobby_size', 'lobby_placed', 'lobby_done')
if state[3] == '1' then return {'moved', 0, 1} end
if tonumber(state[2] or '0') < tonumber(state[1] or '0') then return {'not_placed', 0, 0} end
local count = #KEYS - FIRST_TICKET + 1
if count > 0 then
  local head = redis.call('LRANGE', after_lobby_key, 0, count - 1)
  if #head < count then return {'changed', 0, 0} end
  for i = FIRST_TICKET, #KEYS do
    local ticket = redis.call('HMGET', KEYS[i], 'id', 'seq')
    if ticket[1] ~= head[i - FIRST_TICKET + 1] then return {'changed', 0, 0} end
  end
  for i = FIRST_TICKET, #KEYS do
    local ticket = redis.call('HMGET', KEYS[i], 'id', 'seq')
    redis.call('XADD', stream_key, '*', 'ticket_id', ticket[1], 'seq', ticket[2])
  end
  redis.call('LTRIM', after_lobby_key, count, -1)
end
if redis.call('LLEN', after_lobby_key) == 0 then
  redis.call('HSET', counters_key, 'lobby_done', 1)
  return {'moved', count, 1}
end
return {'moved', count, 0}
