"""Global configuration: stored in Redis, read by every service when it needs a value, so a
change applies without a restart."""

from pydantic import ConfigDict, Field
from redis.asyncio import Redis

from cocopilot import keys
from cocopilot.models import CamelModel


class GlobalConfig(CamelModel):
    # Only the camelCase names that the API documents; strict, so "5" is no number.
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=False)

    max_workers_per_repo: int = Field(
        default=10, ge=1, le=10_000, description="Active workers allowed in one repository"
    )
    max_workers: int = Field(
        default=0, ge=0, le=100_000, description="Active workers allowed in all; 0 for no limit"
    )
    default_agent: str = Field(
        default="demo", description="Agent profile for spawns that name none"
    )


async def load_config(redis: Redis) -> GlobalConfig:
    raw = await redis.get(keys.CONFIG)
    return GlobalConfig.model_validate_json(raw) if raw else GlobalConfig()
