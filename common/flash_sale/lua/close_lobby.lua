-- The start of a sale with a lobby: close the lobby (frozen from now on) and keep places
-- 1..lobby_size for its tickets, once; safe to call again at any time.
-- Publishes nothing: no ticket changes here (lobby tickets stay `lobby` until place_lobby.lua
-- places them, and publishes them).
-- KEYS: 1 config, 2 counters
-- ARGV: none
-- Returns {"no_lobby"} | {"not_yet", ms until starts_at}
--       | {"closed", lobby_size, placed, done(0|1)}
local config_key, counters_key = KEYS[1], KEYS[2]
local config = redis.call('HMGET', config_key, 'starts_at_ms', 'lobby_opens_at_ms')
if not config[1] or not config[2] then return {'no_lobby'} end
local now = now_ms()
-- A lobby closed already stays closed, whatever this server's clock says (after a failover to a
-- replica whose clock is behind): its placing goes on.
if now < tonumber(config[1]) and not redis.call('HGET', counters_key, 'lobby_closed') then
  return {'not_yet', tonumber(config[1]) - now}
end
close_lobby(counters_key)
local state = redis.call('HMGET', counters_key, 'lobby_size', 'lobby_placed', 'lobby_done')
return {'closed', tonumber(state[1] or '0'), tonumber(state[2] or '0'), state[3] == '1' and 1 or 0}
