"""Aggregated metrics, computed by the metrics service from events."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from cocopilot import subjects
from services.api.errors import error_responses
from services.api.state import ApiState, get_state

router = APIRouter(tags=["metrics"])

State = Annotated[ApiState, Depends(get_state)]


@router.get(
    "/metrics",
    summary="Throughput, pull-request cycle time, CI results and tasks per model",
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
