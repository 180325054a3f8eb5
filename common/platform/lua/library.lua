-- Put in front of every script by common/platform/lua_scripts.py: the snippets several
-- scripts share, written once.

-- The server's clock in milliseconds (scripts never take the time from their caller).
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Forget a shopper's live ticket for the sale, if it is still this one (a newer ticket of
-- theirs stays).
local function unlink_live_ticket(live_key, user_id, ticket_id)
  if redis.call('HGET', live_key, user_id) == ticket_id then redis.call('HDEL', live_key, user_id) end
end

-- Tell the API processes following a sale's tickets what changed, in one message per batch or
-- change on the sale's channel `{sale:<id>}:events` (derived from any key of the sale; a
-- channel is not a key): "<served> <served_at_ms> <rate> <ticket_id>..." where the first three
-- are "-" when the served counter did not move. Read by common/flash_sale/ticket_events.py.
local function publish_ticket_events(sale_key, head, ticket_ids)
  local tag = string.match(sale_key, '^{sale:[^}]*}')
  if not tag then return end
  local body = head
  if #ticket_ids > 0 then body = body .. ' ' .. table.concat(ticket_ids, ' ') end
  redis.call('PUBLISH', tag .. ':events', body)
end

-- Close a sale's lobby at its start, once (the waiting room's lobby, flash_sale/lobby.py):
-- places 1..lobby_size are kept for the lobby's tickets (`issued` and `units_issued` jump past
-- them), so every ticket admitted from now on queues behind the lobby. An empty lobby is
-- placed at once. Idempotent and O(1); called by admit.lua and close_lobby.lua.
local function close_lobby(counters_key)
  if redis.call('HSETNX', counters_key, 'lobby_closed', 1) == 0 then return end
  -- The moment the entries froze: a beacon draw's round must come after it (lobby.py).
  redis.call('HSET', counters_key, 'lobby_closed_at_ms', now_ms())
  local lobby = redis.call('HMGET', counters_key, 'lobby_size', 'lobby_units')
  local size = tonumber(lobby[1] or '0')
  redis.call('HINCRBY', counters_key, 'issued', size)
  redis.call('HINCRBY', counters_key, 'units_issued', tonumber(lobby[2] or '0'))
  if size == 0 then redis.call('HSET', counters_key, 'lobby_done', 1) end
end

-- The ticket id at the end of a ticket's key `{sale:<id>}:t:<ticket_id>`.
local function ticket_id_of(ticket_key)
  return string.match(ticket_key, ':t:(.+)$') or ticket_key
end
