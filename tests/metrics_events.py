"""Synthetic events, a settable clock, and the metrics service and api run in the test process."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import nats
from redis.asyncio import Redis

from cocopilot.events import Event, EventType
from cocopilot.settings import Settings
from cocopilot.timeutil import format_time
from services.api.app import create_app
from services.metrics.service import MetricsService
from tests.servers import Servers


def at(text: str) -> datetime:
    """Return a UTC time from ``YYYY-MM-DDTHH:MM:SS[.fff]``."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


class FixedClock:
    """A clock that stays where a test puts it."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def event(
    event_type: EventType, moment: datetime, repo_name: str | None = "app", **data: Any
) -> Event:
    return Event(type=event_type, time=format_time(moment), repoName=repo_name, data=data)


def worker_data(name: str, repo_name: str = "app", **fields: Any) -> dict[str, Any]:
    """Return ``data`` of a worker event: the worker as the API shows it."""
    worker: dict[str, Any] = {
        "name": name,
        "task": f"Task of {name}",
        "branch": f"work/{name}",
        "status": "working",
        "repoName": repo_name,
        "baseBranch": "main",
        "agent": "demo",
        "createdAt": "2026-01-28T00:00:00.000Z",
        "updatedAt": "2026-01-28T00:00:00.000Z",
    }
    worker.update(fields)
    return worker


def created(name: str, moment: datetime, repo_name: str = "app", **fields: Any) -> Event:
    data = worker_data(name, repo_name, status="starting", **fields)
    return event(EventType.WORKER_CREATED, moment, repo_name, **data)


def completed(name: str, moment: datetime, repo_name: str = "app", **fields: Any) -> Event:
    data = worker_data(name, repo_name, status="completed", **fields)
    return event(EventType.WORKER_COMPLETED, moment, repo_name, **data)


def pr_data(worker: str, number: int, created_at: datetime, **fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "worker": worker,
        "number": number,
        "url": f"local://app/pulls/{number}",
        "branch": f"work/{worker}",
        "baseBranch": "main",
        "headCommit": "0" * 40,
        "createdAt": format_time(created_at),
    }
    data.update(fields)
    return data


def pr_created(worker: str, number: int, moment: datetime, repo_name: str = "app") -> Event:
    return event(EventType.PR_CREATED, moment, repo_name, **pr_data(worker, number, moment))


def pr_merged(
    worker: str, number: int, created_at: datetime, merged_at: datetime, repo_name: str = "app"
) -> Event:
    data = pr_data(worker, number, created_at, mergedAt=format_time(merged_at))
    return event(EventType.PR_MERGED, merged_at, repo_name, **data)


def ci_result(
    passed: bool, worker: str, number: int, moment: datetime, repo_name: str = "app"
) -> Event:
    conclusion = "success" if passed else "failure"
    data = {
        "worker": worker,
        "prNumber": number,
        "headCommit": "0" * 40,
        "checks": [{"name": "tests", "conclusion": conclusion}],
        "excerpt": "" if passed else "1 failed",
    }
    event_type = EventType.CI_PASSED if passed else EventType.CI_FAILED
    return event(event_type, moment, repo_name, **data)


def settings_for(servers: Servers, **fields: Any) -> Settings:
    return Settings(redis_url=servers.redis_url, nats_url=servers.nats_url, **fields)


@asynccontextmanager
async def metrics_service(
    servers: Servers, redis: Redis, clock: FixedClock
) -> AsyncIterator[MetricsService]:
    """The metrics service on its own NATS connection, with ``clock`` as its clock."""
    connection = await nats.connect(servers.nats_url)
    running = MetricsService(redis, connection, settings_for(servers), clock)
    await running.start()
    try:
        yield running
    finally:
        await running.stop()
        await connection.drain()


@asynccontextmanager
async def api_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the api app, started and stopped through its lifespan."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            yield client
