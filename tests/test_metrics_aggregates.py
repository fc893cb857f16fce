"""The figures of GET /api/v1/metrics, from synthetic events on a fixed clock (real Redis)."""

import random
from datetime import timedelta
from typing import Any

from redis.asyncio import Redis

from cocopilot import keys
from cocopilot.events import EventType
from services.metrics.aggregates import prune_aggregates, read_metrics
from services.metrics.ingest import Ingestor
from tests.metrics_events import (
    FixedClock,
    at,
    ci_result,
    completed,
    created,
    event,
    pr_created,
    pr_merged,
)

CYCLE_DAYS = 30
RETENTION = timedelta(days=30)


def ingestor(redis: Redis, clock: FixedClock) -> Ingestor:
    return Ingestor(redis, clock, RETENTION)


async def figures(redis: Redis, clock: FixedClock, repo_name: str | None = None) -> dict[str, Any]:
    return await read_metrics(redis, repo_name, clock(), CYCLE_DAYS)


def counts_by_hour(result: dict[str, Any]) -> dict[str, int]:
    return {entry["hour"]: entry["count"] for entry in result["workerThroughput"] if entry["count"]}


async def test_throughput_is_24_zero_filled_hours(redis: Redis) -> None:
    clock = FixedClock(at("2026-01-28T12:30:00"))

    throughput = (await figures(redis, clock))["workerThroughput"]

    assert len(throughput) == 24
    assert throughput[0] == {"hour": "2026-01-27T13:00", "count": 0}
    assert throughput[-1] == {"hour": "2026-01-28T12:00", "count": 0}
    assert [entry["hour"] for entry in throughput] == sorted(entry["hour"] for entry in throughput)


async def test_throughput_splits_at_hour_boundary(redis: Redis) -> None:
    clock = FixedClock(at("2026-01-28T12:30:00"))
    apply = ingestor(redis, clock)

    await apply.ingest(completed("Twix", at("2026-01-28T11:59:59.999")))
    await apply.ingest(completed("KitKat", at("2026-01-28T12:00:00.000")))
    await apply.ingest(completed("Mars", at("2026-01-28T12:29:00.000")))

    assert counts_by_hour(await figures(redis, clock)) == {
        "2026-01-28T11:00": 1,
        "2026-01-28T12:00": 2,
    }


async def test_throughput_window_edge(redis: Redis) -> None:
    clock = FixedClock(at("2026-01-28T12:30:00"))
    apply = ingestor(redis, clock)

    # The window starts at 13:00 the day before: the hour 24 hours back is already out.
    await apply.ingest(completed("Twix", at("2026-01-27T12:59:59.999")))
    await apply.ingest(completed("KitKat", at("2026-01-27T13:00:00.000")))

    throughput = (await figures(redis, clock))["workerThroughput"]
    assert throughput[0] == {"hour": "2026-01-27T13:00", "count": 1}
    assert sum(entry["count"] for entry in throughput) == 1


async def test_throughput_window_moves_with_clock(redis: Redis) -> None:
    clock = FixedClock(at("2026-01-28T12:30:00"))
    apply = ingestor(redis, clock)
    await apply.ingest(completed("Twix", at("2026-01-27T13:10:00")))
    await apply.ingest(completed("KitKat", at("2026-01-28T12:10:00")))

    clock.advance(hours=1)
    throughput = (await figures(redis, clock))["workerThroughput"]

    assert throughput[0]["hour"] == "2026-01-27T14:00"
    assert throughput[-1] == {"hour": "2026-01-28T13:00", "count": 0}
    assert counts_by_hour(await figures(redis, clock)) == {"2026-01-28T12:00": 1}


async def test_throughput_across_day_boundary(redis: Redis) -> None:
    clock = FixedClock(at("2026-01-28T00:05:00"))
    apply = ingestor(redis, clock)

    await apply.ingest(completed("Twix", at("2026-01-27T23:59:59.999")))
    await apply.ingest(completed("KitKat", at("2026-01-28T00:00:00.000")))

    throughput = (await figures(redis, clock))["workerThroughput"]
    assert throughput[0]["hour"] == "2026-01-27T01:00"
    assert throughput[-2] == {"hour": "2026-01-27T23:00", "count": 1}
    assert throughput[-1] == {"hour": "2026-01-28T00:00", "count": 1}


async def test_throughput_counts_only_completions(redis: Redis) -> None:
    clock = FixedClock(at("2026-01-28T12:30:00"))
    apply = ingestor(redis, clock)
    moment = at("2026-01-28T12:00:00")

    await apply.ingest(created("Twix", moment))
    await apply.ingest(event(EventType.WORKER_FAILED, moment, name="KitKat", error="exit 1"))
    await apply.ingest(completed("Mars", moment))

    assert counts_by_hour(await figures(redis, clock)) == {"2026-01-28T12:00": 1}


async def test_cycle_time_averages_per_merge_day(redis: Redis) -> None:
    clock = FixedClock(at("2026-01-29T12:00:00"))
    apply = ingestor(redis, clock)
    opened = at("2026-01-28T08:00:00")
    await apply.ingest(pr_created("Twix", 1, opened))
    await apply.ingest(pr_created("KitKat", 2, opened))
    await apply.ingest(pr_created("Mars", 3, opened))
    # 1 h and 2 h on the 28th; 16 h on the 29th, merged at the first millisecond of the day.
    await apply.ingest(pr_merged("Twix", 1, opened, at("2026-01-28T09:00:00")))
    await apply.ingest(pr_merged("KitKat", 2, opened, at("2026-01-28T10:00:00")))
    await apply.ingest(pr_merged("Mars", 3, opened, at("2026-01-29T00:00:00")))

    assert (await figures(redis, clock))["prCycleTime"] == [
        {"date": "2026-01-28", "avgHours": 1.5},
        {"date": "2026-01-29", "avgHours": 16.0},
    ]


async def test_cycle_time_day_is_merge_day(redis: Redis) -> None:
    clock = FixedClock(at("2026-01-29T12:00:00"))
    apply = ingestor(redis, clock)
    opened = at("2026-01-28T23:30:00")

    await apply.ingest(pr_created("Twix", 1, opened))
    await apply.ingest(pr_merged("Twix", 1, opened, at("2026-01-29T00:15:00")))

    assert (await figures(redis, clock))["prCycleTime"] == [
        {"date": "2026-01-29", "avgHours": 0.75}
    ]


async def test_cycle_time_rounds_to_four_decimals(redis: Redis) -> None:
    clock = FixedClock(at("2026-01-28T12:00:00"))
    apply = ingestor(redis, clock)
    opened = at("2026-01-28T10:00:00")

    await apply.ingest(pr_created("Twix", 1, opened))
    await apply.ingest(pr_merged("Twix", 1, opened, at("2026-01-28T10:00:01.000")))

    # 1 s is 0.000277… h.
    assert (await figures(redis, clock))["prCycleTime"] == [
        {"date": "2026-01-28", "avgHours": 0.0003}
    ]


async def test_cycle_time_pairs_merge_before_creation(redis: Redis) -> None:
    clock = FixedClock(at("2026-01-28T12:00:00"))
    apply = ingestor(redis, clock)
    opened = at("2026-01-28T06:00:00")

    await apply.ingest(pr_merged("Twix", 7, opened, at("2026-01-28T09:00:00")))
    assert (await figures(redis, clock))["prCycleTime"] == []

    await apply.ingest(pr_created("Twix", 7, opened))
    assert (await figures(redis, clock))["prCycleTime"] == [{"date": "2026-01-28", "avgHours": 3.0}]


async def test_cycle_time_pairs_by_repository_and_number(redis: Redis) -> None:
    clock = FixedClock(at("2026-01-28T12:00:00"))
    apply = ingestor(redis, clock)
    await apply.ingest(pr_created("Twix", 1, at("2026-01-28T08:00:00"), repo_name="app"))
    await apply.ingest(pr_created("KitKat", 1, at("2026-01-28T10:00:00"), repo_name="api"))

    merged_at = at("2026-01-28T11:00:00")
    await apply.ingest(pr_merged("Twix", 1, at("2026-01-28T08:00:00"), merged_at, "app"))
    await apply.ingest(pr_merged("KitKat", 1, at("2026-01-28T10:00:00"), merged_at, "api"))

    result = await figures(redis, clock)
    assert result["prCycleTime"] == [{"date": "2026-01-28", "avgHours": 2.0}]
    app_result = await figures(redis, clock, "app")
    assert app_result["prCycleTime"] == [{"date": "2026-01-28", "avgHours": 3.0}]
    api_result = await figures(redis, clock, "api")
    assert api_result["prCycleTime"] == [{"date": "2026-01-28", "avgHours": 1.0}]


async def test_cycle_time_uses_created_event_time(redis: Redis) -> None:
    clock = FixedClock(at("2026-01-28T12:00:00"))
    apply = ingestor(redis, clock)

    # The pr.created event counts from its own createdAt, whatever the merge event repeats.
    await apply.ingest(pr_created("Twix", 1, at("2026-01-28T08:00:00")))
    await apply.ingest(pr_merged("Twix", 1, at("2026-01-28T01:00:00"), at("2026-01-28T10:00:00")))

    assert (await figures(redis, clock))["prCycleTime"] == [{"date": "2026-01-28", "avgHours": 2.0}]


async def test_cycle_time_skips_unpaired_halves(redis: Redis) -> None:
    clock = FixedClock(at("2026-01-28T12:00:00"))
    apply = ingestor(redis, clock)

    await apply.ingest(pr_created("Twix", 1, at("2026-01-28T08:00:00")))
    await apply.ingest(pr_merged("KitKat", 2, at("2026-01-28T08:00:00"), at("2026-01-28T09:00:00")))

    assert (await figures(redis, clock))["prCycleTime"] == []


async def test_cycle_time_window_is_configured_days(redis: Redis) -> None:
    clock = FixedClock(at("2026-01-31T12:00:00"))
    apply = ingestor(redis, clock)
    for number, day in enumerate(["2026-01-01", "2026-01-02", "2026-01-31"], start=1):
        opened = at(f"{day}T08:00:00")
        await apply.ingest(pr_created("Twix", number, opened))
        await apply.ingest(pr_merged("Twix", number, opened, at(f"{day}T09:00:00")))

    result = await figures(redis, clock)

    # 30 days up to and including the 31st start on the 2nd.
    assert [entry["date"] for entry in result["prCycleTime"]] == ["2026-01-02", "2026-01-31"]


async def test_ci_success_rate_counts_results(redis: Redis) -> None:
    clock = FixedClock(at("2026-01-28T12:00:00"))
    apply = ingestor(redis, clock)
    moment = at("2026-01-20T12:00:00")  # outside every window: CI counts are totals
    for passed in (True, True, True, False, True, False):
        await apply.ingest(ci_result(passed, "Twix", 1, moment))

    assert (await figures(redis, clock))["ciSuccessRate"] == [
        {"status": "pass", "count": 4},
        {"status": "fail", "count": 2},
    ]


async def test_ci_success_rate_starts_at_zero(redis: Redis) -> None:
    clock = FixedClock(at("2026-01-28T12:00:00"))

    assert (await figures(redis, clock))["ciSuccessRate"] == [
        {"status": "pass", "count": 0},
        {"status": "fail", "count": 0},
    ]


async def test_token_usage_counts_tasks_per_model(redis: Redis) -> None:
    clock = FixedClock(at("2026-01-28T12:00:00"))
    apply = ingestor(redis, clock)
    moment = at("2026-01-28T11:00:00")
    await apply.ingest(created("Twix", moment, model="claude-sonnet-4-5"))
    await apply.ingest(created("KitKat", moment, model="claude-sonnet-4-5"))
    await apply.ingest(created("Mars", moment, model="gpt-5"))
    await apply.ingest(created("Bounty", moment))  # no model: the agent profile, "demo"
    await apply.ingest(created("Snickers", moment, agent=None))  # neither: "default"
    await apply.ingest(completed("Twix", moment, model="claude-sonnet-4-5"))

    assert (await figures(redis, clock))["tokenUsage"] == [
        {"model": "claude-sonnet-4-5", "tokens": 2},
        {"model": "default", "tokens": 1},
        {"model": "demo", "tokens": 1},
        {"model": "gpt-5", "tokens": 1},
    ]


async def test_token_usage_adds_reported_token_counts(redis: Redis) -> None:
    clock = FixedClock(at("2026-01-28T12:00:00"))
    apply = ingestor(redis, clock)
    moment = at("2026-01-28T11:00:00")
    await apply.ingest(created("Twix", moment, model="gpt-5"))
    await apply.ingest(created("KitKat", moment, model="gpt-5"))
    await apply.ingest(created("Mars", moment, model="o3"))
    tokens = {"input": 1200, "output": 300}
    await apply.ingest(completed("Twix", moment, model="gpt-5", tokenCounts=tokens))
    failed_tokens = {"input": 50, "output": 7}
    failed = event(
        EventType.WORKER_FAILED, moment, name="KitKat", model="gpt-5", tokenCounts=failed_tokens
    )
    await apply.ingest(failed)

    assert (await figures(redis, clock))["tokenUsage"] == [
        {"model": "gpt-5", "tokens": 2, "tokenCounts": {"input": 1250, "output": 307}},
        {"model": "o3", "tokens": 1},
    ]


async def test_token_usage_ignores_invalid_token_counts(redis: Redis) -> None:
    clock = FixedClock(at("2026-01-28T12:00:00"))
    apply = ingestor(redis, clock)
    moment = at("2026-01-28T11:00:00")
    await apply.ingest(created("Twix", moment, model="gpt-5"))
    bad = {"input": -5, "output": "many"}
    await apply.ingest(completed("Twix", moment, model="gpt-5", tokenCounts=bad))

    assert (await figures(redis, clock))["tokenUsage"] == [{"model": "gpt-5", "tokens": 1}]


async def test_repository_filter_keeps_figures_apart(redis: Redis) -> None:
    clock = FixedClock(at("2026-01-28T12:30:00"))
    apply = ingestor(redis, clock)
    moment = at("2026-01-28T12:00:00")
    await apply.ingest(completed("Twix", moment, repo_name="app"))
    await apply.ingest(completed("KitKat", moment, repo_name="api"))
    await apply.ingest(completed("Mars", moment, repo_name="api"))
    await apply.ingest(ci_result(False, "Mars", 1, moment, repo_name="api"))

    assert counts_by_hour(await figures(redis, clock)) == {"2026-01-28T12:00": 3}
    assert counts_by_hour(await figures(redis, clock, "app")) == {"2026-01-28T12:00": 1}
    assert counts_by_hour(await figures(redis, clock, "api")) == {"2026-01-28T12:00": 2}
    app_ci = (await figures(redis, clock, "app"))["ciSuccessRate"]
    assert app_ci == [{"status": "pass", "count": 0}, {"status": "fail", "count": 0}]


async def test_unknown_repository_has_empty_figures(redis: Redis) -> None:
    clock = FixedClock(at("2026-01-28T12:30:00"))
    await ingestor(redis, clock).ingest(completed("Twix", at("2026-01-28T12:00:00")))

    result = await figures(redis, clock, "nowhere")

    assert counts_by_hour(result) == {}
    assert result["tokenUsage"] == []


async def test_duplicate_event_counts_once(redis: Redis) -> None:
    clock = FixedClock(at("2026-01-28T12:30:00"))
    apply = ingestor(redis, clock)
    moment = at("2026-01-28T12:00:00")
    sequence = [
        created("Twix", moment, model="gpt-5"),
        completed("Twix", moment),
        ci_result(True, "Twix", 1, moment),
        pr_created("Twix", 1, at("2026-01-28T10:00:00")),
        pr_merged("Twix", 1, at("2026-01-28T10:00:00"), moment),
    ]
    for each in sequence:
        assert await apply.ingest(each)
    once = await figures(redis, clock)

    for each in sequence:
        assert not await apply.ingest(each)

    assert await figures(redis, clock) == once
    assert once["prCycleTime"] == [{"date": "2026-01-28", "avgHours": 2.0}]


async def test_second_merge_event_does_not_count_again(redis: Redis) -> None:
    clock = FixedClock(at("2026-01-28T12:30:00"))
    apply = ingestor(redis, clock)
    opened = at("2026-01-28T10:00:00")
    await apply.ingest(pr_created("Twix", 1, opened))
    await apply.ingest(pr_merged("Twix", 1, opened, at("2026-01-28T11:00:00")))

    # A new event id for the same pull request: the first merge stays the one counted.
    await apply.ingest(pr_merged("Twix", 1, opened, at("2026-01-28T12:00:00")))

    assert (await figures(redis, clock))["prCycleTime"] == [{"date": "2026-01-28", "avgHours": 1.0}]


async def test_event_order_does_not_change_figures(redis: Redis) -> None:
    clock = FixedClock(at("2026-01-28T12:30:00"))
    sequence = []
    for index in range(40):
        name = f"Worker{index}"
        opened = at("2026-01-28T00:00:00") + timedelta(minutes=7 * index)
        merged = opened + timedelta(minutes=13 * (index % 5 + 1))
        sequence += [
            created(name, opened, model=f"model-{index % 3}"),
            completed(name, opened + timedelta(minutes=5)),
            pr_created(name, index, opened),
            ci_result(index % 4 != 0, name, index, merged),
            pr_merged(name, index, opened, merged),
        ]
    for each in sequence:
        await ingestor(redis, clock).ingest(each)
    in_order = await figures(redis, clock)
    assert sum(counts_by_hour(in_order).values()) == 40
    assert in_order["ciSuccessRate"] == [
        {"status": "pass", "count": 30},
        {"status": "fail", "count": 10},
    ]

    await redis.flushdb()
    shuffled = list(sequence)
    random.Random(7).shuffle(shuffled)
    for each in shuffled:
        await ingestor(redis, clock).ingest(each)

    assert await figures(redis, clock) == in_order


async def test_event_with_invalid_time_is_skipped(redis: Redis) -> None:
    clock = FixedClock(at("2026-01-28T12:30:00"))
    broken = completed("Twix", at("2026-01-28T12:00:00"))
    broken.time = "yesterday"

    assert not await ingestor(redis, clock).ingest(broken)
    assert counts_by_hour(await figures(redis, clock)) == {}


async def test_event_counts_by_type(redis: Redis) -> None:
    clock = FixedClock(at("2026-01-28T12:30:00"))
    apply = ingestor(redis, clock)
    moment = at("2026-01-28T12:00:00")
    await apply.ingest(created("Twix", moment))
    await apply.ingest(created("KitKat", moment))
    await apply.ingest(completed("Twix", moment))

    assert await redis.hgetall(keys.METRICS_EVENT_COUNTS) == {
        "worker.created": "2",
        "worker.completed": "1",
    }


async def test_prune_deletes_buckets_past_window(redis: Redis) -> None:
    clock = FixedClock(at("2026-01-28T12:30:00"))
    apply = ingestor(redis, clock)
    await apply.ingest(completed("Twix", at("2026-01-25T12:00:00")))
    await apply.ingest(completed("KitKat", at("2026-01-28T12:00:00")))
    opened = at("2025-12-01T08:00:00")
    await apply.ingest(pr_created("Mars", 1, opened))
    await apply.ingest(pr_merged("Mars", 1, opened, at("2025-12-01T09:00:00")))
    before = await figures(redis, clock)

    deleted = await prune_aggregates(redis, clock(), CYCLE_DAYS)

    # In both scopes, "all" and "repository:app": one hour, and the count and ms fields of one day.
    assert deleted == 6
    assert await redis.hkeys(keys.metrics_throughput("all")) == ["2026-01-28T12:00"]
    assert await figures(redis, clock) == before
