"""The flash sale and its waiting room: sales and their stock in Redis, admission into the
sale's stream, tickets and their state machine, the decider that reserves stock in arrival
order, the sale's Redis keys and the Lua scripts that move them atomically."""
