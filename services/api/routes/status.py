"""System health: the api process, Redis, workers by status, and every service's heartbeat."""

import json
import os
from collections import Counter
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from redis.exceptions import RedisError

from cocopilot import __version__, keys, store
from cocopilot.timeutil import parse_time, utc_now
from services.api.state import ApiState, get_state

router = APIRouter(tags=["status"])

State = Annotated[ApiState, Depends(get_state)]

SERVICES = ("workers", "webhooks", "metrics")


async def read_heartbeats(state: ApiState) -> dict[str, list[dict[str, Any]]]:
    """Return the live instances of each background service, from their heartbeat keys."""
    instances: dict[str, list[dict[str, Any]]] = {service: [] for service in SERVICES}
    found = [key async for key in state.redis.scan_iter(match=keys.SERVICE_HEARTBEAT_PATTERN)]
    for raw in await state.redis.mget(found) if found else []:
        if raw:
            record = json.loads(raw)
            instances.setdefault(record["service"], []).append(record)
    return instances


def service_health(instances: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "healthy": any(instance.get("natsConnected") for instance in instances),
        "instances": instances,
    }


@router.get("/status", summary="System health")
async def get_status(state: State) -> dict[str, Any]:
    started = parse_time(state.started_at)
    daemon = {
        "up": True,
        "status": "running",
        "pid": os.getpid(),
        "uptimeSeconds": int((utc_now() - started).total_seconds()),
        "startedAt": state.started_at,
    }
    try:
        workers = await store.list_workers(state.redis)
        repositories = await state.redis.scard(keys.REPOSITORIES)
        heartbeats = await read_heartbeats(state)
    except (RedisError, OSError):
        return {"daemon": daemon, "redis": {"connected": False}, "version": __version__}

    by_status = Counter(str(worker.status) for worker in workers)
    services = {
        "api": {"healthy": state.nats.is_connected, "natsConnected": state.nats.is_connected}
    }
    services |= {name: service_health(found) for name, found in heartbeats.items()}
    return {
        "daemon": daemon,
        "redis": {"connected": True},
        "nats": {"connected": state.nats.is_connected},
        "workers": {"total": len(workers), "byStatus": dict(by_status)},
        "repositories": repositories,
        "services": services,
        "version": __version__,
    }
