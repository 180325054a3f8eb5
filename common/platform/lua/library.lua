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
