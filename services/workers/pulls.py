"""From a completed worker to a merged pull request.

A worker that completes with commits past the commit it started from gets a pull request
(``pr.created``). Its checks run for the head commit (``ci.failed`` or ``ci.passed``); results
for an older head are dropped. In a repository whose ``mergeMode`` is ``queue``, the merge queue
(the Temperer) merges ready pull requests in order of their numbers, first bringing a branch
that fell behind its base up to date, which makes its checks run again. A failed check or a
conflict sends a fix-up task to a new worker that starts from the pull request's branch. Its
commits then move that branch forward and the checks run again, at most ``maxFixupAttempts``
times. In ``manual`` mode the PR shepherd (the Enrober) runs the checks and notices merges made
by people, but never merges. A merge publishes ``pr.merged`` and sets the worker ``merged``.
"""

import asyncio
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cocopilot import bus, keys, store
from cocopilot.config import load_config
from cocopilot.events import Event, EventType
from cocopilot.models import (
    OPEN_PR_STAGES,
    PrStage,
    PullRequest,
    Repository,
    Worker,
    WorkerStatus,
)
from cocopilot.timeutil import now_iso
from services.workers import git
from services.workers.agents import MERGE_QUEUE
from services.workers.forges.base import Forge, ForgeError, HeadChanged, MergeConflict
from services.workers.forges.github import GitHubForge
from services.workers.forges.local import LocalForge

if TYPE_CHECKING:
    from services.workers.manager import WorkerManager

log = logging.getLogger(__name__)

QUEUE_INTERVAL_S = 1.0
# How long a replica's hold on a repository's merge queue lasts without renewal.
QUEUE_LEASE_S = 10.0


class PullRequestFlow:
    def __init__(self, manager: "WorkerManager") -> None:
        self.manager = manager
        self.redis = manager.redis
        self.forges: dict[str, Forge] = {
            "local": LocalForge(manager.redis, manager.settings.data_dir),
            "github": GitHubForge(manager.redis, manager.settings),
        }
        self.checking: dict[tuple[str, int], asyncio.Task[None]] = {}
        # The last merge failure logged per pull request, so a failure that repeats on every
        # pass of the queue is logged once.
        self.merge_failures: dict[tuple[str, int], str] = {}

    def forge(self, repository: Repository) -> Forge:
        try:
            return self.forges[repository.forge]
        except KeyError:
            raise ForgeError(f"forge {repository.forge!r} is not available") from None

    # Records

    async def save(self, pr: PullRequest) -> PullRequest:
        pr = pr.model_copy(update={"updated_at": now_iso()})
        await self.redis.hset(keys.pull_requests(pr.repo_name), str(pr.number), pr.to_json())
        return pr

    async def load(self, repo_name: str, number: int) -> PullRequest | None:
        raw = await self.redis.hget(keys.pull_requests(repo_name), str(number))
        return PullRequest.model_validate_json(raw) if raw else None

    async def publish(self, event_type: EventType, pr: PullRequest, **extra: Any) -> None:
        data = {
            "worker": pr.worker,
            "number": pr.number,
            "url": pr.url,
            "branch": pr.branch,
            "baseBranch": pr.base_branch,
            "headCommit": pr.head_commit,
            "createdAt": pr.created_at,
            **extra,
        }
        event = Event(type=event_type, repoName=pr.repo_name, data=data)
        await bus.publish_event(self.manager.context.nats, event)

    # Opening

    async def on_completed(self, worker: Worker) -> None:
        """Open a pull request for a completed worker's commits, or move its fix-up target."""
        repository = await store.find_repository(self.redis, worker.repo_name)
        if repository is None or worker.base_commit is None:
            return
        repo = Path(repository.path)
        head = await git.resolve_commit(repo, f"refs/heads/{worker.branch}")
        if head is None or head == worker.base_commit:
            log.info("no commits: no pull request", extra={"worker": worker.name})
            return
        if worker.fixup_of is not None:
            await self._apply_fixup(repository, worker, head)
            return
        await self._open(repository, worker, head)

    async def _open(self, repository: Repository, worker: Worker, head: str) -> None:
        title = worker.task.strip().splitlines()[0][:72]
        body = f"{worker.task}\n\nWorker: {worker.name} (agent {worker.agent})"
        opened = await self.forge(repository).open_pull_request(repository, worker, title, body)
        now = now_iso()
        pr = PullRequest(
            number=opened.number,
            repo_name=repository.name,
            worker=worker.name,
            title=title,
            url=opened.url,
            branch=worker.branch,
            base_branch=worker.base_branch,
            head_commit=head,
            stage=PrStage.OPEN,
            created_at=now,
            updated_at=now,
        )
        pr = await self.save(pr)
        await self.manager.updater.update(worker.name, pr_number=pr.number, pr_url=pr.url)
        await self.publish(EventType.PR_CREATED, pr)
        log.info("pull request opened", extra={"worker": worker.name, "pr": pr.number})
        self.start_checks(pr)

    async def _apply_fixup(self, repository: Repository, worker: Worker, head: str) -> None:
        """Move the fixed pull request's branch to the fix-up worker's commits."""
        assert worker.fixup_of is not None
        pr = await self.load(repository.name, worker.fixup_of)
        if pr is None or pr.stage not in OPEN_PR_STAGES:
            return
        repo = Path(repository.path)
        if not await git.is_ancestor(repo, pr.head_commit, head):
            log.warning("fix-up does not build on the pull request", extra={"worker": worker.name})
            return
        await git.update_ref(repo, f"refs/heads/{pr.branch}", head, pr.head_commit)
        pr = await self.save(pr.model_copy(update={"head_commit": head, "stage": PrStage.OPEN}))
        log.info("fix-up applied", extra={"worker": worker.name, "pr": pr.number})
        self.start_checks(pr)

    # Checks

    def start_checks(self, pr: PullRequest) -> None:
        key = (pr.repo_name, pr.number)
        running = self.checking.get(key)
        if running is not None:
            running.cancel()  # its head is outdated
        self.checking[key] = asyncio.create_task(self._check(pr))

    async def _check(self, pr: PullRequest) -> None:
        try:
            repository = await store.get_repository(self.redis, pr.repo_name)
            pr = await self.save(pr.model_copy(update={"stage": PrStage.CI_RUNNING}))
            checks = await self.forge(repository).run_checks(repository, pr)
            current = await self.load(pr.repo_name, pr.number)
            if current is None or current.head_commit != pr.head_commit:
                return  # results for an older head stand for nothing
            await self._record_checks(repository, current, checks)
        except Exception:
            log.exception("checks failed to run", extra={"pr": pr.number, "repo": pr.repo_name})
        finally:
            self.checking.pop((pr.repo_name, pr.number), None)

    async def _record_checks(
        self, repository: Repository, pr: PullRequest, checks: list[Any]
    ) -> None:
        failed = [check for check in checks if check.conclusion == "failure"]
        stage = PrStage.CI_FAILED if failed else PrStage.READY
        update = {"stage": stage, "checks": checks, "checks_commit": pr.head_commit}
        pr = await self.save(pr.model_copy(update=update))
        summary = {
            "worker": pr.worker,
            "prNumber": pr.number,
            "headCommit": pr.head_commit,
            "checks": [{"name": check.name, "conclusion": check.conclusion} for check in checks],
            "excerpt": failed[0].excerpt if failed else None,
        }
        if failed:
            await bus.publish_event(
                self.manager.context.nats,
                Event(type=EventType.CI_FAILED, repoName=pr.repo_name, data=summary),
            )
            reason = f"CI failed: {', '.join(check.name for check in failed)}"
            await self.fix_up(repository, pr, reason, failed[0].excerpt or "")
        elif checks:
            await bus.publish_event(
                self.manager.context.nats,
                Event(type=EventType.CI_PASSED, repoName=pr.repo_name, data=summary),
            )

    # Fix-ups

    async def fix_up(
        self, repository: Repository, pr: PullRequest, reason: str, details: str
    ) -> None:
        """Send the failure to a new worker on the pull request's branch, if attempts remain
        and the repository's pull requests are merged by the queue."""
        config = await load_config(self.redis)
        if repository.merge_mode != "queue":
            return
        if pr.fixups >= config.max_fixup_attempts:
            log.warning("pull request left to a person", extra={"pr": pr.number, "reason": reason})
            return
        original = await store.find_worker(self.redis, pr.worker)
        task = (
            f"Pull request #{pr.number} ({pr.title}) needs a fix: {reason}.\n\n"
            f"{details[-8000:]}\n\nFix it on this branch and commit."
        )
        pr = await self.save(pr.model_copy(update={"fixups": pr.fixups + 1}))
        await self.manager.spawn_fixup(
            repository,
            pr,
            task,
            original.agent if original else None,
            original.model if original else None,
        )

    # Merge queue and shepherd

    async def run(self) -> None:
        while True:
            await asyncio.sleep(QUEUE_INTERVAL_S)
            try:
                for repository in await store.list_repositories(self.redis):
                    if await self._hold_lease(repository.name):
                        await self.tend(repository)
            except Exception:
                log.exception("merge queue pass failed")

    async def _hold_lease(self, repo_name: str) -> bool:
        """Take or keep the repository's queue lease, so one replica at a time merges there
        and polls its forge. The lease lapses when its holder stops renewing it."""
        key = keys.merge_queue_lease(repo_name)
        instance_id = self.manager.settings.instance_id
        ttl_ms = int(QUEUE_LEASE_S * 1000)
        if await self.redis.set(key, instance_id, nx=True, px=ttl_ms):
            return True
        if await self.redis.get(key) == instance_id:
            await self.redis.pexpire(key, ttl_ms)
            return True
        return False

    async def tend(self, repository: Repository) -> None:
        prs = await self.open_pull_requests(repository.name)
        for pr in prs:
            stage = await self.forge(repository).current_stage(repository, pr)
            if stage == PrStage.MERGED:
                await self._merged(pr, merge_commit=None)
            elif stage == PrStage.CLOSED:
                await self.save(pr.model_copy(update={"stage": PrStage.CLOSED}))
                log.info("pull request closed", extra={"pr": pr.number, "repo": pr.repo_name})
        if repository.merge_mode != "queue":
            await self._follow_reviews(repository)
            return
        if await self._queue_paused(repository.name):
            return
        ready = [
            pr for pr in await self.open_pull_requests(repository.name) if pr.stage == PrStage.READY
        ]
        if ready:
            await self._merge_next(repository, ready[0])

    async def _follow_reviews(self, repository: Repository) -> None:
        """Record review changes and report them in the activity log (the PR shepherd's part)."""
        for pr in await self.open_pull_requests(repository.name):
            reviews = await self.forge(repository).reviews(repository, pr)
            current = await self.load(pr.repo_name, pr.number)
            if current is None or reviews == current.reviews:
                continue
            pr = await self.save(current.model_copy(update={"reviews": reviews}))
            await self.publish(EventType.PR_REVIEWED, pr, reviews=reviews)
            log.info("pull request reviewed", extra={"pr": pr.number, "reviews": reviews})

    async def open_pull_requests(self, repo_name: str) -> list[PullRequest]:
        raw = await self.redis.hvals(keys.pull_requests(repo_name))
        prs = [PullRequest.model_validate_json(item) for item in raw]
        return sorted((pr for pr in prs if pr.stage in OPEN_PR_STAGES), key=lambda pr: pr.number)

    async def _merge_next(self, repository: Repository, pr: PullRequest) -> None:
        forge = self.forge(repository)
        base = await forge.base_commit(repository, pr)
        config = await load_config(self.redis)
        try:
            if not await git.is_ancestor(Path(repository.path), base, pr.head_commit):
                head = await forge.update_branch(repository, pr)
                log.info("branch brought up to date", extra={"pr": pr.number})
                self.start_checks(pr.model_copy(update={"head_commit": head}))
                return
            commit = await forge.merge(repository, pr, config.merge_method)
        except MergeConflict as exc:
            await self._conflict(repository, pr, exc)
            return
        except HeadChanged:
            self.start_checks(pr)
            return
        except ForgeError as exc:
            # Neither a conflict nor a moved head: a required review, a rate limit. The next
            # pass tries again.
            if self.merge_failures.get((pr.repo_name, pr.number)) != exc.message:
                log.warning("merge failed", extra={"pr": pr.number, "error": exc.message})
            self.merge_failures[(pr.repo_name, pr.number)] = exc.message
            return
        await self._merged(pr, commit)

    async def _conflict(self, repository: Repository, pr: PullRequest, exc: MergeConflict) -> None:
        pr = await self.save(pr.model_copy(update={"stage": PrStage.OPEN}))
        log.info("pull request conflicts", extra={"pr": pr.number, "paths": exc.paths})
        details = (
            f"Merge {pr.base_branch} into this branch and resolve the conflicts in: "
            f"{', '.join(exc.paths) or 'unknown files'}"
        )
        await self.fix_up(repository, pr, f"conflicts with {pr.base_branch}", details)

    async def _merged(self, pr: PullRequest, merge_commit: str | None) -> None:
        self.merge_failures.pop((pr.repo_name, pr.number), None)
        now = now_iso()
        pr = await self.save(
            pr.model_copy(
                update={"stage": PrStage.MERGED, "merged_at": now, "merge_commit": merge_commit}
            )
        )
        await self.publish(EventType.PR_MERGED, pr, mergedAt=now, mergeCommit=merge_commit)
        await self.manager.updater.update(
            pr.worker, frozenset({WorkerStatus.COMPLETED}), status=WorkerStatus.MERGED
        )
        log.info("pull request merged", extra={"pr": pr.number, "repo": pr.repo_name})

    async def _queue_paused(self, repo_name: str) -> bool:
        raw = await self.redis.hget(keys.agent_state(repo_name), MERGE_QUEUE)
        return bool(raw) and json.loads(str(raw)).get("status") == "paused"
