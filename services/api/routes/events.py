"""The activity log: what happened, newest first, kept by the metrics service."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import Field

from cocopilot import subjects
from cocopilot.events import EventType
from cocopilot.models import CamelModel
from services.api.errors import error_responses
from services.api.state import ApiState, get_state

router = APIRouter(tags=["events"])

State = Annotated[ApiState, Depends(get_state)]

MAX_LIMIT = 500


class ActivityEntry(CamelModel):
    id: str = Field(examples=["3f0c9a52-7d2b-4a8e-9c1f-5b6e2d8a7c40"])
    type: EventType
    repo_name: str | None = Field(examples=["my-app"])
    worker_name: str | None = Field(
        default=None, examples=["Snickers"], description="Absent when the event has no worker."
    )
    description: str = Field(examples=["Worker Snickers completed its task"])
    time: str = Field(examples=["2026-01-28T12:05:00.000Z"])


class ActivityPage(CamelModel):
    events: list[ActivityEntry]
    next_cursor: str | None = Field(
        description="Pass as cursor to get the next, older page; null on the last page."
    )


@router.get(
    "/events",
    summary="Activity log, newest first",
    response_model=ActivityPage,
    response_model_exclude_unset=True,
    responses=error_responses(400, 503, 504),
)
async def list_events(
    state: State,
    event_type: Annotated[
        EventType | None, Query(alias="type", description="Only this type")
    ] = None,
    repo_name: Annotated[
        str | None, Query(alias="repoName", description="Only this repository's events")
    ] = None,
    worker_name: Annotated[
        str | None, Query(alias="workerName", description="Only this worker's events")
    ] = None,
    since: Annotated[
        str | None, Query(description="ISO 8601 time; only events at or after it")
    ] = None,
    until: Annotated[str | None, Query(description="ISO 8601 time; only events before it")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Entries per page")] = 50,
    cursor: Annotated[str | None, Query(description="The nextCursor of the previous page")] = None,
) -> dict[str, Any]:
    payload = {
        "type": event_type,
        "repoName": repo_name,
        "workerName": worker_name,
        "since": since,
        "until": until,
        "limit": limit,
        "cursor": cursor,
    }
    result: dict[str, Any] = await state.command(subjects.LIST_EVENTS, payload)
    return result
