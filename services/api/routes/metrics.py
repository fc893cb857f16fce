"""Aggregated metrics, computed by the metrics service from events (see docs/metrics.md)."""

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from cocopilot import subjects
from services.api.errors import error_responses
from services.api.state import ApiState, get_state

router = APIRouter(tags=["metrics"])

State = Annotated[ApiState, Depends(get_state)]


class HourCount(BaseModel):
    hour: str = Field(examples=["2026-01-28T12:00"], description="UTC hour, YYYY-MM-DDTHH:00")
    count: int = Field(examples=[2], description="worker.completed events in the hour")


class DayCycleTime(BaseModel):
    date: str = Field(examples=["2026-01-28"], description="UTC day of the merges")
    avgHours: float = Field(examples=[2.3], description="Mean creation-to-merge time, hours")


class CiResultCount(BaseModel):
    status: Literal["pass", "fail"]
    count: int = Field(examples=[12])


class TokenCounts(BaseModel):
    input: int
    output: int


class ModelUsage(BaseModel):
    model: str = Field(examples=["claude-sonnet-4-5"])
    tokens: int = Field(examples=[8], description="Tasks started with this model, not tokens")
    tokenCounts: TokenCounts | None = Field(
        default=None, description="Real token counts, present only where workers reported them"
    )


class Metrics(BaseModel):
    workerThroughput: list[HourCount] = Field(description="The last 24 hours, oldest first")
    prCycleTime: list[DayCycleTime] = Field(description="Days with merges, oldest first")
    ciSuccessRate: list[CiResultCount]
    tokenUsage: list[ModelUsage] = Field(description="Most tasks first")


@router.get(
    "/metrics",
    summary="Throughput, pull-request cycle time, CI results and tasks per model",
    response_model=Metrics,
    response_model_exclude_unset=True,
    responses=error_responses(400, 503, 504),
)
async def get_metrics(
    state: State,
    repo_name: Annotated[
        str | None, Query(alias="repoName", description="Only this repository's events")
    ] = None,
) -> dict[str, Any]:
    result: dict[str, Any] = await state.command(subjects.GET_METRICS, {"repoName": repo_name})
    return result
