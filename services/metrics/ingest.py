"""Ingest: turn each event into increments of the aggregates and an activity log entry.

All writes for one event run in one Lua script together with the mark that the event was
processed. So an event delivered twice (after a crash, before its ack) changes nothing the second
time, and a crash never leaves half of an event counted.
"""

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from redis.asyncio import Redis

from cocopilot import keys
from cocopilot.events import Event, EventType
from cocopilot.timeutil import parse_time
from services.metrics.activity import entry_of, index_keys, time_ms
from services.metrics.aggregates import hour_label, model_label, scopes_of

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

CONSUMER = "metrics"
# Processed-event marks and unpaired pull-request halves are kept one day longer than the events
# stream keeps an event (30 days, see cocopilot.bus.ensure_events_stream), which bounds how late
# a redelivery or the other half of a pull request can come.
STATE_TTL_S = 31 * 24 * 3600

# KEYS[1]: the event's processed mark. ARGV[1]: TTL of marks and pull-request state, in seconds.
# ARGV[2]: JSON list of operations; their key arguments are indexes into KEYS.
# Operation names are checked before the first write, because Redis does not roll back the writes
# of a script that fails halfway.
APPLY_SCRIPT = """
local ops = cjson.decode(ARGV[2])
local known = {hincrby = true, hset = true, zadd = true, sadd = true, pair = true}
for _, op in ipairs(ops) do
  if not known[op[1]] then
    return redis.error_reply('unknown operation ' .. tostring(op[1]))
  end
end
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  return 0
end

-- Record one half (created or merged) of a pull request; the second half to arrive, whichever it
-- is, adds the cycle time to the merge day of every scope. The first report of a half wins.
local function pair(op)
  local key, half, at_ms = KEYS[op[2]], op[3], op[4]
  if redis.call('HSETNX', key, half, at_ms) == 0 then
    return
  end
  if half == 'merged' then
    redis.call('HSET', key, 'day', op[5])
  end
  redis.call('EXPIRE', key, ARGV[1])
  local created = redis.call('HGET', key, 'created')
  local merged = redis.call('HGET', key, 'merged')
  if not created or not merged then
    return
  end
  local day = redis.call('HGET', key, 'day')
  -- Clocks of different machines can put a merge before its creation; count that as zero.
  local duration_ms = string.format('%.0f', math.max(0, tonumber(merged) - tonumber(created)))
  for i = 6, #op do
    redis.call('HINCRBY', KEYS[op[i]], day .. ':count', 1)
    redis.call('HINCRBY', KEYS[op[i]], day .. ':ms', duration_ms)
  end
end

for _, op in ipairs(ops) do
  local name = op[1]
  if name == 'hincrby' then
    redis.call('HINCRBY', KEYS[op[2]], op[3], op[4])
  elseif name == 'hset' then
    redis.call('HSET', KEYS[op[2]], op[3], op[4])
  elseif name == 'zadd' then
    redis.call('ZADD', KEYS[op[2]], op[3], op[4])
  elseif name == 'sadd' then
    redis.call('SADD', KEYS[op[2]], op[3])
  else
    pair(op)
  end
end
return 1
"""


class WritePlan:
    """The writes of one event, as KEYS and operations for APPLY_SCRIPT.

    Numbers travel as strings, because Lua numbers lose digits when Redis turns them into text.
    """

    def __init__(self, processed_key: str) -> None:
        self.keys = [processed_key]
        self.ops: list[list[Any]] = []
        self._key_numbers = {processed_key: 1}

    def _key_number(self, key: str) -> int:
        if key not in self._key_numbers:
            self.keys.append(key)
            self._key_numbers[key] = len(self.keys)  # Lua's KEYS counts from 1
        return self._key_numbers[key]

    def script_args(self) -> list[str]:
        return [str(STATE_TTL_S), json.dumps(self.ops)]

    def hincrby(self, key: str, field: str, amount: int = 1) -> None:
        self.ops.append(["hincrby", self._key_number(key), field, str(amount)])

    def hset(self, key: str, field: str, value: str) -> None:
        self.ops.append(["hset", self._key_number(key), field, value])

    def zadd(self, key: str, score: int, member: str) -> None:
        self.ops.append(["zadd", self._key_number(key), str(score), member])

    def sadd(self, key: str, member: str) -> None:
        self.ops.append(["sadd", self._key_number(key), member])

    def pair_pull_request(self, key: str, half: str, at: datetime, cycle_keys: list[str]) -> None:
        cycle_numbers = [self._key_number(cycle_key) for cycle_key in cycle_keys]
        day = at.strftime("%Y-%m-%d")
        self.ops.append(
            ["pair", self._key_number(key), half, str(time_ms(at)), day, *cycle_numbers]
        )


def parse_utc(value: Any) -> datetime | None:
    """Return an ISO 8601 time in UTC, reading one without an offset as UTC; else None."""
    if not isinstance(value, str):
        return None
    try:
        moment = parse_time(value)
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# Adds the aggregate writes of one event type to a plan.
_Counter = Callable[[WritePlan, Event, datetime, list[str]], None]


def build_plan(event: Event, moment: datetime, with_activity: bool) -> WritePlan:
    plan = WritePlan(keys.processed_event(CONSUMER, event.id))
    scopes = scopes_of(event.repo_name)
    plan.hincrby(keys.METRICS_EVENT_COUNTS, str(event.type))
    for scope in scopes:
        plan.sadd(keys.METRICS_SCOPES, scope)
    counter = _COUNTERS.get(event.type)
    if counter is not None:
        counter(plan, event, moment, scopes)
    if with_activity:
        add_activity_entry(plan, event, moment)
    return plan


def add_activity_entry(plan: WritePlan, event: Event, moment: datetime) -> None:
    entry = entry_of(event, moment)
    plan.hset(keys.ACTIVITY_ENTRIES, event.id, json.dumps(entry, separators=(",", ":")))
    for key in index_keys(entry):
        plan.zadd(key, time_ms(moment), event.id)


def _count_task(plan: WritePlan, event: Event, moment: datetime, scopes: list[str]) -> None:
    for scope in scopes:
        plan.hincrby(keys.metrics_tasks_by_model(scope), model_label(event.data))


def _count_completion(plan: WritePlan, event: Event, moment: datetime, scopes: list[str]) -> None:
    for scope in scopes:
        plan.hincrby(keys.metrics_throughput(scope), hour_label(moment))
    _count_tokens(plan, event, moment, scopes)


def _count_tokens(plan: WritePlan, event: Event, moment: datetime, scopes: list[str]) -> None:
    """Add the token counts that a finished worker reports in ``data.tokenCounts``, if any."""
    counts = event.data.get("tokenCounts")
    if not isinstance(counts, dict):
        return
    model = model_label(event.data)
    for direction in ("input", "output"):
        amount = counts.get(direction, 0)
        if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
            log.warning(
                "ignoring invalid token count",
                extra={"event_id": event.id, "direction": direction, "value": repr(amount)},
            )
            continue
        for scope in scopes:
            plan.hincrby(keys.metrics_tokens_by_model(scope, direction), model, amount)


def _count_ci_result(result: str) -> _Counter:
    def count(plan: WritePlan, event: Event, moment: datetime, scopes: list[str]) -> None:
        for scope in scopes:
            plan.hincrby(keys.metrics_ci_results(scope), result)

    return count


def _pair_pull_request(half: str, time_field: str) -> _Counter:
    """Count a pull request half, timed by ``data[time_field]`` or else by the event time."""

    def pair(plan: WritePlan, event: Event, moment: datetime, scopes: list[str]) -> None:
        number = event.data.get("number")
        if event.repo_name is None or isinstance(number, bool) or not isinstance(number, int):
            log.warning(
                "pull request event without repoName or number",
                extra={"event_id": event.id, "event_type": str(event.type)},
            )
            return
        at = parse_utc(event.data.get(time_field)) or moment
        cycle_keys = [keys.metrics_pr_cycle(scope) for scope in scopes]
        plan.pair_pull_request(
            keys.metrics_pull_request(event.repo_name, number), half, at, cycle_keys
        )

    return pair


_COUNTERS: dict[str, _Counter] = {
    EventType.WORKER_CREATED: _count_task,
    EventType.WORKER_COMPLETED: _count_completion,
    EventType.WORKER_FAILED: _count_tokens,
    EventType.CI_PASSED: _count_ci_result("pass"),
    EventType.CI_FAILED: _count_ci_result("fail"),
    EventType.PR_CREATED: _pair_pull_request("created", "createdAt"),
    EventType.PR_MERGED: _pair_pull_request("merged", "mergedAt"),
}


class Ingestor:
    """Applies events to Redis; ``clock`` decides which events are too old for the log."""

    def __init__(self, redis: Redis, clock: Clock, activity_retention: timedelta) -> None:
        self.redis = redis
        self.clock = clock
        self.activity_retention = activity_retention
        self._script = redis.register_script(APPLY_SCRIPT)

    def plan(self, event: Event) -> WritePlan | None:
        """Return the writes of ``event``, or None when its time is invalid."""
        moment = parse_utc(event.time)
        if moment is None:
            log.warning(
                "skipping event with an invalid time",
                extra={"event_id": event.id, "event_type": str(event.type), "time": event.time},
            )
            return None
        with_activity = moment >= self.clock() - self.activity_retention
        return build_plan(event, moment, with_activity)

    async def ingest(self, event: Event) -> bool:
        """Apply ``event``; return False when it was processed before or is skipped."""
        plan = self.plan(event)
        if plan is None:
            return False
        applied = await self._script(keys=plan.keys, args=plan.script_args())
        return bool(applied)

    async def ingest_many(self, events: list[Event]) -> list[BaseException | None]:
        """Apply ``events`` in order in one round trip; return each one's error or None."""
        plans = [self.plan(event) for event in events]
        async with self.redis.pipeline(transaction=False) as pipe:
            for plan in plans:
                if plan is not None:
                    await self._script(keys=plan.keys, args=plan.script_args(), client=pipe)
            results = iter(await pipe.execute(raise_on_error=False))
        errors: list[BaseException | None] = []
        for plan in plans:
            result = next(results) if plan is not None else None
            errors.append(result if isinstance(result, BaseException) else None)
        return errors
