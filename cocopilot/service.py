"""The frame every background service runs in: logging, connections, heartbeat, clean stop.

Each service reports a heartbeat to Redis (read by the api's status route) and touches a file
(read by ``python -m cocopilot.healthcheck``, the container healthcheck) while both its Redis
and NATS connections work.
"""

import asyncio
import contextlib
import json
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from nats.aio.client import Client as NATS
from redis.asyncio import Redis
from redis.exceptions import RedisError

from cocopilot import __version__, keys
from cocopilot.bus import connect_nats, ensure_events_stream
from cocopilot.logs import setup_logging
from cocopilot.redis_client import connect_redis
from cocopilot.settings import Settings, get_settings
from cocopilot.timeutil import now_iso

log = logging.getLogger(__name__)


@dataclass
class ServiceContext:
    name: str
    settings: Settings
    redis: Redis
    nats: NATS
    started_at: str = field(default_factory=now_iso)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)


StartFunction = Callable[[ServiceContext], Awaitable[None]]
StopFunction = Callable[[ServiceContext], Awaitable[None]]


async def connect(name: str, settings: Settings) -> ServiceContext:
    redis = await connect_redis(settings.redis_url)
    nc = await connect_nats(settings.nats_url, name=f"{name}-{settings.instance_id}")
    await ensure_events_stream(nc)
    return ServiceContext(name=name, settings=settings, redis=redis, nats=nc)


async def write_heartbeat(context: ServiceContext) -> None:
    settings = context.settings
    seen_at = now_iso()
    record = {
        "service": context.name,
        "instanceId": settings.instance_id,
        "pid": os.getpid(),
        "version": __version__,
        "startedAt": context.started_at,
        "seenAt": seen_at,
        "natsConnected": context.nats.is_connected,
    }
    ttl_s = max(3 * settings.heartbeat_interval_s, 5)
    key = keys.service_heartbeat(context.name, settings.instance_id)
    await context.redis.set(key, json.dumps(record), ex=int(ttl_s))
    if context.nats.is_connected:
        settings.health_dir.mkdir(parents=True, exist_ok=True)
        (settings.health_dir / context.name).write_text(seen_at)


async def heartbeat_loop(context: ServiceContext) -> None:
    while not context.stopping.is_set():
        try:
            await write_heartbeat(context)
        except (RedisError, OSError) as exc:
            log.warning("heartbeat failed", extra={"error": str(exc)})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(context.stopping.wait(), context.settings.heartbeat_interval_s)


async def run_service(name: str, start: StartFunction, stop: StopFunction | None = None) -> None:
    """Connect, call ``start``, keep the heartbeat until SIGTERM or SIGINT, then call ``stop``."""
    settings = get_settings()
    setup_logging(settings.log_level, settings.log_format)
    log.info("service starting", extra={"service": name, "instance_id": settings.instance_id})
    context = await connect(name, settings)

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, context.stopping.set)

    await start(context)
    log.info("service started", extra={"service": name, "instance_id": settings.instance_id})
    await heartbeat_loop(context)

    log.info("service stopping", extra={"service": name})
    if stop is not None:
        await stop(context)
    await context.redis.delete(keys.service_heartbeat(name, settings.instance_id))
    await context.nats.drain()
    await context.redis.aclose()
    log.info("service stopped", extra={"service": name})
