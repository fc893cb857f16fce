"""Restarts and shutdowns: resume or fail the workers that nothing runs any more, and remove
worktrees that no worker owns."""

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from cocopilot import keys, store
from cocopilot.models import ACTIVE_STATUSES, Worker, WorkerStatus
from services.workers import git
from services.workers.process import stop_leftover

if TYPE_CHECKING:
    from services.workers.manager import WorkerManager

log = logging.getLogger(__name__)

ORPHAN_SCAN_INTERVAL_S = 30.0


class Recovery:
    def __init__(self, manager: "WorkerManager") -> None:
        self.manager = manager

    async def recover(self) -> None:
        """Take over every active worker that nothing runs any more: this instance's, since it
        just started with no agents, and those of instances whose heartbeat has expired. Own
        workers whose agent can continue its session are resumed; the others fail."""
        for name in await self.manager.store.active_worker_names():
            worker = await store.find_worker(self.manager.redis, name)
            if worker is None or name in self.manager.runs:
                continue
            if worker.instance_id == self.manager.settings.instance_id:
                await self._end_leftover(worker)
                if not await self._resume(worker):
                    await self._fail_lost(worker)
            elif not await self._instance_alive(worker):
                await self._end_leftover(worker)
                await self._fail_lost(worker)

    async def prune_worktrees(self) -> None:
        """Remove the worktrees that no worker record owns (left by a stop that did not finish)
        and let git forget worktrees whose folder is gone."""
        for repository in await store.list_repositories(self.manager.redis):
            folder = self.manager.repositories.worktrees_dir / repository.name
            names = await asyncio.to_thread(_folder_names, folder)
            for name in names:
                if await store.find_worker(self.manager.redis, name) is None:
                    log.info(
                        "pruning an orphaned worktree",
                        extra={"worker": name, "repo": repository.name},
                    )
                    await self._prune_one(Path(repository.path), folder / name)
            with contextlib.suppress(git.GitError):
                await git.prune_worktrees(Path(repository.path))

    async def _prune_one(self, repo: Path, worktree: Path) -> None:
        try:
            await git.remove_worktree(repo, worktree)
        except git.GitError as exc:
            log.warning(
                "pruning a worktree failed", extra={"path": str(worktree), "error": exc.message}
            )

    async def _resume(self, worker: Worker) -> bool:
        profile = self.manager.profiles.get(worker.agent)
        worktree_exists = await asyncio.to_thread(Path(worker.worktree).is_dir)
        if profile is None or not profile.resume_argv or not worktree_exists:
            return False
        log.info("resuming agent", extra={"worker": worker.name, "agent": profile.name})
        self.manager.runs[worker.name] = asyncio.create_task(
            self.manager.run(worker, profile, resume=True)
        )
        return True

    async def _end_leftover(self, worker: Worker) -> None:
        """End an agent that outlived the service that started it (possible outside a
        container), so it cannot run on unseen."""
        if worker.agent_pid and worker.agent_started_at:
            grace_s = self.manager.settings.agent_stop_grace_s
            if await stop_leftover(worker.agent_pid, worker.agent_started_at, grace_s):
                log.warning("ended a leftover agent", extra={"worker": worker.name})

    async def _instance_alive(self, worker: Worker) -> bool:
        return bool(
            await self.manager.redis.exists(keys.service_heartbeat("workers", worker.instance_id))
        )

    async def _fail_lost(self, worker: Worker) -> None:
        log.warning(
            "agent process lost",
            extra={
                "worker": worker.name,
                "instance_id": worker.instance_id,
                "pid": worker.agent_pid,
            },
        )
        reason = "agent process lost: the workers service that ran it stopped"
        await self.manager.updater.update(
            worker.name, ACTIVE_STATUSES, status=WorkerStatus.FAILED, error=reason
        )

    async def watch_orphans(self) -> None:
        while True:
            await asyncio.sleep(ORPHAN_SCAN_INTERVAL_S)
            try:
                await self.recover()
            except Exception:
                log.exception("orphan scan failed")

    async def shutdown(self) -> None:
        """Stop every agent this instance runs. Workers whose agent can resume stay active, for
        the service to resume when it starts again; the others fail with the reason."""
        for name in list(self.manager.runs):
            worker = await store.find_worker(self.manager.redis, name)
            await self.manager._stop_agent(name)
            profile = self.manager.profiles.get(worker.agent) if worker else None
            if profile is not None and profile.resume_argv:
                continue
            reason = "agent stopped: the workers service shut down"
            await self.manager.updater.update(
                name, ACTIVE_STATUSES, status=WorkerStatus.FAILED, error=reason
            )


def _folder_names(folder: Path) -> list[str]:
    return [path.name for path in folder.glob("*") if path.is_dir()]
