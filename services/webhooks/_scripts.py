"""Lua scripts that change delivery state in one atomic step, so replicas can share the work.

Per webhook, a queue (sorted set: delivery id -> time of its next attempt) contains every
pending delivery. WEBHOOKS_READY contains, per webhook, the time at which it next has work: its
earliest queued delivery, or later while its breaker is open. A claim moves a due delivery's
queue time to the end of its lease and records the lease in the in-flight set; that lease time
is also the claim's token. A replica that dies mid-attempt leaves the delivery in the queue with
its lease time, so it comes due again when the lease ends. Completing checks the token, so a
replica whose lease ran out and was taken over by another cannot reschedule the delivery.

Key names come from templates with ``{id}`` in place of the webhook or delivery id. The scripts
build keys from them, which a single Redis server allows but Redis Cluster does not.
"""

# Shared by the scripts: key building and the recomputation of a webhook's ready time.
_HELPERS = """
local function key(template, id)
  local start, finish = string.find(template, '{id}', 1, true)
  return string.sub(template, 1, start - 1) .. id .. string.sub(template, finish + 1)
end

local function int(number)
  return string.format('%d', number)
end

local function refresh_ready(webhooks, disabled, ready, queue, breaker, webhook_id)
  if redis.call('HEXISTS', webhooks, webhook_id) == 0
      or redis.call('HEXISTS', disabled, webhook_id) == 1 then
    redis.call('ZREM', ready, webhook_id)
    return
  end
  local first = redis.call('ZRANGE', queue, 0, 0, 'WITHSCORES')
  if #first == 0 then
    redis.call('ZREM', ready, webhook_id)
    return
  end
  local due = tonumber(first[2])
  local open_until = tonumber(redis.call('HGET', breaker, 'openUntil') or '0')
  if open_until > due then
    due = open_until
  end
  redis.call('ZADD', ready, int(due), webhook_id)
end
"""

# KEYS: webhooks, disabled, ready.
# ARGV: now_ms, retention_s, index_max, then the templates of the delivery, queue, breaker and
# index keys, then groups of 8: webhook_id, delivery_id, event_id, event_type, body,
# created_ms, due_ms, max_attempts.
# Creates each delivery that does not exist yet, for a webhook that exists and is enabled.
# Returns how many it created.
SCHEDULE = (
    _HELPERS
    + """
local webhooks, disabled, ready = KEYS[1], KEYS[2], KEYS[3]
local now, retention_s, index_max = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local delivery_t, queue_t, breaker_t, index_t = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local created = 0
for i = 8, #ARGV, 8 do
  local webhook_id, delivery_id = ARGV[i], ARGV[i + 1]
  local record = key(delivery_t, delivery_id)
  if redis.call('HEXISTS', webhooks, webhook_id) == 1
      and redis.call('HEXISTS', disabled, webhook_id) == 0
      and redis.call('EXISTS', record) == 0 then
    local due = ARGV[i + 6]
    redis.call('HSET', record, 'id', delivery_id, 'webhookId', webhook_id,
      'eventId', ARGV[i + 2], 'eventType', ARGV[i + 3], 'body', ARGV[i + 4],
      'createdAt', ARGV[i + 5], 'status', 'pending', 'attemptCount', 0,
      'maxAttempts', ARGV[i + 7], 'nextAttemptAt', due, 'updatedAt', ARGV[1])
    redis.call('EXPIRE', record, retention_s)
    local queue = key(queue_t, webhook_id)
    redis.call('ZADD', queue, due, delivery_id)
    local index = key(index_t, webhook_id)
    redis.call('ZADD', index, ARGV[i + 5], delivery_id)
    redis.call('ZREMRANGEBYSCORE', index, '-inf', int(now - retention_s * 1000))
    redis.call('ZREMRANGEBYRANK', index, 0, -index_max - 1)
    refresh_ready(webhooks, disabled, ready, queue, key(breaker_t, webhook_id), webhook_id)
    created = created + 1
  end
end
return created
"""
)

# KEYS: webhooks, disabled, ready, queue, in_flight, breaker.
# ARGV: webhook_id, now_ms, endpoint_limit, max_claims, lease_ms, breaker_failures,
# delivery template.
# Returns {} when nothing can be claimed, else the registration JSON followed by groups of 5:
# delivery_id, body, attempt number (this attempt's, counted from 1), max_attempts, event_type.
CLAIM = (
    _HELPERS
    + """
local webhooks, disabled, ready, queue, in_flight, breaker =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local webhook_id, now = ARGV[1], tonumber(ARGV[2])
local endpoint_limit, max_claims = tonumber(ARGV[3]), tonumber(ARGV[4])
local lease_ms, breaker_failures, delivery_t = tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7]

local registration = redis.call('HGET', webhooks, webhook_id)
if not registration then
  redis.call('DEL', queue, in_flight, breaker)
  redis.call('ZREM', ready, webhook_id)
  return {}
end
if redis.call('HEXISTS', disabled, webhook_id) == 1 then
  redis.call('ZREM', ready, webhook_id)
  return {}
end

redis.call('ZREMRANGEBYSCORE', in_flight, '-inf', ARGV[2])
local open_until = tonumber(redis.call('HGET', breaker, 'openUntil') or '0')
if open_until > now then
  redis.call('ZADD', ready, int(open_until), webhook_id)
  return {}
end
local limit = endpoint_limit
if tonumber(redis.call('HGET', breaker, 'failures') or '0') >= breaker_failures then
  -- Half open: one probe at a time until an attempt succeeds.
  limit = 1
end
local free = limit - redis.call('ZCARD', in_flight)
if free <= 0 then
  -- Park the webhook until its first lease ends; a completed attempt wakes it sooner.
  local first = redis.call('ZRANGE', in_flight, 0, 0, 'WITHSCORES')
  redis.call('ZADD', ready, first[2], webhook_id)
  return {}
end
if free > max_claims then
  free = max_claims
end

local due = redis.call('ZRANGEBYSCORE', queue, '-inf', ARGV[2], 'LIMIT', 0, free)
local lease_until = int(now + lease_ms)
local claimed = {registration}
for _, delivery_id in ipairs(due) do
  local record = key(delivery_t, delivery_id)
  local fields = redis.call('HMGET', record, 'body', 'maxAttempts', 'eventType')
  if not fields[1] then
    -- The record expired with the retention time.
    redis.call('ZREM', queue, delivery_id)
  else
    redis.call('ZADD', queue, lease_until, delivery_id)
    redis.call('ZADD', in_flight, lease_until, delivery_id)
    local attempt = redis.call('HINCRBY', record, 'attemptCount', 1)
    table.insert(claimed, delivery_id)
    table.insert(claimed, fields[1])
    table.insert(claimed, attempt)
    table.insert(claimed, fields[2])
    table.insert(claimed, fields[3])
  end
end
refresh_ready(webhooks, disabled, ready, queue, breaker, webhook_id)
return claimed
"""
)

# KEYS: webhooks, disabled, ready, queue, in_flight, breaker, record, attempts, outcomes.
# ARGV: webhook_id, delivery_id, lease_until (the claim's token), now_ms, attempt JSON,
# outcome ("success", "failure" or "gone"), next_due_ms ("" when no attempt follows),
# final status, retention_s, attempts_kept, breaker_failures, pause_ms, pause_max_ms,
# hold_until_ms (from Retry-After, or 0), disabled JSON.
# Records the attempt, then, if the claim is still this caller's, schedules what follows.
# Returns {owned (0 or 1), the time the breaker opened until (0 if it did not open)}.
COMPLETE = (
    _HELPERS
    + """
local webhooks, disabled, ready, queue, in_flight, breaker, record, attempts, outcomes =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local webhook_id, delivery_id, lease_until, now = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local outcome, next_due, final_status = ARGV[6], ARGV[7], ARGV[8]
local retention_s, attempts_kept = ARGV[9], tonumber(ARGV[10])
local breaker_failures, pause_ms, pause_max_ms =
  tonumber(ARGV[11]), tonumber(ARGV[12]), tonumber(ARGV[13])
local hold_until = tonumber(ARGV[14])

if redis.call('EXISTS', record) == 0 then
  redis.call('ZREM', queue, delivery_id)
  redis.call('ZREM', in_flight, delivery_id)
  return {0, 0}
end
redis.call('RPUSH', attempts, ARGV[5])
redis.call('LTRIM', attempts, -attempts_kept, -1)
redis.call('EXPIRE', attempts, retention_s)
redis.call('EXPIRE', record, retention_s)
redis.call('HSET', record, 'updatedAt', ARGV[4])

local score = redis.call('ZSCORE', queue, delivery_id)
if not score or tonumber(score) ~= tonumber(lease_until) then
  -- The lease ran out and another claim took over, or the webhook was deleted.
  return {0, 0}
end
redis.call('ZREM', in_flight, delivery_id)
if next_due ~= '' then
  redis.call('ZADD', queue, next_due, delivery_id)
  redis.call('HSET', record, 'status', 'pending', 'nextAttemptAt', next_due)
  redis.call('HINCRBY', outcomes, 'retried', 1)
else
  redis.call('ZREM', queue, delivery_id)
  redis.call('HSET', record, 'status', final_status, 'nextAttemptAt', '')
  redis.call('HINCRBY', outcomes, final_status, 1)
end

local opened = 0
if outcome == 'success' then
  redis.call('DEL', breaker)
else
  local failures = redis.call('HINCRBY', breaker, 'failures', 1)
  local open_until = tonumber(redis.call('HGET', breaker, 'openUntil') or '0')
  if failures >= breaker_failures then
    local openings = redis.call('HINCRBY', breaker, 'openings', 1)
    local pause = math.min(pause_ms * 2 ^ (openings - 1), pause_max_ms)
    opened = now + pause
    open_until = math.max(open_until, opened)
  end
  open_until = math.max(open_until, hold_until)
  redis.call('HSET', breaker, 'openUntil', int(open_until))
  if outcome == 'gone' then
    redis.call('HSET', disabled, webhook_id, ARGV[15])
  end
end
refresh_ready(webhooks, disabled, ready, queue, breaker, webhook_id)
return {1, int(opened)}
"""
)

# KEYS: webhooks, disabled, ready, queue, in_flight, breaker, record.
# ARGV: webhook_id, delivery_id, now_ms.
# Queues one more attempt of a delivery now. An open breaker turns half open, so the attempt
# goes out as its probe. Returns 0 when the delivery is unknown, -1 when the webhook is
# disabled, 1 when queued, 2 when an attempt is already in flight.
REDELIVER = (
    _HELPERS
    + """
local webhooks, disabled, ready, queue, in_flight, breaker, record =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local webhook_id, delivery_id, now = ARGV[1], ARGV[2], tonumber(ARGV[3])

if redis.call('HEXISTS', webhooks, webhook_id) == 0
    or redis.call('HGET', record, 'webhookId') ~= webhook_id then
  return 0
end
if redis.call('HEXISTS', disabled, webhook_id) == 1 then
  return -1
end
local lease = redis.call('ZSCORE', in_flight, delivery_id)
if lease and tonumber(lease) > now then
  return 2
end
local fields = redis.call('HMGET', record, 'status', 'attemptCount', 'maxAttempts')
local max_attempts = tonumber(fields[3])
if fields[1] ~= 'pending' or max_attempts <= tonumber(fields[2]) then
  max_attempts = tonumber(fields[2]) + 1
end
redis.call('HSET', record, 'status', 'pending', 'maxAttempts', int(max_attempts),
  'nextAttemptAt', ARGV[3], 'updatedAt', ARGV[3])
redis.call('ZADD', queue, ARGV[3], delivery_id)
if tonumber(redis.call('HGET', breaker, 'openUntil') or '0') > now then
  redis.call('HSET', breaker, 'openUntil', ARGV[3])
end
refresh_ready(webhooks, disabled, ready, queue, breaker, webhook_id)
return 1
"""
)

# KEYS: webhooks, disabled, ready, queue, breaker.
# ARGV: webhook_id.
# Enables a webhook again, closes its breaker and resumes its queued deliveries.
# Returns 0 when the webhook is unknown, else 1.
ENABLE = (
    _HELPERS
    + """
local webhooks, disabled, ready, queue, breaker = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local webhook_id = ARGV[1]
if redis.call('HEXISTS', webhooks, webhook_id) == 0 then
  return 0
end
redis.call('HDEL', disabled, webhook_id)
redis.call('DEL', breaker)
refresh_ready(webhooks, disabled, ready, queue, breaker, webhook_id)
return 1
"""
)
