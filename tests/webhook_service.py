"""Running webhooks service replicas in the test process, against the test Redis and NATS."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import nats
from nats.aio.client import Client as NATS
from redis.asyncio import Redis

from cocopilot import bus, subjects
from cocopilot.errors import CocopilotError, ServiceUnavailable
from cocopilot.events import Event, EventType
from cocopilot.service import ServiceContext
from cocopilot.settings import Settings
from cocopilot.webhook_deliveries import DeliveryView, list_deliveries
from services.webhooks.addresses import Resolver, system_resolver
from services.webhooks.service import WebhooksService
from tests.servers import Servers
from tests.waiting import wait_until

# Retries a fifth of a second apart, so a test sees several attempts quickly.
FAST_SETTINGS: dict[str, Any] = {
    "webhook_allowed_networks": ["127.0.0.0/8"],
    "webhook_retry_delays_s": [0.2, 0.2, 0.2],
    "webhook_retry_jitter": 0.0,
    "webhook_poll_interval_s": 0.05,
    "webhook_timeout_s": 2.0,
    "webhook_connect_timeout_s": 1.0,
    "webhook_breaker_pause_s": 1.0,
}


def fast_settings(servers: Servers, **overrides: Any) -> Settings:
    values = {**FAST_SETTINGS, **overrides}
    return Settings(redis_url=servers.redis_url, nats_url=servers.nats_url, **values)


@asynccontextmanager
async def running_replica(
    servers: Servers, redis: Redis, resolver: Resolver = system_resolver, **overrides: Any
) -> AsyncIterator[WebhooksService]:
    """Start one replica with its own NATS connection; stop it on exit."""
    connection = await nats.connect(servers.nats_url)
    context = ServiceContext("webhooks", fast_settings(servers, **overrides), redis, connection)
    service = WebhooksService(context, resolver)
    await service.start()
    try:
        await wait_until(lambda: replies_to_commands(connection), timeout_s=5, interval_s=0.01)
        yield service
    finally:
        await service.stop()
        await connection.drain()


async def replies_to_commands(nc: NATS) -> bool:
    """Return whether the webhooks service replies to commands yet.

    NOTE: a request sent right after the service's subscriptions were flushed sometimes still
    meets no responder for about 20 ms (nats-server 2.15); tests wait for a reply instead.
    """
    try:
        await bus.request(nc, subjects.DELETE_WEBHOOK, {"id": "readiness-probe"}, timeout_s=5)
    except ServiceUnavailable:
        return False
    except CocopilotError:
        pass  # "not found" is a reply
    return True


async def register(
    nc: NATS, url: str, events: tuple[str, ...] = ("worker.completed",), **fields: Any
) -> dict[str, Any]:
    payload = {"url": url, "events": list(events), **fields}
    result: dict[str, Any] = await bus.request(nc, subjects.CREATE_WEBHOOK, payload, timeout_s=5)
    return result


async def publish(nc: NATS, event_type: str = EventType.WORKER_COMPLETED, **data: Any) -> Event:
    event = Event(type=EventType(event_type), repoName="app", data=data)
    await bus.publish_event(nc, event)
    return event


async def deliveries(redis: Redis, webhook_id: str) -> list[DeliveryView]:
    return await list_deliveries(redis, webhook_id, 200)
