"""Pull requests of a repository, opened for workers that completed with commits."""

from typing import Annotated

from fastapi import APIRouter, Depends

from cocopilot import store
from cocopilot.models import PullRequest
from services.api.errors import error_responses
from services.api.schemas import RepoNamePath
from services.api.state import ApiState, get_state

router = APIRouter(tags=["pull requests"])

State = Annotated[ApiState, Depends(get_state)]


@router.get(
    "/repositories/{repoName}/prs",
    summary="List a repository's pull requests",
    description="Stages: open, ci_running, ci_failed, ready, merged, closed. Checks stand for "
    "checksCommit only; a new head commit runs them again.",
    responses=error_responses(400, 404),
)
async def list_pull_requests(state: State, repo_name: RepoNamePath) -> list[PullRequest]:
    await store.get_repository(state.redis, repo_name)
    return await store.list_pull_requests(state.redis, repo_name)
