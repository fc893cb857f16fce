"""``GET /healthz``: open to container healthchecks even when a token is set."""

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError

from services.api.state import ApiState, get_state

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness of the api and its Redis and NATS connections")
async def healthz(state: ApiState = Depends(get_state)) -> JSONResponse:  # noqa: B008
    try:
        redis_ok = bool(await state.redis.ping())
    except (RedisError, OSError):
        redis_ok = False
    nats_ok = state.nats.is_connected
    healthy = redis_ok and nats_ok
    return JSONResponse(
        {"status": "ok" if healthy else "degraded", "redis": redis_ok, "nats": nats_ok},
        status_code=200 if healthy else 503,
    )
