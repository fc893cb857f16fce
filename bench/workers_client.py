"""Driving a running stack's workers service from a benchmark: spawns and deletes through the
api, arrival times of worker events, and summary statistics."""

import json
import math
import statistics
import time
from dataclasses import dataclass
from typing import Any

import httpx
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy
from redis.asyncio import Redis

from cocopilot import subjects
from cocopilot.events import EventType
from tests.stack import Stack
from tests.waiting import wait_until

WORKER_EVENTS = f"{subjects.EVENTS_PREFIX}.worker.*"
# time.time() minus time.perf_counter(): turns a wall-clock time from another process (an
# agent, the git wrapper, a log line) into this process's perf_counter scale.
WALL_OFFSET_S = time.time() - time.perf_counter()


def perf_from_wall(wall_s: float) -> float:
    return wall_s - WALL_OFFSET_S


def milestone(event: dict[str, Any]) -> str:
    """Name the step an event marks: the new status for ``worker.updated``, else the event
    type without its ``worker.`` prefix (created, completed, failed, removed)."""
    if event["type"] == EventType.WORKER_UPDATED:
        return str(event["data"]["status"])
    return str(event["type"]).removeprefix("worker.")


class DeleteFailed(Exception):
    pass


class WorkerFailed(Exception):
    def __init__(self, name: str, error: str) -> None:
        super().__init__(f"worker {name} failed: {error}")
        self.name = name
        self.error = error


class WorkerEvents:
    """Arrival times (perf_counter seconds) of worker events, taken in the message callback of
    an ordered JetStream consumer on the events stream, keyed by worker name and milestone."""

    def __init__(self) -> None:
        self.arrivals: dict[tuple[str, str], float] = {}
        # The ``error`` of each worker.failed event, by worker name.
        self.failures: dict[str, str] = {}

    async def subscribe(self, nc: NATS) -> None:
        await nc.jetstream().subscribe(
            WORKER_EVENTS,
            cb=self._on_event,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.NEW,
        )

    async def _on_event(self, msg: Msg) -> None:
        arrived = time.perf_counter()
        event = json.loads(msg.data)
        # The first arrival counts; a later worker.updated with the same status (a changed
        # field) does not move it.
        self.arrivals.setdefault((event["data"]["name"], milestone(event)), arrived)
        if event["type"] == EventType.WORKER_FAILED:
            self.failures[event["data"]["name"]] = str(event["data"].get("error"))

    async def wait(self, name: str, step: str, timeout_s: float) -> float:
        """Return the arrival time of ``name``'s ``step``, waiting up to ``timeout_s``; raise
        WorkerFailed as soon as the worker failed instead."""

        def arrival() -> float | None:
            if name in self.failures and step != "failed":
                raise WorkerFailed(name, self.failures[name])
            return self.arrivals.get((name, step))

        arrived: float | None = await wait_until(arrival, timeout_s, 0.002)
        assert arrived is not None  # wait_until returns only a truthy value
        return arrived


@dataclass
class WorkersBench:
    stack: Stack
    api: httpx.AsyncClient
    events: WorkerEvents
    redis: Redis

    async def spawn(self, name: str, repo: str, agent_seconds: int) -> httpx.Response:
        """Send the spawn of a ``command`` worker whose agent runs for ``agent_seconds``."""
        body = {"task": str(agent_seconds), "repoName": repo, "agent": "command", "name": name}
        return await self.api.post("/api/v1/workers", json=body)

    async def delete(self, name: str) -> None:
        response = await self.api.delete(f"/api/v1/workers/{name}")
        if response.status_code != 204:
            raise DeleteFailed(f"DELETE worker {name} failed: {response.text}")

    async def list_names(self, repo: str) -> list[str]:
        response = await self.api.get(f"/api/v1/repositories/{repo}/workers")
        response.raise_for_status()
        return [worker["name"] for worker in response.json()]

    async def set_config(self, change: dict[str, Any]) -> None:
        response = await self.api.patch("/api/v1/config", json=change)
        if response.status_code != 200:
            raise RuntimeError(f"PATCH /api/v1/config failed: {response.text}")

    async def redis_used_memory(self) -> int:
        return int((await self.redis.info("memory"))["used_memory"])


def spread(samples: list[float]) -> dict[str, float]:
    """Median, 10th and 90th percentiles, min and max of ``samples``; NaN for each when there
    are fewer than two."""
    if len(samples) < 2:
        return dict.fromkeys(("median", "p10", "p90", "min", "max"), math.nan) | {
            "count": len(samples)
        }
    deciles = statistics.quantiles(samples, n=10, method="inclusive")
    return {
        "median": statistics.median(samples),
        "p10": deciles[0],
        "p90": deciles[8],
        "min": min(samples),
        "max": max(samples),
        "count": len(samples),
    }


def describe(figures: dict[str, float], unit: str) -> str:
    return (
        f"median {figures['median']:.1f} {unit} (p10 {figures['p10']:.1f}, "
        f"p90 {figures['p90']:.1f}, min {figures['min']:.1f}, max {figures['max']:.1f}, "
        f"n={figures['count']:.0f})"
    )
