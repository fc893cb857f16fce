"""The metrics service: aggregates and the activity log, computed from events.

It reads every event from a durable JetStream consumer, applies it to Redis (see ingest), and
serves two commands: GET_METRICS (the figures of ``GET /api/v1/metrics``) and LIST_EVENTS (a
page of the activity log). Several replicas may run; they share the consumer and the commands.
"""

import asyncio
import contextlib
import logging
from datetime import timedelta
from typing import Any

from nats.aio.client import Client as NATS
from redis.asyncio import Redis
from redis.exceptions import RedisError

from cocopilot import bus, subjects
from cocopilot.errors import CocopilotError, InvalidRequest, ServiceUnavailable
from cocopilot.service import ServiceContext
from cocopilot.settings import Settings
from cocopilot.timeutil import utc_now
from cocopilot.validation import check_name
from services.metrics.activity import list_events, parse_query, prune_activity, time_ms
from services.metrics.aggregates import prune_aggregates, read_metrics
from services.metrics.consumer import consume_in_batches
from services.metrics.ingest import CONSUMER, Clock, Ingestor

log = logging.getLogger(__name__)


class MetricsService:
    def __init__(
        self, redis: Redis, nats: NATS, settings: Settings, clock: Clock = utc_now
    ) -> None:
        self.redis = redis
        self.nats = nats
        self.settings = settings
        self.clock = clock
        self.activity_retention = timedelta(days=settings.activity_retention_days)
        self.ingestor = Ingestor(redis, clock, self.activity_retention)
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        await bus.serve_command(
            self.nats, subjects.GET_METRICS, self.get_metrics, queue=subjects.METRICS_QUEUE
        )
        await bus.serve_command(
            self.nats, subjects.LIST_EVENTS, self.list_events, queue=subjects.METRICS_QUEUE
        )
        await self.wait_until_reachable()
        self._tasks = [
            asyncio.create_task(self.consume_loop(), name="metrics-consumer"),
            asyncio.create_task(self.prune_loop(), name="metrics-prune"),
        ]

    async def wait_until_reachable(self, attempts: int = 100, interval_s: float = 0.01) -> None:
        """Wait until a GET_METRICS request finds a listener, so that start means ready.

        NOTE: after one connection's subscription is flushed, nats-server 2.15.1 can still answer
        "no responders" to a request from another connection for a few milliseconds (seen when a
        replica had just left the queue group). A request of our own absorbs that window.
        """
        for _ in range(attempts):
            try:
                await bus.request(self.nats, subjects.GET_METRICS, {}, timeout_s=1.0)
                return
            except ServiceUnavailable:
                await asyncio.sleep(interval_s)
            except CocopilotError:
                return  # a listener answered, even if with an error
        log.warning("GET_METRICS still finds no listener", extra={"attempts": attempts})

    async def stop(self) -> None:
        """Stop after the batch of events in hand is applied and acked."""
        self._stopping.set()
        await asyncio.gather(*self._tasks)

    async def consume_loop(self) -> None:
        """Consume events until stopped, starting the consumer again if it fails."""
        while not self._stopping.is_set():
            try:
                await consume_in_batches(
                    self.nats, CONSUMER, self.ingestor.ingest_many, self._stopping
                )
            except Exception:
                log.exception("event consumer failed, restarting it in 1 s")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), 1.0)

    async def get_metrics(self, payload: dict[str, Any]) -> dict[str, Any]:
        repo_name = payload.get("repoName")
        if repo_name is not None and not isinstance(repo_name, str):
            raise InvalidRequest("invalid repoName: must be a string")
        if repo_name is not None:
            check_name(repo_name, "repoName")
        return await read_metrics(
            self.redis, repo_name, self.clock(), self.settings.metrics_cycle_time_days
        )

    async def list_events(self, payload: dict[str, Any]) -> dict[str, Any]:
        query = parse_query(payload)
        return await list_events(self.redis, query, self.oldest_activity_ms())

    def oldest_activity_ms(self) -> int:
        return time_ms(self.clock() - self.activity_retention)

    async def prune(self) -> None:
        """Delete log entries past the retention time and buckets too old to be shown."""
        entries = await prune_activity(self.redis, self.oldest_activity_ms())
        buckets = await prune_aggregates(
            self.redis, self.clock(), self.settings.metrics_cycle_time_days
        )
        if entries or buckets:
            log.info("pruned old metrics", extra={"entries": entries, "buckets": buckets})

    async def prune_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.prune()
            except (RedisError, OSError) as exc:
                log.warning("pruning old metrics failed", extra={"error": str(exc)})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._stopping.wait(), self.settings.metrics_prune_interval_s
                )


# The running service of each context, from start to stop.
_services: dict[int, MetricsService] = {}


async def start(context: ServiceContext) -> None:
    service = MetricsService(context.redis, context.nats, context.settings)
    await service.start()
    _services[id(context)] = service


async def stop(context: ServiceContext) -> None:
    service = _services.pop(id(context), None)
    if service is not None:
        await service.stop()
