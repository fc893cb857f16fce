"""The local forge: no network. Pull requests are records, CI is a command run in a clean
checkout of the head commit, and a merge is a squash or merge commit onto the local base
branch of the clone."""

import asyncio
import contextlib
import logging
import os
import time
import uuid
from pathlib import Path

from redis.asyncio import Redis

from cocopilot import keys
from cocopilot.config import load_config
from cocopilot.models import CheckResult, PrStage, PullRequest, Repository, Worker
from services.workers import git
from services.workers.forges.base import HeadChanged, MergeConflict, MergeMethod, OpenedPullRequest

log = logging.getLogger(__name__)

CI_CHECK_NAME = "ci"
EXCERPT_CHARS = 4000
MANUAL_MERGE_CHECK_S = 10.0
MERGE_IDENTITY = {
    "GIT_AUTHOR_NAME": "CoCoPilot merge queue",
    "GIT_AUTHOR_EMAIL": "merge-queue@cocopilot.invalid",
    "GIT_COMMITTER_NAME": "CoCoPilot merge queue",
    "GIT_COMMITTER_EMAIL": "merge-queue@cocopilot.invalid",
}


class LocalForge:
    def __init__(self, redis: Redis, data_dir: Path) -> None:
        self.redis = redis
        self.ci_dir = data_dir / "ci"
        # When each pull request was last checked for a merge made by hand (monotonic seconds).
        self.stage_checked_at: dict[tuple[str, int], float] = {}

    async def open_pull_request(
        self, repository: Repository, worker: Worker, title: str, body: str
    ) -> OpenedPullRequest:
        number = int(await self.redis.incr(keys.pull_request_sequence(repository.name)))
        return OpenedPullRequest(number, f"local://{repository.name}/pulls/{number}")

    async def run_checks(self, repository: Repository, pr: PullRequest) -> list[CheckResult]:
        if not repository.ci_command:
            return []
        checkout = self.ci_dir / repository.name / f"{pr.number}-{uuid.uuid4().hex[:8]}"
        repo = Path(repository.path)
        await asyncio.to_thread(checkout.parent.mkdir, parents=True, exist_ok=True)
        await git.add_worktree(repo, checkout, pr.head_commit)
        timeout_s = (await load_config(self.redis)).ci_timeout
        try:
            code, output = await self._run_ci(repository.ci_command, checkout, timeout_s)
        finally:
            await git.remove_worktree(repo, checkout)
        log_path = self.ci_dir / repository.name / f"{pr.number}-{pr.head_commit[:12]}.log"
        await asyncio.to_thread(log_path.write_text, output)
        excerpt = output[-EXCERPT_CHARS:]
        if code == 0:
            return [CheckResult(name=CI_CHECK_NAME, conclusion="success", excerpt=excerpt)]
        return [CheckResult(name=CI_CHECK_NAME, conclusion="failure", excerpt=excerpt)]

    async def _run_ci(self, argv: list[str], cwd: Path, timeout_s: float) -> tuple[int, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("COCOPILOT_")}
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                cwd=cwd,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            return 127, f"could not start the CI command {argv[0]!r}: {exc}"
        try:
            stdout, _ = await asyncio.wait_for(process.communicate(), timeout_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, 9)
            await process.wait()
            return 124, f"CI timed out after {timeout_s:g} s (ciTimeout)"
        return process.returncode or 0, stdout.decode(errors="replace")

    async def base_commit(self, repository: Repository, pr: PullRequest) -> str:
        commit = await git.resolve_commit(Path(repository.path), f"refs/heads/{pr.base_branch}")
        if commit is None:
            raise MergeConflict(f'base branch "{pr.base_branch}" is gone', [])
        return commit

    async def update_branch(self, repository: Repository, pr: PullRequest) -> str:
        repo = Path(repository.path)
        base = await self.base_commit(repository, pr)
        tree, conflicts = await git.merge_trees(repo, pr.head_commit, base)
        if tree is None:
            raise MergeConflict(f"{pr.branch} conflicts with {pr.base_branch}", conflicts)
        message = f"Merge {pr.base_branch} into {pr.branch}"
        head = await git.commit_tree(repo, tree, [pr.head_commit, base], message, MERGE_IDENTITY)
        await self._move(repo, f"refs/heads/{pr.branch}", head, pr.head_commit)
        return head

    async def merge(self, repository: Repository, pr: PullRequest, method: MergeMethod) -> str:
        repo = Path(repository.path)
        current_head = await git.resolve_commit(repo, f"refs/heads/{pr.branch}")
        if current_head != pr.head_commit:
            raise HeadChanged(f"{pr.branch} moved to {current_head} after its checks ran")
        base = await self.base_commit(repository, pr)
        tree, conflicts = await git.merge_trees(repo, base, pr.head_commit)
        if tree is None:
            raise MergeConflict(f"{pr.branch} conflicts with {pr.base_branch}", conflicts)
        message = f"{pr.title} (#{pr.number})"
        parents = [base] if method == "squash" else [base, pr.head_commit]
        commit = await git.commit_tree(repo, tree, parents, message, MERGE_IDENTITY)
        await self._move(repo, f"refs/heads/{pr.base_branch}", commit, base)
        return commit

    async def _move(self, repo: Path, ref: str, new: str, old: str) -> None:
        try:
            await git.update_ref(repo, ref, new, old)
        except git.GitError as exc:
            raise HeadChanged(f"{ref} moved while it was being updated: {exc.message}") from exc

    async def reviews(self, repository: Repository, pr: PullRequest) -> dict[str, str]:
        return {}  # local pull requests are records, which no person reviews

    async def current_stage(self, repository: Repository, pr: PullRequest) -> PrStage | None:
        """Notice a branch that a person merged into the base branch by hand, looking at most
        once per MANUAL_MERGE_CHECK_S, since the merge queue asks every second."""
        key = (repository.name, pr.number)
        now = time.monotonic()
        if now - self.stage_checked_at.get(key, -MANUAL_MERGE_CHECK_S) < MANUAL_MERGE_CHECK_S:
            return None
        self.stage_checked_at[key] = now
        base = await git.resolve_commit(Path(repository.path), f"refs/heads/{pr.base_branch}")
        if base and await git.is_ancestor(Path(repository.path), pr.head_commit, base):
            return PrStage.MERGED
        return None
