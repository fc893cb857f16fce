"""GET /api/v1/metrics and the Prometheus endpoint GET /metrics, through the api app."""

from collections.abc import AsyncIterator

import httpx
import pytest
from nats.aio.client import Client as NATS
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from cocopilot import bus, keys
from cocopilot.events import Event
from cocopilot.models import Worker, WorkerStatus
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

TOKEN = "s3cret-token"


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(at("2026-01-28T12:30:00"))


@pytest.fixture
async def api(
    servers: Servers, redis: Redis, nc: NATS, clock: FixedClock
) -> AsyncIterator[httpx.AsyncClient]:
    async with metrics_service(servers, redis, clock), api_client(settings_for(servers)) as client:
        yield client


async def publish_and_wait(nc: NATS, redis: Redis, *events: Event) -> None:
    for each in events:
        await bus.publish_event(nc, each)

    async def applied() -> bool:
        counts = await redis.hvals(keys.METRICS_EVENT_COUNTS)
        return sum(int(count) for count in counts) >= len(events)

    await wait_until(applied)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Map (sample name, sorted labels) to value, from the Prometheus text format."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


async def test_metrics_route_returns_figures(
    api: httpx.AsyncClient, nc: NATS, redis: Redis
) -> None:
    moment = at("2026-01-28T12:00:00")
    await publish_and_wait(
        nc, redis, created("Twix", moment, model="gpt-5"), completed("Twix", moment)
    )

    response = await api.get("/api/v1/metrics")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"workerThroughput", "prCycleTime", "ciSuccessRate", "tokenUsage"}
    assert body["workerThroughput"][-1] == {"hour": "2026-01-28T12:00", "count": 1}
    assert body["tokenUsage"] == [{"model": "gpt-5", "tokens": 1}]


async def test_metrics_route_shows_token_counts(
    api: httpx.AsyncClient, nc: NATS, redis: Redis
) -> None:
    moment = at("2026-01-28T12:00:00")
    tokens = {"input": 900, "output": 40}
    await publish_and_wait(
        nc,
        redis,
        created("Twix", moment, model="gpt-5"),
        completed("Twix", moment, model="gpt-5", tokenCounts=tokens),
    )

    body = (await api.get("/api/v1/metrics")).json()

    assert body["tokenUsage"] == [{"model": "gpt-5", "tokens": 1, "tokenCounts": tokens}]


async def test_metrics_route_filters_by_repository(
    api: httpx.AsyncClient, nc: NATS, redis: Redis
) -> None:
    moment = at("2026-01-28T12:00:00")
    await publish_and_wait(nc, redis, ci_result(True, "Twix", 1, moment, repo_name="api"))

    body = (await api.get("/api/v1/metrics", params={"repoName": "app"})).json()

    assert body["ciSuccessRate"] == [
        {"status": "pass", "count": 0},
        {"status": "fail", "count": 0},
    ]


async def test_metrics_route_rejects_invalid_repo_name(api: httpx.AsyncClient) -> None:
    response = await api.get("/api/v1/metrics", params={"repoName": "../etc"})

    assert response.status_code == 400
    assert response.json()["error"]["status"] == 400
    assert response.json()["error"]["message"].startswith("invalid repoName '../etc'")


async def test_metrics_route_without_service_is_503(
    servers: Servers, redis: Redis, nc: NATS
) -> None:
    async with api_client(settings_for(servers, command_timeout_s=2)) as client:
        response = await client.get("/api/v1/metrics")

    assert response.status_code == 503
    assert response.json()["error"]["status"] == 503


async def store_worker(redis: Redis, name: str, status: WorkerStatus) -> None:
    worker = Worker(
        name=name,
        task="Add tests",
        branch=f"work/{name}",
        status=status,
        repo_name="app",
        base_branch="main",
        agent="demo",
        created_at="2026-01-28T12:00:00.000Z",
        updated_at="2026-01-28T12:00:00.000Z",
        instance_id="workers-1",
        worktree=f"/data/worktrees/{name}",
    )
    await redis.set(keys.worker(name), worker.model_dump_json(by_alias=True))
    await redis.sadd(keys.WORKERS, name)


async def test_prometheus_counts_workers_by_status(api: httpx.AsyncClient, redis: Redis) -> None:
    await store_worker(redis, "Twix", WorkerStatus.WORKING)
    await store_worker(redis, "Mars", WorkerStatus.WORKING)
    await store_worker(redis, "KitKat", WorkerStatus.FAILED)

    found = samples((await api.get("/metrics")).text)

    assert found[("cocopilot_workers", (("status", "working"),))] == 2
    assert found[("cocopilot_workers", (("status", "failed"),))] == 1
    assert found[("cocopilot_workers", (("status", "stuck"),))] == 0


async def test_prometheus_counts_events_by_type(
    api: httpx.AsyncClient, nc: NATS, redis: Redis
) -> None:
    moment = at("2026-01-28T12:00:00")
    await publish_and_wait(
        nc, redis, created("Twix", moment), created("Mars", moment), completed("Twix", moment)
    )

    found = samples((await api.get("/metrics")).text)

    assert found[("cocopilot_events_total", (("type", "worker.created"),))] == 2
    assert found[("cocopilot_events_total", (("type", "worker.completed"),))] == 1
    assert found[("cocopilot_events_total", (("type", "pr.merged"),))] == 0


async def test_prometheus_reads_webhook_outcomes(api: httpx.AsyncClient, redis: Redis) -> None:
    await redis.hincrby(keys.WEBHOOK_DELIVERY_OUTCOMES, "succeeded", 5)
    await redis.hincrby(keys.WEBHOOK_DELIVERY_OUTCOMES, "retried", 2)

    found = samples((await api.get("/metrics")).text)

    assert found[("cocopilot_webhook_deliveries_total", (("outcome", "succeeded"),))] == 5
    assert found[("cocopilot_webhook_deliveries_total", (("outcome", "retried"),))] == 2


async def test_prometheus_times_requests_by_route(api: httpx.AsyncClient) -> None:
    await api.get("/api/v1/metrics")
    await api.get("/api/v1/metrics")
    await api.get("/api/v1/workers/Nobody")
    await api.get("/no/such/path")

    found = samples((await api.get("/metrics")).text)

    name = "cocopilot_api_request_duration_seconds_count"
    metrics_labels = (("method", "GET"), ("route", "/api/v1/metrics"), ("status", "200"))
    assert found[(name, metrics_labels)] == 2
    worker_labels = (("method", "GET"), ("route", "/api/v1/workers/{name}"), ("status", "404"))
    assert found[(name, worker_labels)] == 1
    unmatched_labels = (("method", "GET"), ("route", "unmatched"), ("status", "404"))
    assert found[(name, unmatched_labels)] == 1


async def test_prometheus_shows_process_metrics(api: httpx.AsyncClient) -> None:
    response = await api.get("/metrics")

    assert response.headers["content-type"].startswith("text/plain")
    assert "process_resident_memory_bytes" in response.text


async def test_prometheus_offers_openmetrics(api: httpx.AsyncClient) -> None:
    response = await api.get("/metrics", headers={"Accept": "application/openmetrics-text"})

    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")


async def test_prometheus_needs_token_when_set(servers: Servers, redis: Redis, nc: NATS) -> None:
    async with api_client(settings_for(servers, api_token=TOKEN)) as client:
        without = await client.get("/metrics")
        wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
        right = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        health = await client.get("/healthz")

    assert without.status_code == 401
    assert without.json()["error"]["status"] == 401
    assert wrong.status_code == 401
    assert right.status_code == 200
    assert health.status_code == 200
