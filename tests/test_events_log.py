"""The activity log behind GET /api/v1/events, on a fixed clock (real Redis)."""

from datetime import timedelta
from typing import Any

import pytest
from redis.asyncio import Redis

from cocopilot import keys
from cocopilot.errors import InvalidRequest
from cocopilot.events import Event, EventType
from services.metrics.activity import list_events, parse_query, prune_activity, time_ms
from services.metrics.descriptions import describe, worker_name
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

RETENTION = timedelta(days=30)


async def page(redis: Redis, clock: FixedClock, **payload: Any) -> dict[str, Any]:
    oldest_ms = time_ms(clock() - RETENTION)
    return await list_events(redis, parse_query(payload), oldest_ms)


async def ids(redis: Redis, clock: FixedClock, **payload: Any) -> list[str]:
    return [entry["id"] for entry in (await page(redis, clock, **payload))["events"]]


async def ingest_all(redis: Redis, clock: FixedClock, events: list[Event]) -> None:
    apply = Ingestor(redis, clock, RETENTION)
    for each in events:
        await apply.ingest(each)


def minutes_after(start: str, minutes: int) -> Any:
    return at(start) + timedelta(minutes=minutes)


async def test_entry_has_id_type_names_description_time(redis: Redis) -> None:
    clock = FixedClock(at("2026-01-28T12:30:00"))
    finished = completed("Twix", at("2026-01-28T12:00:00.250"))
    await ingest_all(redis, clock, [finished])

    assert (await page(redis, clock))["events"] == [
        {
            "id": finished.id,
            "type": "worker.completed",
            "repoName": "app",
            "workerName": "Twix",
            "description": "Worker Twix completed its task",
            "time": "2026-01-28T12:00:00.250Z",
        }
    ]


async def test_entry_without_worker_has_no_worker_name(redis: Redis) -> None:
    clock = FixedClock(at("2026-01-28T12:30:00"))
    added = event(EventType.REPOSITORY_ADDED, at("2026-01-28T12:00:00"), name="app")
    await ingest_all(redis, clock, [added])

    entry = (await page(redis, clock))["events"][0]

    assert "workerName" not in entry
    assert entry["description"] == "Repository app added"


async def test_log_is_newest_first(redis: Redis) -> None:
    clock = FixedClock(at("2026-01-28T12:30:00"))
    events = [completed(f"W{n}", minutes_after("2026-01-28T10:00:00", n)) for n in range(5)]
    shuffled = [events[3], events[0], events[4], events[1], events[2]]
    await ingest_all(redis, clock, shuffled)

    assert await ids(redis, clock) == [each.id for each in reversed(events)]


async def test_duplicate_event_is_logged_once(redis: Redis) -> None:
    clock = FixedClock(at("2026-01-28T12:30:00"))
    finished = completed("Twix", at("2026-01-28T12:00:00"))
    await ingest_all(redis, clock, [finished, finished])

    assert await ids(redis, clock) == [finished.id]


async def test_filters_by_type_repository_and_worker(redis: Redis) -> None:
    clock = FixedClock(at("2026-01-28T12:30:00"))
    base = "2026-01-28T10:00:00"
    twix_created = created("Twix", minutes_after(base, 1), repo_name="app")
    mars_created = created("Mars", minutes_after(base, 2), repo_name="api")
    twix_done = completed("Twix", minutes_after(base, 3), repo_name="app")
    mars_done = completed("Mars", minutes_after(base, 4), repo_name="api")
    twix_ci = ci_result(False, "Twix", 1, minutes_after(base, 5), repo_name="app")
    await ingest_all(redis, clock, [twix_created, mars_created, twix_done, mars_done, twix_ci])

    cases: list[tuple[dict[str, Any], list[Event]]] = [
        ({"type": "worker.completed"}, [mars_done, twix_done]),
        ({"repoName": "app"}, [twix_ci, twix_done, twix_created]),
        ({"repoName": "api", "type": "worker.created"}, [mars_created]),
        ({"workerName": "Twix"}, [twix_ci, twix_done, twix_created]),
        ({"workerName": "Twix", "type": "ci.failed"}, [twix_ci]),
        ({"workerName": "Twix", "repoName": "api"}, []),
        ({"workerName": "Bounty"}, []),
    ]
    for filters, expected in cases:
        assert await ids(redis, clock, **filters) == [each.id for each in expected], filters


async def test_time_range_since_inclusive_until_exclusive(redis: Redis) -> None:
    clock = FixedClock(at("2026-01-28T12:30:00"))
    events = [completed(f"W{n}", minutes_after("2026-01-28T10:00:00", n)) for n in range(5)]
    await ingest_all(redis, clock, events)

    found = await ids(
        redis, clock, since="2026-01-28T10:01:00.000Z", until="2026-01-28T10:03:00.000Z"
    )

    assert found == [events[2].id, events[1].id]


async def test_time_range_accepts_offsets(redis: Redis) -> None:
    clock = FixedClock(at("2026-01-28T12:30:00"))
    events = [completed(f"W{n}", minutes_after("2026-01-28T10:00:00", n)) for n in range(3)]
    await ingest_all(redis, clock, events)

    # 11:01 at +01:00 is 10:01 UTC.
    assert await ids(redis, clock, since="2026-01-28T11:01:00+01:00") == [
        events[2].id,
        events[1].id,
    ]


async def test_cursor_pages_through_everything_once(redis: Redis) -> None:
    clock = FixedClock(at("2026-01-28T12:30:00"))
    # Groups of three events in the same millisecond, so pages split inside a tie.
    events = [completed(f"W{n}", minutes_after("2026-01-28T10:00:00", n // 3)) for n in range(20)]
    await ingest_all(redis, clock, events)
    everything = await ids(redis, clock, limit=500)

    seen: list[str] = []
    cursor = None
    for _ in range(20):
        result = await page(redis, clock, limit=3, cursor=cursor)
        seen += [entry["id"] for entry in result["events"]]
        cursor = result["nextCursor"]
        if cursor is None:
            break

    assert len(everything) == 20
    assert seen == everything


async def test_last_page_has_no_cursor(redis: Redis) -> None:
    clock = FixedClock(at("2026-01-28T12:30:00"))
    events = [completed(f"W{n}", minutes_after("2026-01-28T10:00:00", n)) for n in range(4)]
    await ingest_all(redis, clock, events)

    first = await page(redis, clock, limit=2)
    second = await page(redis, clock, limit=2, cursor=first["nextCursor"])

    assert first["nextCursor"] is not None
    assert [entry["id"] for entry in second["events"]] == [events[1].id, events[0].id]
    assert second["nextCursor"] is None


async def test_cursor_keeps_filters_of_the_request(redis: Redis) -> None:
    clock = FixedClock(at("2026-01-28T12:30:00"))
    base = "2026-01-28T10:00:00"
    events = []
    for n in range(6):
        events.append(created(f"W{n}", minutes_after(base, 2 * n)))
        events.append(completed(f"W{n}", minutes_after(base, 2 * n + 1)))
    await ingest_all(redis, clock, events)

    first = await page(redis, clock, type="worker.created", limit=4)
    second = await page(redis, clock, type="worker.created", limit=4, cursor=first["nextCursor"])

    created_ids = [each.id for each in reversed(events) if each.type == "worker.created"]
    assert [entry["id"] for entry in first["events"]] == created_ids[:4]
    assert [entry["id"] for entry in second["events"]] == created_ids[4:]


async def test_entries_past_retention_are_hidden_and_pruned(redis: Redis) -> None:
    clock = FixedClock(at("2026-01-28T12:30:00"))
    old = completed("Twix", at("2026-01-20T12:00:00"))
    recent = completed("KitKat", at("2026-01-28T12:00:00"))
    await ingest_all(redis, clock, [old, recent])

    clock.now = at("2026-02-20T00:00:00")  # the old entry is now 31 days old
    assert await ids(redis, clock) == [recent.id]

    deleted = await prune_activity(redis, time_ms(clock() - RETENTION))

    assert deleted == 1
    assert await redis.hkeys(keys.ACTIVITY_ENTRIES) == [recent.id]
    assert await redis.zcard(keys.activity_by_worker("Twix")) == 0
    assert await redis.zcard(keys.activity_by_repository_type("app", "worker.completed")) == 1


async def test_event_older_than_retention_is_not_logged(redis: Redis) -> None:
    clock = FixedClock(at("2026-03-01T00:00:00"))
    await ingest_all(redis, clock, [completed("Twix", at("2026-01-20T12:00:00"))])

    assert await redis.hlen(keys.ACTIVITY_ENTRIES) == 0


async def test_scan_budget_returns_a_cursor(redis: Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FixedClock(at("2026-01-28T12:30:00"))
    base = "2026-01-28T10:00:00"
    mine = created("Twix", minutes_after(base, 0))
    others = [ci_result(True, "Twix", 1, minutes_after(base, n)) for n in range(1, 8)]
    await ingest_all(redis, clock, [mine, *others])
    monkeypatch.setattr("services.metrics.activity.MIN_SCAN_BATCH", 2)
    monkeypatch.setattr("services.metrics.activity.MAX_SCANNED_ENTRIES", 4)

    first = await page(redis, clock, workerName="Twix", type="worker.created", limit=1)
    assert first["events"] == []
    assert first["nextCursor"] is not None

    second = await page(
        redis, clock, workerName="Twix", type="worker.created", limit=1, cursor=first["nextCursor"]
    )
    assert [entry["id"] for entry in second["events"]] == [mine.id]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"type": "worker.exploded"}, "invalid type 'worker.exploded'"),
        ({"repoName": "../etc"}, "invalid repoName '../etc'"),
        ({"workerName": ""}, "workerName must not be empty"),
        ({"workerName": 5}, "invalid workerName: must be a string"),
        ({"since": "last week"}, "invalid since 'last week'"),
        ({"until": "2026-13-01"}, "invalid until '2026-13-01'"),
        ({"since": "2026-01-28T10:00:00Z", "until": "2026-01-28T10:00:00Z"}, "since must be"),
        ({"limit": 0}, "invalid limit 0"),
        ({"limit": 501}, "invalid limit 501"),
        ({"limit": "10"}, "invalid limit '10'"),
        ({"cursor": "not-a-cursor"}, "invalid cursor"),
        ({"cursor": "e30"}, "invalid cursor"),  # base64 of {}
    ],
)
def test_invalid_query_is_rejected(payload: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        parse_query(payload)

    assert raised.value.message.startswith(message)


def test_descriptions_are_one_line() -> None:
    moment = at("2026-01-28T12:00:00")
    opened = at("2026-01-28T10:00:00")
    cases: list[tuple[Event, str]] = [
        (
            created("Twix", moment, task="Fix\nthe   login bug"),
            "Worker Twix started on app: Fix the login bug",
        ),
        (
            event(EventType.WORKER_UPDATED, moment, name="Twix", status="stuck"),
            "Worker Twix is stuck",
        ),
        (completed("Twix", moment), "Worker Twix completed its task"),
        (
            event(EventType.WORKER_FAILED, moment, name="Twix", error="exit 2\ntrace"),
            "Worker Twix failed: exit 2 trace",
        ),
        (event(EventType.WORKER_FAILED, moment, name="Twix"), "Worker Twix failed"),
        (event(EventType.WORKER_REMOVED, moment, name="Twix"), "Worker Twix removed"),
        (pr_created("Twix", 12, opened), "Pull request #12 opened from work/Twix into main"),
        (pr_merged("Twix", 12, opened, moment), "Pull request #12 merged into main"),
        (ci_result(False, "Twix", 12, moment), "CI failed on pull request #12: tests"),
        (ci_result(True, "Twix", 12, moment), "CI passed on pull request #12"),
        (event(EventType.REPOSITORY_REMOVED, moment, name="app"), "Repository app removed"),
        (
            event(EventType.WORKER_NUDGED, moment, worker="Twix", message="Go on", by="api"),
            "Worker Twix nudged by api: Go on",
        ),
        (
            event(EventType.AGENT_MESSAGE, moment, agent="supervisor", type="pause"),
            "Message (pause) to agent supervisor",
        ),
        (
            event(EventType.AGENT_MESSAGE, moment, agent="Twix", type="text", text="Add docs"),
            "Message (text) to agent Twix: Add docs",
        ),
    ]
    for each, expected in cases:
        assert describe(each) == expected, each.type


def test_worker_name_by_event_type() -> None:
    moment = at("2026-01-28T12:00:00")
    cases: list[tuple[Event, str | None]] = [
        (completed("Twix", moment), "Twix"),
        (event(EventType.WORKER_NUDGED, moment, worker="Twix", message="Go on"), "Twix"),
        (ci_result(True, "Twix", 1, moment), "Twix"),
        (event(EventType.REPOSITORY_ADDED, moment, name="app"), None),
        (event(EventType.AGENT_MESSAGE, moment, agent="Twix", type="text", text="Hi"), None),
    ]
    for each, expected in cases:
        assert worker_name(each) == expected, each.type


def test_long_task_is_cut_in_description() -> None:
    long_task = "word " * 100

    text = describe(created("Twix", at("2026-01-28T12:00:00"), task=long_task))

    assert len(text) == len("Worker Twix started on app: ") + 80
    assert text.endswith("…")
