"""Workers: the flat routes under ``/workers`` and the repository-scoped ones."""

from typing import Annotated

from fastapi import APIRouter, Depends, Response, status
from pydantic import BaseModel, Field

from cocopilot import store, subjects
from cocopilot.commands import DEFAULT_NUDGE, Nudge, SpawnWorker, WorkerSpec
from cocopilot.errors import ServiceUnavailable
from cocopilot.models import WorkerView
from services.api.errors import error_responses
from services.api.schemas import FlatWorkerNamePath, RepoNamePath, WorkerNamePath
from services.api.state import ApiState, get_state

router = APIRouter(tags=["workers"])

State = Annotated[ApiState, Depends(get_state)]


async def spawn(state: ApiState, request: SpawnWorker) -> WorkerView:
    result = await state.command(subjects.SPAWN_WORKER, request.model_dump(by_alias=True))
    return WorkerView.model_validate(result)


async def stop(state: ApiState, name: str) -> None:
    worker = await store.get_worker(state.redis, name)
    try:
        await state.command(subjects.worker_command(worker.instance_id, "stop"), {"name": name})
    except ServiceUnavailable:
        # The replica that ran the worker is gone; any replica can clean up after it.
        await state.command(subjects.STOP_ORPHANED_WORKER, {"name": name})


@router.post(
    "/workers",
    status_code=status.HTTP_201_CREATED,
    summary="Spawn a worker",
    responses=error_responses(400, 404, 409, 503, 504),
)
async def spawn_worker(body: SpawnWorker, state: State) -> WorkerView:
    return await spawn(state, body)


@router.get("/workers", summary="List workers of every repository")
async def list_workers(state: State) -> list[WorkerView]:
    return [worker.view() for worker in await store.list_workers(state.redis)]


@router.get("/workers/{name}", summary="Get a worker by name", responses=error_responses(400, 404))
async def get_worker(name: FlatWorkerNamePath, state: State) -> WorkerView:
    return (await store.get_worker(state.redis, name)).view()


@router.delete(
    "/workers/{name}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Stop and remove a worker",
    responses=error_responses(400, 404, 503, 504),
)
async def delete_worker(name: FlatWorkerNamePath, state: State) -> Response:
    await stop(state, name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/repositories/{repoName}/workers",
    status_code=status.HTTP_201_CREATED,
    summary="Spawn a worker in a repository",
    responses=error_responses(400, 404, 409, 503, 504),
)
async def spawn_repository_worker(
    repo_name: RepoNamePath,
    body: WorkerSpec,
    state: State,
) -> WorkerView:
    request = SpawnWorker.model_validate({**body.model_dump(by_alias=True), "repoName": repo_name})
    return await spawn(state, request)


@router.get(
    "/repositories/{repoName}/workers",
    summary="List a repository's workers",
    responses=error_responses(400, 404),
)
async def list_repository_workers(repo_name: RepoNamePath, state: State) -> list[WorkerView]:
    await store.get_repository(state.redis, repo_name)
    return [worker.view() for worker in await store.list_workers(state.redis, repo_name)]


@router.get(
    "/repositories/{repoName}/workers/{workerName}",
    summary="Get a repository's worker",
    responses=error_responses(400, 404),
)
async def get_repository_worker(
    repo_name: RepoNamePath,
    worker_name: WorkerNamePath,
    state: State,
) -> WorkerView:
    return (await store.get_repository_worker(state.redis, repo_name, worker_name)).view()


@router.delete(
    "/repositories/{repoName}/workers/{workerName}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Stop and remove a repository's worker",
    responses=error_responses(400, 404, 503, 504),
)
async def delete_repository_worker(
    repo_name: RepoNamePath,
    worker_name: WorkerNamePath,
    state: State,
) -> Response:
    await store.get_repository_worker(state.redis, repo_name, worker_name)
    await stop(state, worker_name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


class NudgeResult(BaseModel):
    name: str = Field(examples=["Snickers"])
    message: str = Field(examples=[DEFAULT_NUDGE])
    nudged_at: str = Field(alias="nudgedAt", examples=["2026-01-28T12:30:00.000Z"])


@router.post(
    "/repositories/{repoName}/workers/{workerName}/nudge",
    summary="Type a nudge into a worker's session",
    description="The body is optional; without a message the standard nudge is sent. "
    "409 when the worker's agent is not running.",
    responses=error_responses(400, 404, 409, 503, 504),
)
async def nudge_worker(
    repo_name: RepoNamePath,
    worker_name: WorkerNamePath,
    state: State,
    body: Nudge | None = None,
) -> NudgeResult:
    worker = await store.get_repository_worker(state.redis, repo_name, worker_name)
    payload = {"name": worker.name, "body": (body or Nudge()).model_dump(), "by": "api"}
    result = await state.command(subjects.worker_command(worker.instance_id, "nudge"), payload)
    return NudgeResult.model_validate(result)
