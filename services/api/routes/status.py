"""System health: the api process, Redis, workers by status, and every service's heartbeat."""

import json
import os
from collections import Counter
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends
from pydantic import ConfigDict, Field
from redis.exceptions import RedisError

from cocopilot import __version__, keys, store
from cocopilot.models import CamelModel
from cocopilot.timeutil import parse_time, utc_now
from services.api.state import ApiState, get_state

router = APIRouter(tags=["status"])

State = Annotated[ApiState, Depends(get_state)]

SERVICES = ("workers", "webhooks", "metrics")


class DaemonStatus(CamelModel):
    """The api process that serves the request."""

    up: bool = True
    status: Literal["running"] = "running"
    pid: int = Field(examples=[12345])
    uptime_seconds: int = Field(examples=[3600])
    started_at: str = Field(examples=["2026-01-28T11:00:00.000Z"])


class Connection(CamelModel):
    connected: bool


class WorkerCounts(CamelModel):
    total: int = Field(examples=[5])
    by_status: dict[str, int] = Field(examples=[{"working": 3, "completed": 1, "stuck": 1}])


class ServiceInstance(CamelModel):
    """One running process of a service, from the heartbeat it writes to Redis."""

    # A service may report more fields than these, and they are passed on unchanged.
    model_config = ConfigDict(extra="allow")

    service: str = Field(examples=["workers"])
    instance_id: str = Field(examples=["workers-1"])
    pid: int
    version: str
    started_at: str
    seen_at: str = Field(description="Time of the last heartbeat")
    nats_connected: bool


class ServiceHealth(CamelModel):
    healthy: bool = Field(description="At least one instance runs and is connected to NATS")
    nats_connected: bool | None = Field(default=None, description="Only for the api")
    instances: list[ServiceInstance] | None = Field(
        default=None, description="For the background services"
    )


class SystemStatus(CamelModel):
    """Fields after ``redis`` are left out when Redis cannot be reached."""

    daemon: DaemonStatus
    redis: Connection
    nats: Connection | None = None
    workers: WorkerCounts | None = None
    repositories: int | None = Field(default=None, examples=[2])
    services: dict[str, ServiceHealth] | None = None
    version: str = Field(examples=["1.0.0"])


async def read_heartbeats(state: ApiState) -> dict[str, list[dict[str, Any]]]:
    """Return the live instances of each background service, from their heartbeat keys."""
    instances: dict[str, list[dict[str, Any]]] = {service: [] for service in SERVICES}
    found = [key async for key in state.redis.scan_iter(match=keys.SERVICE_HEARTBEAT_PATTERN)]
    for raw in await state.redis.mget(found) if found else []:
        if raw:
            record = json.loads(raw)
            instances.setdefault(record["service"], []).append(record)
    return instances


def service_health(instances: list[dict[str, Any]]) -> ServiceHealth:
    return ServiceHealth(
        healthy=any(instance.get("natsConnected") for instance in instances),
        instances=[ServiceInstance.model_validate(instance) for instance in instances],
    )


def daemon_status(state: ApiState) -> DaemonStatus:
    started = parse_time(state.started_at)
    return DaemonStatus(
        pid=os.getpid(),
        uptime_seconds=int((utc_now() - started).total_seconds()),
        started_at=state.started_at,
    )


@router.get(
    "/status",
    summary="System health",
    response_model_exclude_none=True,
)
async def get_status(state: State) -> SystemStatus:
    daemon = daemon_status(state)
    try:
        workers = await store.list_workers(state.redis)
        repositories = await state.redis.scard(keys.REPOSITORIES)
        heartbeats = await read_heartbeats(state)
    except (RedisError, OSError):
        return SystemStatus(daemon=daemon, redis=Connection(connected=False), version=__version__)

    nats_connected = state.nats.is_connected
    services = {"api": ServiceHealth(healthy=nats_connected, nats_connected=nats_connected)}
    services |= {name: service_health(found) for name, found in heartbeats.items()}
    by_status = Counter(str(worker.status) for worker in workers)
    return SystemStatus(
        daemon=daemon,
        redis=Connection(connected=True),
        nats=Connection(connected=nats_connected),
        workers=WorkerCounts(total=len(workers), by_status=dict(by_status)),
        repositories=repositories,
        services=services,
        version=__version__,
    )
