"""``GET /healthz``: open to container healthchecks even when a token is set."""

from typing import Literal

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from redis.exceptions import RedisError

from services.api.state import ApiState, get_state

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    redis: bool
    nats: bool


@router.get(
    "/healthz",
    summary="Liveness of the api and its Redis and NATS connections",
    response_model=Health,
    responses={503: {"model": Health, "description": "Redis or NATS is not reachable"}},
)
async def healthz(state: ApiState = Depends(get_state)) -> JSONResponse:  # noqa: B008
    try:
        redis_ok = bool(await state.redis.ping())
    except (RedisError, OSError):
        redis_ok = False
    nats_ok = state.nats.is_connected
    healthy = redis_ok and nats_ok
    health = Health(status="ok" if healthy else "degraded", redis=redis_ok, nats=nats_ok)
    return JSONResponse(health.model_dump(), status_code=200 if healthy else 503)
