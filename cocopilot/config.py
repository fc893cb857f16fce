"""Global configuration: stored in Redis, read by every service when it needs a value, so a
change applies without a restart."""

from functools import partial
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Field, WithJsonSchema, model_validator
from redis.asyncio import Redis

from cocopilot import keys
from cocopilot.commands import NAME_SCHEMA
from cocopilot.models import CamelModel
from cocopilot.validation import check_name

# Upper bound of the settings in seconds: a larger value cannot mean anything useful, and one
# past what a timer takes would make the services fail when they apply it.
MAX_SECONDS = 30 * 24 * 3600

AgentName = Annotated[
    str, AfterValidator(partial(check_name, field="defaultAgent")), WithJsonSchema(NAME_SCHEMA)
]


class GlobalConfig(CamelModel):
    # Only the camelCase names that the API documents; strict, so "5" is no number.
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=False)

    @model_validator(mode="before")
    @classmethod
    def _whole_floats_to_int(cls, data: Any) -> Any:
        """Take 5.0 as 5 where an integer is expected, as JSON Schema does; 5.5 stays invalid."""
        if not isinstance(data, dict):
            return data
        integers = {field.alias for field in cls.model_fields.values() if field.annotation is int}
        return {
            key: int(value)
            if key in integers and isinstance(value, float) and value.is_integer()
            else value
            for key, value in data.items()
        }

    max_workers_per_repo: int = Field(
        default=10, ge=1, le=10_000, description="Active workers allowed in one repository"
    )
    max_workers: int = Field(
        default=0, ge=0, le=100_000, description="Active workers allowed in all; 0 for no limit"
    )
    default_agent: AgentName = Field(
        default="demo", description="Agent profile for spawns that name none", examples=["demo"]
    )
    stuck_after: int = Field(
        default=15 * 60,
        ge=1,
        le=MAX_SECONDS,
        description="Seconds with no output and no commit after which a worker is stuck",
    )
    supervisor_nudge_interval: int = Field(
        default=5 * 60,
        ge=1,
        le=MAX_SECONDS,
        description="Seconds between the supervisor's nudges of a stuck worker",
    )
    supervisor_max_nudges: int = Field(
        default=3,
        ge=0,
        le=100,
        description="Nudges of a stuck worker before the supervisor marks it failed",
    )
    merge_method: Literal["squash", "merge"] = Field(
        default="squash", description="How the merge queue merges: a squash or a merge commit"
    )
    max_fixup_attempts: int = Field(
        default=2,
        ge=0,
        le=20,
        description="Fix-up workers spawned for one pull request whose CI failed or that "
        "conflicts, before it is left to a person",
    )
    ci_timeout: int = Field(
        default=30 * 60, ge=1, le=MAX_SECONDS, description="Seconds a local CI run may take"
    )
    worker_timeout: int = Field(
        default=4 * 3600,
        ge=1,
        le=MAX_SECONDS,
        description="Seconds a worker may run before it is stopped as failed",
    )


async def load_config(redis: Redis) -> GlobalConfig:
    raw = await redis.get(keys.CONFIG)
    return GlobalConfig.model_validate_json(raw) if raw else GlobalConfig()
