"""The metrics service end to end: events through JetStream, figures through NATS commands."""

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client as NATS
from redis.asyncio import Redis

from cocopilot import bus, keys, subjects
from cocopilot.errors import CocopilotError
from cocopilot.events import Event
from cocopilot.timeutil import utc_now
from services.metrics.ingest import Ingestor
from services.metrics.service import MetricsService
from tests.metrics_events import (
    FixedClock,
    at,
    ci_result,
    completed,
    created,
    metrics_service,
    pr_created,
    pr_merged,
)
from tests.servers import Servers
from tests.waiting import wait_until

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(at("2026-01-28T12:30:00"))


@pytest.fixture
async def service(
    servers: Servers, redis: Redis, nc: NATS, clock: FixedClock
) -> AsyncIterator[MetricsService]:
    async with metrics_service(servers, redis, clock) as running:
        yield running


async def events_applied(redis: Redis) -> int:
    return sum(int(count) for count in await redis.hvals(keys.METRICS_EVENT_COUNTS))


async def publish_all(nc: NATS, events: list[Event]) -> None:
    for each in events:
        await bus.publish_event(nc, each)


async def wait_for_applied(redis: Redis, expected: int, timeout_s: float = 10.0) -> None:
    async def all_applied() -> bool:
        return await events_applied(redis) >= expected

    await wait_until(all_applied, timeout_s=timeout_s)


async def test_get_metrics_reflects_published_events(
    service: MetricsService, nc: NATS, redis: Redis
) -> None:
    moment = at("2026-01-28T12:00:00")
    opened = at("2026-01-28T10:00:00")
    events = [
        created("Twix", opened, model="gpt-5"),
        completed("Twix", moment),
        pr_created("Twix", 1, opened),
        ci_result(True, "Twix", 1, moment),
        pr_merged("Twix", 1, opened, moment),
    ]
    await publish_all(nc, events)
    await wait_for_applied(redis, len(events))

    result = await bus.request(nc, subjects.GET_METRICS, {"repoName": None}, timeout_s=5)

    assert result["workerThroughput"][-1] == {"hour": "2026-01-28T12:00", "count": 1}
    assert result["prCycleTime"] == [{"date": "2026-01-28", "avgHours": 2.0}]
    assert result["ciSuccessRate"] == [
        {"status": "pass", "count": 1},
        {"status": "fail", "count": 0},
    ]
    assert result["tokenUsage"] == [{"model": "gpt-5", "tokens": 1}]


async def test_get_metrics_filters_by_repository(
    service: MetricsService, nc: NATS, redis: Redis
) -> None:
    moment = at("2026-01-28T12:00:00")
    await publish_all(nc, [completed("Twix", moment, "app"), completed("Mars", moment, "api")])
    await wait_for_applied(redis, 2)

    result = await bus.request(nc, subjects.GET_METRICS, {"repoName": "api"}, timeout_s=5)

    assert result["workerThroughput"][-1] == {"hour": "2026-01-28T12:00", "count": 1}


@pytest.mark.parametrize("repo_name", ["../app", "", 42])
async def test_get_metrics_rejects_invalid_repo_name(
    service: MetricsService, nc: NATS, repo_name: Any
) -> None:
    with pytest.raises(CocopilotError) as raised:
        await bus.request(nc, subjects.GET_METRICS, {"repoName": repo_name}, timeout_s=5)

    assert raised.value.status == 400


async def test_list_events_returns_a_page(service: MetricsService, nc: NATS, redis: Redis) -> None:
    base = at("2026-01-28T12:00:00")
    events = [completed(f"W{n}", base + timedelta(seconds=n)) for n in range(3)]
    await publish_all(nc, events)
    await wait_for_applied(redis, 3)

    result = await bus.request(nc, subjects.LIST_EVENTS, {"limit": 2}, timeout_s=5)

    assert [entry["id"] for entry in result["events"]] == [events[2].id, events[1].id]
    assert result["nextCursor"] is not None


async def test_list_events_rejects_invalid_limit(service: MetricsService, nc: NATS) -> None:
    with pytest.raises(CocopilotError) as raised:
        await bus.request(nc, subjects.LIST_EVENTS, {"limit": 0}, timeout_s=5)

    assert raised.value.status == 400


async def test_events_applied_but_not_acked_count_once(
    servers: Servers, redis: Redis, nc: NATS, clock: FixedClock
) -> None:
    moment = at("2026-01-28T12:00:00")
    events = [completed(f"W{n}", moment) for n in range(10)]
    await publish_all(nc, events)
    # As if a previous process applied the first six and died before acking them.
    await Ingestor(redis, clock, timedelta(days=30)).ingest_many(events[:6])

    async with metrics_service(servers, redis, clock):
        await wait_for_applied(redis, len(events))
        result = await bus.request(nc, subjects.GET_METRICS, {}, timeout_s=5)

    assert result["workerThroughput"][-1] == {"hour": "2026-01-28T12:00", "count": 10}
    assert await events_applied(redis) == len(events)


async def test_prune_runs_at_start(
    servers: Servers, redis: Redis, nc: NATS, clock: FixedClock
) -> None:
    await redis.hset(keys.metrics_throughput("all"), "2026-01-01T00:00", 3)
    await redis.sadd(keys.METRICS_SCOPES, "all")

    async def pruned() -> bool:
        return not await redis.exists(keys.metrics_throughput("all"))

    async with metrics_service(servers, redis, clock):
        await wait_until(pruned)


# The restart test: the service as its own process, killed with SIGKILL in the middle of the
# stream. Events it applied but did not ack come again after the consumer's ack wait (30 s,
# the JetStream default) and must change nothing.

WORKERS_IN_RESTART_TEST = 600  # five events each


def restart_test_events() -> list[Event]:
    anchor = utc_now().replace(microsecond=0) - timedelta(hours=1)
    opened, merged = anchor - timedelta(hours=2), anchor - timedelta(hours=1)
    events: list[Event] = []
    for index in range(WORKERS_IN_RESTART_TEST):
        name = f"Worker{index}"
        events += [
            created(name, opened, model=f"model-{index % 3}"),
            pr_created(name, index, opened),
            completed(name, anchor),
            ci_result(index % 4 != 0, name, index, anchor),
            pr_merged(name, index, opened, merged),
        ]
    return events


def expected_totals(events: list[Event]) -> dict[str, Any]:
    merge_day = events[-1].data["mergedAt"][:10]
    return {
        "completions": WORKERS_IN_RESTART_TEST,
        "prCycleTime": [{"date": merge_day, "avgHours": 1.0}],
        "ciSuccessRate": [
            {"status": "pass", "count": WORKERS_IN_RESTART_TEST * 3 // 4},
            {"status": "fail", "count": WORKERS_IN_RESTART_TEST // 4},
        ],
        "tokenUsage": [
            {"model": f"model-{n}", "tokens": WORKERS_IN_RESTART_TEST // 3} for n in range(3)
        ],
    }


def totals_of(result: dict[str, Any]) -> dict[str, Any]:
    return {
        "completions": sum(entry["count"] for entry in result["workerThroughput"]),
        "prCycleTime": result["prCycleTime"],
        "ciSuccessRate": result["ciSuccessRate"],
        "tokenUsage": result["tokenUsage"],
    }


class ServiceProcess:
    """``python -m services.metrics.main`` against the test servers."""

    def __init__(self, servers: Servers, tmp_path: Path) -> None:
        self.env = {
            **os.environ,
            "COCOPILOT_REDIS_URL": servers.redis_url,
            "COCOPILOT_NATS_URL": servers.nats_url,
            "COCOPILOT_INSTANCE_ID": "metrics-restart-test",
            "COCOPILOT_HEALTH_DIR": str(tmp_path / "health"),
            "COCOPILOT_LOG_LEVEL": "WARNING",
        }
        self.log_path = tmp_path / "metrics.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "services.metrics.main"],
                cwd=REPOSITORY_ROOT,
                env=self.env,
                stdout=log_file,
                stderr=log_file,
            )

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


@pytest.fixture
def service_process(servers: Servers, tmp_path: Path) -> Iterator[ServiceProcess]:
    process = ServiceProcess(servers, tmp_path)
    yield process
    process.stop()


async def test_restart_mid_stream_keeps_totals(
    service_process: ServiceProcess, nc: NATS, redis: Redis
) -> None:
    events = restart_test_events()
    half = len(events) // 2
    service_process.start()
    await publish_all(nc, events[:half])
    await wait_for_applied(redis, len(events) // 4, timeout_s=30)

    service_process.kill()
    applied_at_kill = await events_applied(redis)
    await publish_all(nc, events[half:])
    service_process.start()
    await wait_for_applied(redis, len(events), timeout_s=120)

    result = await bus.request(nc, subjects.GET_METRICS, {}, timeout_s=5)
    assert applied_at_kill < len(events)
    assert await events_applied(redis) == len(events)
    assert totals_of(result) == expected_totals(events)
