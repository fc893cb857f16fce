"""The forge interface that the pull-request flow calls."""

from dataclasses import dataclass
from typing import Literal, Protocol

from cocopilot.errors import CocopilotError
from cocopilot.models import CheckResult, PrStage, PullRequest, Repository, Worker

MergeMethod = Literal["squash", "merge"]


class ForgeError(CocopilotError):
    status = 502


class MergeConflict(ForgeError):
    """The branch and its base change the same lines; a person or a fix-up must resolve it."""

    status = 409

    def __init__(self, message: str, paths: list[str]) -> None:
        super().__init__(message)
        self.paths = paths


class HeadChanged(ForgeError):
    """The pull request's head moved after its checks ran; they must run again."""

    status = 409


@dataclass(frozen=True)
class OpenedPullRequest:
    number: int
    url: str


class Forge(Protocol):
    async def open_pull_request(
        self, repository: Repository, worker: Worker, title: str, body: str
    ) -> OpenedPullRequest:
        """Push the worker's branch where needed and open its pull request."""
        ...

    async def run_checks(self, repository: Repository, pr: PullRequest) -> list[CheckResult]:
        """Return the checks of the head commit once none is pending; an empty list when the
        repository has no checks."""
        ...

    async def base_commit(self, repository: Repository, pr: PullRequest) -> str: ...

    async def update_branch(self, repository: Repository, pr: PullRequest) -> str:
        """Bring the branch up to date with its base; return the new head commit, or raise
        MergeConflict."""
        ...

    async def merge(self, repository: Repository, pr: PullRequest, method: MergeMethod) -> str:
        """Merge the pull request at its head commit; return the commit on the base branch,
        or raise MergeConflict or HeadChanged."""
        ...

    async def reviews(self, repository: Repository, pr: PullRequest) -> dict[str, str]:
        """Return each reviewer's latest review state; empty where the forge has no reviews."""
        ...

    async def current_stage(self, repository: Repository, pr: PullRequest) -> PrStage | None:
        """Return merged or closed when people did that on the forge, else None."""
        ...
