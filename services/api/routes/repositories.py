"""Tracked repositories."""

from typing import Annotated

from fastapi import APIRouter, Depends, Response, status

from cocopilot import store, subjects
from cocopilot.commands import AddRepository
from cocopilot.models import RepositoryView, WorkerView
from services.api.errors import error_responses
from services.api.schemas import RepoNamePath
from services.api.state import ApiState, get_state

router = APIRouter(tags=["repositories"])

State = Annotated[ApiState, Depends(get_state)]


class RepositoryDetails(RepositoryView):
    workers: list[WorkerView]


@router.post(
    "/repositories",
    status_code=status.HTTP_201_CREATED,
    summary="Clone a repository and track it",
    responses=error_responses(400, 409, 503, 504),
)
async def add_repository(body: AddRepository, state: State) -> RepositoryView:
    # Cloning takes as long as the repository needs, so this command gets the clone's time limit.
    result = await state.command(
        subjects.ADD_REPOSITORY,
        body.model_dump(by_alias=True),
        timeout_s=state.settings.clone_timeout_s + state.settings.command_timeout_s,
    )
    return RepositoryView.model_validate(result)


@router.get("/repositories", summary="List tracked repositories")
async def list_repositories(state: State) -> list[RepositoryView]:
    return [repository.view() for repository in await store.list_repositories(state.redis)]


@router.get(
    "/repositories/{repoName}",
    summary="Get a repository with its workers",
    responses=error_responses(400, 404),
)
async def get_repository(repo_name: RepoNamePath, state: State) -> RepositoryDetails:
    repository = await store.get_repository(state.redis, repo_name)
    workers = await store.list_workers(state.redis, repo_name)
    return RepositoryDetails(
        **repository.view().model_dump(), workers=[worker.view() for worker in workers]
    )


@router.delete(
    "/repositories/{repoName}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Stop tracking a repository and delete its clone",
    responses=error_responses(400, 404, 409, 503, 504),
)
async def remove_repository(repo_name: RepoNamePath, state: State) -> Response:
    await store.get_repository(state.redis, repo_name)
    await state.command(subjects.REMOVE_REPOSITORY, {"name": repo_name})
    return Response(status_code=status.HTTP_204_NO_CONTENT)
