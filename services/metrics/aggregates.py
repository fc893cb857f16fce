"""The figures of ``GET /api/v1/metrics``, read from aggregates that ingest keeps up to date.

Aggregates are kept per scope: ``all`` for every event, and ``repository:<name>`` for the events
of one repository. A read touches a fixed number of hash fields (24 hours, the cycle-time days,
the models seen), so it costs the same however many events came before.
"""

from datetime import datetime, timedelta
from typing import Any

from redis.asyncio import Redis

from cocopilot import keys

ALL_SCOPE = "all"
THROUGHPUT_HOURS = 24
# Hour buckets are kept twice as long as the window shows, so a late event still finds its hour.
THROUGHPUT_KEPT_HOURS = 2 * THROUGHPUT_HOURS
MS_PER_HOUR = 3_600_000
# avgHours is rounded to 4 decimal places, which is 0.36 s.
AVERAGE_HOURS_DECIMALS = 4


def repository_scope(repo_name: str) -> str:
    return f"repository:{repo_name}"


def scopes_of(repo_name: str | None) -> list[str]:
    """Return the scopes that an event of ``repo_name`` counts in."""
    return [ALL_SCOPE] if repo_name is None else [ALL_SCOPE, repository_scope(repo_name)]


def hour_label(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:00")


def day_label(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d")


def last_hours(now: datetime, count: int = THROUGHPUT_HOURS) -> list[str]:
    """Return the labels of the ``count`` hours up to and including the hour of ``now``."""
    return [hour_label(now - timedelta(hours=back)) for back in range(count - 1, -1, -1)]


def last_days(now: datetime, count: int) -> list[str]:
    """Return the labels of the ``count`` days up to and including the day of ``now``."""
    return [day_label(now - timedelta(days=back)) for back in range(count - 1, -1, -1)]


def model_label(data: dict[str, Any]) -> str:
    """Name the model of a worker: its model, else its agent profile, else ``default``."""
    for field in ("model", "agent"):
        value = data.get(field)
        if isinstance(value, str) and value:
            return value
    return "default"


async def read_metrics(
    redis: Redis, repo_name: str | None, now: datetime, cycle_time_days: int
) -> dict[str, Any]:
    """Return the four figures for one repository, or for all when ``repo_name`` is None."""
    scope = ALL_SCOPE if repo_name is None else repository_scope(repo_name)
    hours = last_hours(now)
    days = last_days(now, cycle_time_days)
    cycle_fields = [f"{day}:{part}" for day in days for part in ("count", "ms")]

    # One MULTI block, so the figures come from one moment even while events arrive.
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hmget(keys.metrics_throughput(scope), hours)
        pipe.hmget(keys.metrics_pr_cycle(scope), cycle_fields)
        pipe.hmget(keys.metrics_ci_results(scope), ["pass", "fail"])
        pipe.hgetall(keys.metrics_tasks_by_model(scope))
        pipe.hgetall(keys.metrics_tokens_by_model(scope, "input"))
        pipe.hgetall(keys.metrics_tokens_by_model(scope, "output"))
        throughput, cycle, ci, tasks, input_tokens, output_tokens = await pipe.execute()

    return {
        "workerThroughput": throughput_entries(hours, throughput),
        "prCycleTime": cycle_time_entries(days, cycle),
        "ciSuccessRate": [
            {"status": "pass", "count": int(ci[0] or 0)},
            {"status": "fail", "count": int(ci[1] or 0)},
        ],
        "tokenUsage": token_usage_entries(tasks, input_tokens, output_tokens),
    }


def throughput_entries(hours: list[str], counts: list[str | None]) -> list[dict[str, Any]]:
    return [
        {"hour": hour, "count": int(count or 0)} for hour, count in zip(hours, counts, strict=True)
    ]


def cycle_time_entries(days: list[str], values: list[str | None]) -> list[dict[str, Any]]:
    """Return the days with at least one merge, oldest first, with their mean cycle in hours."""
    entries = []
    for index, day in enumerate(days):
        merges = int(values[2 * index] or 0)
        total_ms = int(values[2 * index + 1] or 0)
        if merges:
            average_hours = round(total_ms / merges / MS_PER_HOUR, AVERAGE_HOURS_DECIMALS)
            entries.append({"date": day, "avgHours": average_hours})
    return entries


def token_usage_entries(
    tasks: dict[str, str], input_tokens: dict[str, str], output_tokens: dict[str, str]
) -> list[dict[str, Any]]:
    """Return tasks per model, most first; ``tokenCounts`` only where workers reported tokens."""
    entries: list[dict[str, Any]] = []
    for model in sorted(set(tasks) | set(input_tokens) | set(output_tokens)):
        entry: dict[str, Any] = {"model": model, "tokens": int(tasks.get(model, 0))}
        if model in input_tokens or model in output_tokens:
            entry["tokenCounts"] = {
                "input": int(input_tokens.get(model, 0)),
                "output": int(output_tokens.get(model, 0)),
            }
        entries.append(entry)
    return sorted(entries, key=lambda entry: -entry["tokens"])


async def prune_aggregates(redis: Redis, now: datetime, cycle_time_days: int) -> int:
    """Delete hour and day buckets too old to be shown again; return how many were deleted."""
    oldest_hour = hour_label(now - timedelta(hours=THROUGHPUT_KEPT_HOURS))
    # Two days past the window, so a late merge still finds its day before the window moves on.
    oldest_day = day_label(now - timedelta(days=cycle_time_days + 2))
    deleted = 0
    for scope in sorted(str(member) for member in await redis.smembers(keys.METRICS_SCOPES)):
        deleted += await _delete_fields_before(redis, keys.metrics_throughput(scope), oldest_hour)
        deleted += await _delete_fields_before(redis, keys.metrics_pr_cycle(scope), oldest_day)
    return deleted


async def _delete_fields_before(redis: Redis, key: str, oldest: str) -> int:
    # Field names start with the hour or day label, which sorts as text in time order.
    fields = [str(field) for field in await redis.hkeys(key) if str(field) < oldest]
    if not fields:
        return 0
    deleted: int = await redis.hdel(key, *fields)
    return deleted
