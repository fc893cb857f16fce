"""A worker's output: the last lines, and a live stream of server-sent events."""

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import BaseModel, Field

from cocopilot import keys, store
from cocopilot.models import ACTIVE_STATUSES, Worker
from services.api.errors import error_responses
from services.api.schemas import FlatWorkerNamePath, RepoNamePath, WorkerNamePath
from services.api.state import ApiState, get_state

router = APIRouter(tags=["workers"])

State = Annotated[ApiState, Depends(get_state)]
# As many lines as the workers service keeps per worker.
MAX_TAIL_LINES = 5000
# How long one read waits for new output before the stream checks the worker's status.
POLL_BLOCK_MS = 2000


async def repository_worker(
    state: State,
    repo_name: RepoNamePath,
    worker_name: WorkerNamePath,
) -> Worker:
    return await store.get_repository_worker(state.redis, repo_name, worker_name)


async def named_worker(state: State, name: FlatWorkerNamePath) -> Worker:
    return await store.get_worker(state.redis, name)


class WorkerLogs(BaseModel):
    name: str = Field(examples=["Snickers"])
    status: str = Field(examples=["working"])
    lines: list[str] = Field(examples=[["Running the tests", "12 passed"]])


# An output line and its stream entry id.
OutputEntry = tuple[str, str]


def output_entries(raw: Any) -> list[OutputEntry]:
    return [(str(entry_id), str(fields["line"])) for entry_id, fields in raw]


async def last_entries(state: ApiState, worker: Worker, count: int) -> list[OutputEntry]:
    raw = await state.redis.xrevrange(keys.worker_output(worker.name), count=count)
    return list(reversed(output_entries(raw)))


async def read_tail(state: ApiState, worker: Worker, tail: int) -> WorkerLogs:
    lines = [line for _, line in await last_entries(state, worker, tail)]
    return WorkerLogs(name=worker.name, status=worker.status, lines=lines)


async def follow(state: ApiState, worker: Worker, tail: int) -> AsyncIterator[ServerSentEvent]:
    """Yield the last ``tail`` lines, then each new line as it comes, then an ``end`` event with
    the final status once the agent has stopped."""
    key = keys.worker_output(worker.name)
    entries = await last_entries(state, worker, max(tail, 1))
    last_id = entries[-1][0] if entries else "0-0"
    for entry_id, line in entries[-tail:] if tail else []:
        yield ServerSentEvent(event="line", id=entry_id, raw_data=line)
    while True:
        batches: Any = await state.redis.xread({key: last_id}, count=500, block=POLL_BLOCK_MS)
        for _, batch in batches:
            for entry_id, line in output_entries(batch):
                last_id = entry_id
                yield ServerSentEvent(event="line", id=entry_id, raw_data=line)
        if batches:
            continue
        current = await store.find_worker(state.redis, worker.name)
        if current is None or current.status not in ACTIVE_STATUSES:
            status = "removed" if current is None else str(current.status)
            yield ServerSentEvent(event="end", data={"status": status})
            return


TailQuery = Annotated[int, Query(ge=1, le=MAX_TAIL_LINES, description="Lines to return")]
StreamTailQuery = Annotated[
    int, Query(ge=0, le=MAX_TAIL_LINES, description="Earlier lines to send first")
]
LOGS_DESCRIPTION = "The agent's output, as plain text lines (terminal escape codes removed)."
STREAM_DESCRIPTION = (
    "Server-sent events: `line` for each output line (its text is the data), then `end` "
    'with `{"status": ...}` once the agent has stopped. Follow it with `curl -N`.'
)


@router.get(
    "/repositories/{repoName}/workers/{workerName}/logs",
    summary="Get a worker's last output lines",
    description=LOGS_DESCRIPTION,
    responses=error_responses(400, 404),
)
async def get_repository_worker_logs(
    state: State, worker: Annotated[Worker, Depends(repository_worker)], tail: TailQuery = 100
) -> WorkerLogs:
    return await read_tail(state, worker, tail)


@router.get(
    "/repositories/{repoName}/workers/{workerName}/logs/stream",
    summary="Follow a worker's output",
    description=STREAM_DESCRIPTION,
    response_class=EventSourceResponse,
    responses=error_responses(400, 404),
)
async def stream_repository_worker_logs(
    state: State, worker: Annotated[Worker, Depends(repository_worker)], tail: StreamTailQuery = 0
) -> AsyncIterator[ServerSentEvent]:
    async for event in follow(state, worker, tail):
        yield event


@router.get(
    "/workers/{name}/logs",
    summary="Get a worker's last output lines",
    description=LOGS_DESCRIPTION,
    responses=error_responses(400, 404),
)
async def get_worker_logs(
    state: State, worker: Annotated[Worker, Depends(named_worker)], tail: TailQuery = 100
) -> WorkerLogs:
    return await read_tail(state, worker, tail)


@router.get(
    "/workers/{name}/logs/stream",
    summary="Follow a worker's output",
    description=STREAM_DESCRIPTION,
    response_class=EventSourceResponse,
    responses=error_responses(400, 404),
)
async def stream_worker_logs(
    state: State, worker: Annotated[Worker, Depends(named_worker)], tail: StreamTailQuery = 0
) -> AsyncIterator[ServerSentEvent]:
    async for event in follow(state, worker, tail):
        yield event
