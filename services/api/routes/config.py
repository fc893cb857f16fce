"""Global configuration: read, and changed by a validated deep merge."""

import json
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends
from pydantic import ValidationError
from redis.asyncio.client import Pipeline
from redis.exceptions import WatchError

from cocopilot import keys
from cocopilot.config import GlobalConfig, load_config
from cocopilot.errors import InvalidRequest
from services.api.errors import error_responses
from services.api.state import ApiState, get_state

router = APIRouter(tags=["config"])

State = Annotated[ApiState, Depends(get_state)]


def deep_merge(base: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    """Return ``base`` with ``change`` merged in: objects merge key by key, anything else
    replaces."""
    merged = dict(base)
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def validate_config(document: dict[str, Any]) -> GlobalConfig:
    try:
        return GlobalConfig.model_validate(document)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error["loc"])
        if error["type"] == "extra_forbidden":
            raise InvalidRequest(f"unknown config key {field!r}") from None
        raise InvalidRequest(f"invalid config value for {field!r}: {error['msg']}") from None


@router.get("/config", summary="Get the global configuration")
async def get_config(state: State) -> GlobalConfig:
    return await load_config(state.redis)


@router.patch(
    "/config",
    summary="Change the global configuration",
    description="A deep merge into the stored configuration. Unknown keys and wrong types are "
    "a 400 naming the field, and change nothing. Every service applies the result from its "
    "next use of a value, with no restart.",
    responses=error_responses(400),
)
async def patch_config(
    state: State,
    change: Annotated[dict[str, Any], Body(examples=[{"maxWorkersPerRepo": 5}])],
) -> GlobalConfig:
    # WATCH makes the read-merge-write one step: a concurrent change makes EXEC fail and we
    # merge again on top of it, so no change is lost.
    async with state.redis.pipeline(transaction=True) as pipe:
        while True:
            try:
                return await _merge_once(pipe, change)
            except WatchError:
                continue


async def _merge_once(pipe: Pipeline, change: dict[str, Any]) -> GlobalConfig:
    await pipe.watch(keys.CONFIG)
    raw = await pipe.get(keys.CONFIG)
    current = GlobalConfig.model_validate_json(raw) if raw else GlobalConfig()
    merged = validate_config(deep_merge(current.model_dump(by_alias=True), change))
    pipe.multi()  # type: ignore[no-untyped-call]
    pipe.set(keys.CONFIG, json.dumps(merged.model_dump(by_alias=True)))
    await pipe.execute()
    return merged
