"""Global configuration: read, and changed by a validated deep merge."""

import json
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends
from pydantic import ValidationError
from redis.asyncio.client import Pipeline
from redis.exceptions import WatchError

from cocopilot import keys
from cocopilot.commands import check_unicode
from cocopilot.config import GlobalConfig, load_config
from cocopilot.errors import CocopilotError, InvalidRequest
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
        raise InvalidRequest(describe_config_error(exc.errors()[0])) from None


def describe_config_error(error: Any) -> str:
    field = ".".join(str(part) for part in error["loc"])
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, CocopilotError):
        return cause.message
    if error["type"] == "extra_forbidden":
        return f"unknown config key {field!r}"
    return f"invalid config value for {field!r}: {error['msg']}"


def config_change_schema() -> dict[str, Any]:
    """Return the JSON Schema of a PATCH body: any of the configuration's keys, none required."""
    schema = GlobalConfig.model_json_schema(by_alias=True)
    schema.pop("required", None)
    for field in schema["properties"].values():
        field.pop("default", None)
    schema["title"] = "ConfigChange"
    schema["examples"] = [{"maxWorkersPerRepo": 5}]
    return schema


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
    # The body is read as a plain object to merge; this documents which keys it may hold.
    openapi_extra={
        "requestBody": {"content": {"application/json": {"schema": config_change_schema()}}}
    },
)
async def patch_config(
    state: State,
    change: Annotated[dict[str, Any], Body(examples=[{"maxWorkersPerRepo": 5}])],
) -> GlobalConfig:
    check_unicode(change)
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
