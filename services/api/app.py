"""The FastAPI application: the only service that serves HTTP."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from ipaddress import ip_address

from fastapi import APIRouter, Depends, FastAPI

from cocopilot import __version__
from cocopilot.bus import connect_nats, ensure_events_stream
from cocopilot.redis_client import connect_redis
from cocopilot.settings import Settings, get_settings
from cocopilot.timeutil import now_iso
from services.api.errors import install_error_handlers
from services.api.limits import BodySizeLimit
from services.api.request_metrics import install_request_metrics
from services.api.routes import (
    agents,
    config,
    events,
    health,
    logs,
    metrics,
    prometheus,
    pulls,
    repositories,
    status,
    webhooks,
    workers,
)
from services.api.security import BearerTokenAuth, bearer_scheme
from services.api.state import ApiState

log = logging.getLogger(__name__)


def warn_when_open(settings: Settings) -> None:
    if settings.api_token:
        return
    try:
        loopback = ip_address(settings.host).is_loopback
    except ValueError:
        loopback = settings.host == "localhost"
    if not loopback:
        log.warning(
            "COCOPILOT_API_TOKEN is not set and the api listens beyond loopback: "
            "anyone who reaches the port can run agents",
            extra={"host": settings.host},
        )


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    warn_when_open(settings)
    redis = await connect_redis(settings.redis_url)
    nc = await connect_nats(settings.nats_url, name=f"api-{settings.instance_id}")
    await ensure_events_stream(nc)
    app.state.api = ApiState(settings=settings, redis=redis, nats=nc, started_at=now_iso())
    log.info("api started", extra={"host": settings.host, "port": settings.port})
    yield
    await nc.drain()
    await redis.aclose()
    log.info("api stopped")


def create_app(settings: Settings | None = None) -> FastAPI:
    app = FastAPI(
        title="CoCoPilot",
        version=__version__,
        description="Run many AI coding agents at once on tracked git repositories.",
        lifespan=lifespan,
    )
    app.state.settings = settings or get_settings()
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit)
    # Added after the size limit, so it runs first: a request without the token is not read.
    app.add_middleware(BearerTokenAuth, token=app.state.settings.api_token)
    install_request_metrics(app)

    api = APIRouter(prefix="/api/v1", dependencies=[Depends(bearer_scheme)])
    for module in (
        workers,
        logs,
        pulls,
        repositories,
        agents,
        config,
        webhooks,
        status,
        metrics,
        events,
    ):
        api.include_router(module.router)
    app.include_router(api)
    app.include_router(health.router)
    app.include_router(prometheus.router)
    return app
