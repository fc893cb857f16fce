"""GET /api/v1/events, the activity log, through the api app."""

from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from nats.aio.client import Client as NATS
from redis.asyncio import Redis

from cocopilot import bus, keys
from cocopilot.events import Event
from tests.metrics_events import (
    FixedClock,
    api_client,
    at,
    ci_result,
    completed,
    created,
    metrics_service,
    settings_for,
)
from tests.servers import Servers
from tests.waiting import wait_until


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(at("2026-01-28T12:30:00"))


@pytest.fixture
async def api(
    servers: Servers, redis: Redis, nc: NATS, clock: FixedClock
) -> AsyncIterator[httpx.AsyncClient]:
    async with metrics_service(servers, redis, clock), api_client(settings_for(servers)) as client:
        yield client


async def publish_and_wait(nc: NATS, redis: Redis, events: list[Event]) -> None:
    for each in events:
        await bus.publish_event(nc, each)

    async def logged() -> bool:
        return await redis.hlen(keys.ACTIVITY_ENTRIES) >= len(events)

    await wait_until(logged)


async def test_events_route_lists_newest_first(
    api: httpx.AsyncClient, nc: NATS, redis: Redis
) -> None:
    base = at("2026-01-28T12:00:00")
    events = [
        created("Twix", base),
        completed("Twix", base + timedelta(minutes=1)),
        ci_result(False, "Twix", 3, base + timedelta(minutes=2)),
    ]
    await publish_and_wait(nc, redis, events)

    response = await api.get("/api/v1/events")

    assert response.status_code == 200
    assert response.json() == {
        "events": [
            {
                "id": events[2].id,
                "type": "ci.failed",
                "repoName": "app",
                "workerName": "Twix",
                "description": "CI failed on pull request #3: tests",
                "time": "2026-01-28T12:02:00.000Z",
            },
            {
                "id": events[1].id,
                "type": "worker.completed",
                "repoName": "app",
                "workerName": "Twix",
                "description": "Worker Twix completed its task",
                "time": "2026-01-28T12:01:00.000Z",
            },
            {
                "id": events[0].id,
                "type": "worker.created",
                "repoName": "app",
                "workerName": "Twix",
                "description": "Worker Twix started on app: Task of Twix",
                "time": "2026-01-28T12:00:00.000Z",
            },
        ],
        "nextCursor": None,
    }


async def test_events_route_filters_and_pages(
    api: httpx.AsyncClient, nc: NATS, redis: Redis
) -> None:
    base = at("2026-01-28T12:00:00")
    events = []
    for n in range(5):
        events.append(created(f"W{n}", base + timedelta(minutes=2 * n), repo_name="api"))
        events.append(completed(f"W{n}", base + timedelta(minutes=2 * n + 1), repo_name="api"))
    await publish_and_wait(nc, redis, events)
    params = {"type": "worker.completed", "repoName": "api", "limit": "2"}

    first = (await api.get("/api/v1/events", params=params)).json()
    second = (
        await api.get("/api/v1/events", params={**params, "cursor": first["nextCursor"]})
    ).json()

    completions = [each.id for each in reversed(events) if each.type == "worker.completed"]
    assert [entry["id"] for entry in first["events"]] == completions[:2]
    assert [entry["id"] for entry in second["events"]] == completions[2:4]


async def test_events_route_filters_by_worker_and_time(
    api: httpx.AsyncClient, nc: NATS, redis: Redis
) -> None:
    base = at("2026-01-28T12:00:00")
    events = [
        created("Twix", base),
        created("Mars", base + timedelta(minutes=1)),
        completed("Twix", base + timedelta(minutes=2)),
    ]
    await publish_and_wait(nc, redis, events)
    params = {"workerName": "Twix", "since": "2026-01-28T12:01:00Z"}

    body = (await api.get("/api/v1/events", params=params)).json()

    assert [entry["id"] for entry in body["events"]] == [events[2].id]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"limit": "0"}, "invalid query parameter limit"),
        ({"limit": "many"}, "invalid query parameter limit"),
        ({"limit": "501"}, "invalid query parameter limit"),
        ({"type": "worker.exploded"}, "invalid query parameter type"),
        ({"repoName": "../etc"}, "invalid repoName '../etc'"),
        ({"workerName": "a b"}, "invalid workerName 'a b'"),
        ({"since": "soon"}, "invalid since 'soon'"),
        ({"since": "2026-01-28T12:00:00Z", "until": "2026-01-28T11:00:00Z"}, "since must be"),
        ({"cursor": "%%%"}, "invalid cursor"),
    ],
)
async def test_events_route_rejects_bad_query(
    api: httpx.AsyncClient, params: dict[str, str], message: str
) -> None:
    response = await api.get("/api/v1/events", params=params)

    assert response.status_code == 400
    assert response.json()["error"]["status"] == 400
    assert response.json()["error"]["message"].startswith(message)


async def test_events_route_needs_token_when_set(servers: Servers, redis: Redis, nc: NATS) -> None:
    async with api_client(settings_for(servers, api_token="s3cret-token")) as client:
        response = await client.get("/api/v1/events")

    assert response.status_code == 401


async def test_events_route_is_in_openapi(api: httpx.AsyncClient) -> None:
    schema = (await api.get("/openapi.json")).json()

    operation = schema["paths"]["/api/v1/events"]["get"]
    names = {parameter["name"] for parameter in operation["parameters"]}
    assert names == {"type", "repoName", "workerName", "since", "until", "limit", "cursor"}
    assert "400" in operation["responses"]
