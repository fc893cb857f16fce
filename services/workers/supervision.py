"""The supervisor (the Chocolatier): watches the agents that this replica runs.

Every CHECK_INTERVAL_S it looks at each running agent:

- past ``workerTimeout`` since it started, the worker fails and the agent is stopped;
- with no output and no new commit for ``stuckAfter``, the worker becomes ``stuck``, and
  ``working`` again on the next output or commit;
- a worker whose last line is a prompt (y/n, "Do you want to", "Press Enter") and that has
  printed nothing for INPUT_WAIT_S is marked ``waitingForInput``;
- a stuck worker is nudged every ``supervisorNudgeInterval``; after ``supervisorMaxNudges``
  nudges, it fails and its agent is stopped. An agent that reads no input while it runs gets
  the same time, without the nudges.

Nudges and failures wait while the repository's supervisor is paused (a ``pause`` message).
"""

import asyncio
import json
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cocopilot import keys
from cocopilot.config import GlobalConfig, load_config
from cocopilot.models import Worker, WorkerStatus
from services.workers.agents import SUPERVISOR
from services.workers.process import AgentProcess

if TYPE_CHECKING:
    from services.workers.manager import WorkerManager

log = logging.getLogger(__name__)

CHECK_INTERVAL_S = 1.0
INPUT_WAIT_S = 5.0
_PROMPT = re.compile(
    r"(\(y/n\)|\[y/n\]|\(yes/no\)|\[yes/no\]|do you want to|press enter|are you sure)",
    re.IGNORECASE,
)


@dataclass
class Watch:
    """State kept for one agent between checks; times are monotonic seconds."""

    started_at: float
    reflog: Path | None  # changes on every commit in the worktree
    last_nudge_at: float | None = None
    stuck_since: float | None = None
    nudges: int = 0  # since the worker last became stuck


class Supervisor:
    def __init__(self, manager: "WorkerManager") -> None:
        self.manager = manager
        self.redis = manager.redis
        self.watches: dict[str, Watch] = {}

    async def run(self) -> None:
        while True:
            await asyncio.sleep(CHECK_INTERVAL_S)
            try:
                await self.check_all()
            except Exception:
                log.exception("supervisor check failed")

    async def check_all(self) -> None:
        config = await load_config(self.redis)
        running = dict(self.manager.processes)
        for name in set(self.watches) - set(running):
            del self.watches[name]
        for name, agent in running.items():
            worker = await self.manager.store.read_worker(name)
            if worker is not None:
                await self.check(worker[0], agent, config)

    async def check(self, worker: Worker, agent: AgentProcess, config: GlobalConfig) -> None:
        watch = self.watches.get(worker.name)
        if watch is None:
            watch = self.watches[worker.name] = Watch(time.monotonic(), _reflog(worker))
        now = time.monotonic()
        if now - watch.started_at > config.worker_timeout:
            await self.manager.end_agent(
                worker.name, f"timed out: ran longer than workerTimeout ({config.worker_timeout} s)"
            )
            return
        idle_s = now - max(agent.last_output_at, _last_commit_at(watch, now))
        await self._mark_waiting(worker, agent, idle_s)
        status = await self._mark_progress(worker, idle_s, config)
        if status != WorkerStatus.STUCK:
            watch.stuck_since = watch.last_nudge_at = None
            watch.nudges = 0
            return
        watch.stuck_since = watch.stuck_since or now
        await self._tend_stuck(worker, watch, config)

    async def _mark_waiting(self, worker: Worker, agent: AgentProcess, idle_s: float) -> None:
        waiting = idle_s >= INPUT_WAIT_S and bool(_PROMPT.search(agent.last_line()))
        if waiting != worker.waiting_for_input:
            await self.manager.updater.update(worker.name, waiting_for_input=waiting)

    async def _mark_progress(
        self, worker: Worker, idle_s: float, config: GlobalConfig
    ) -> WorkerStatus:
        """Move a worker between working and stuck by its idle time; return its status."""
        if worker.status == WorkerStatus.WORKING and idle_s >= config.stuck_after:
            target = WorkerStatus.STUCK
            log.info("worker stuck", extra={"worker": worker.name, "idle_s": round(idle_s)})
        elif worker.status == WorkerStatus.STUCK and idle_s < config.stuck_after:
            target = WorkerStatus.WORKING
        else:
            return worker.status
        updated = await self.manager.updater.update(
            worker.name, frozenset({worker.status}), status=target
        )
        return updated.status if updated is not None else worker.status

    async def _tend_stuck(self, worker: Worker, watch: Watch, config: GlobalConfig) -> None:
        since = watch.last_nudge_at or watch.stuck_since
        if since is None or time.monotonic() - since < config.supervisor_nudge_interval:
            return
        if await self._paused(worker.repo_name):
            return
        takes_input = self.manager.takes_input(worker)
        if watch.nudges >= config.supervisor_max_nudges:
            if takes_input:
                reason = f"stuck: no progress after {watch.nudges} nudges"
            else:
                stuck_s = round(time.monotonic() - (watch.stuck_since or 0) + config.stuck_after)
                reason = f"stuck: no output and no commit for {stuck_s} s"
            await self.manager.end_agent(worker.name, reason)
        else:
            watch.last_nudge_at = time.monotonic()
            watch.nudges += 1
            # An agent that reads no input gets the same time, without the text.
            if takes_input:
                await self.manager.nudge({"name": worker.name, "by": SUPERVISOR})
        await self.manager.agents.set_state(worker.repo_name, SUPERVISOR, "watching")

    async def _paused(self, repo_name: str) -> bool:
        raw = await self.redis.hget(keys.agent_state(repo_name), SUPERVISOR)
        return bool(raw) and json.loads(str(raw)).get("status") == "paused"


def _reflog(worker: Worker) -> Path | None:
    """Return the worktree's HEAD reflog, found through the ``.git`` file that git writes."""
    try:
        pointer = (Path(worker.worktree) / ".git").read_text().strip()
    except OSError:
        return None
    return Path(pointer.removeprefix("gitdir: ")) / "logs" / "HEAD"


def _last_commit_at(watch: Watch, now: float) -> float:
    """When the worktree's HEAD last moved, on the monotonic clock (the start if never)."""
    if watch.reflog is None:
        return watch.started_at
    try:
        age_s = time.time() - watch.reflog.stat().st_mtime
    except OSError:
        return watch.started_at
    return max(watch.started_at, now - age_s)
