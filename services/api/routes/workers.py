"""Workers: the flat routes under ``/workers`` and the repository-scoped ones."""

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response, status

from cocopilot import store, subjects
from cocopilot.commands import SpawnWorker, WorkerSpec
from cocopilot.errors import NotFound, ServiceUnavailable
from cocopilot.models import WorkerView
from services.api.errors import error_responses
from services.api.state import ApiState, get_state

router = APIRouter(tags=["workers"])

State = Annotated[ApiState, Depends(get_state)]
RepoNameParam = Annotated[str, Path(alias="repoName", description="Name of a tracked repository")]
WorkerNameParam = Annotated[str, Path(alias="workerName")]


async def spawn(state: ApiState, request: SpawnWorker) -> WorkerView:
    result = await state.command(subjects.SPAWN_WORKER, request.model_dump(by_alias=True))
    return WorkerView.model_validate(result)


async def stop(state: ApiState, name: str) -> None:
    worker = await store.get_worker(state.redis, name)
    try:
        await state.command(subjects.stop_worker(worker.instance_id), {"name": name})
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


@router.get("/workers/{name}", summary="Get a worker by name", responses=error_responses(404))
async def get_worker(name: str, state: State) -> WorkerView:
    return (await store.get_worker(state.redis, name)).view()


@router.delete(
    "/workers/{name}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Stop and remove a worker",
    responses=error_responses(404, 503, 504),
)
async def delete_worker(name: str, state: State) -> Response:
    await stop(state, name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


async def get_repository_worker(state: ApiState, repo_name: str, worker_name: str) -> WorkerView:
    await store.get_repository(state.redis, repo_name)
    worker = await store.find_worker(state.redis, worker_name)
    if worker is None or worker.repo_name != repo_name:
        raise NotFound(f'Worker "{worker_name}" not found in repository "{repo_name}"')
    return worker.view()


@router.post(
    "/repositories/{repoName}/workers",
    status_code=status.HTTP_201_CREATED,
    summary="Spawn a worker in a repository",
    responses=error_responses(400, 404, 409, 503, 504),
)
async def spawn_repository_worker(
    repo_name: RepoNameParam,
    body: WorkerSpec,
    state: State,
) -> WorkerView:
    request = SpawnWorker.model_validate({**body.model_dump(), "repo_name": repo_name})
    return await spawn(state, request)


@router.get(
    "/repositories/{repoName}/workers",
    summary="List a repository's workers",
    responses=error_responses(404),
)
async def list_repository_workers(repo_name: RepoNameParam, state: State) -> list[WorkerView]:
    await store.get_repository(state.redis, repo_name)
    return [worker.view() for worker in await store.list_workers(state.redis, repo_name)]


@router.get(
    "/repositories/{repoName}/workers/{workerName}",
    summary="Get a repository's worker",
    responses=error_responses(404),
)
async def get_repository_worker_route(
    repo_name: RepoNameParam,
    worker_name: WorkerNameParam,
    state: State,
) -> WorkerView:
    return await get_repository_worker(state, repo_name, worker_name)


@router.delete(
    "/repositories/{repoName}/workers/{workerName}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Stop and remove a repository's worker",
    responses=error_responses(404, 503, 504),
)
async def delete_repository_worker(
    repo_name: RepoNameParam,
    worker_name: WorkerNameParam,
    state: State,
) -> Response:
    await get_repository_worker(state, repo_name, worker_name)
    await stop(state, worker_name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
