"""Workers: spawn, run the agent in its worktree, follow its status, stop, recover."""

import asyncio
import contextlib
import logging
import os
from pathlib import Path
from typing import Any

from cocopilot import bus, keys, store, subjects
from cocopilot.commands import DEFAULT_NUDGE, AgentMessage, Nudge, SpawnWorker
from cocopilot.config import GlobalConfig, load_config
from cocopilot.errors import (
    CocopilotError,
    Conflict,
    InvalidRequest,
    NotFound,
    ServiceUnavailable,
)
from cocopilot.events import Event, EventType
from cocopilot.models import ACTIVE_STATUSES, PullRequest, Repository, Worker, WorkerStatus
from cocopilot.service import ServiceContext
from cocopilot.timeutil import now_iso
from cocopilot.validation import check_name
from services.workers import git
from services.workers.agents import Agents
from services.workers.candy import candy_name
from services.workers.output import OutputRecorder
from services.workers.process import AgentProcess, process_start_time
from services.workers.pulls import PullRequestFlow
from services.workers.repositories import RepositoryManager
from services.workers.runtimes import AgentProfile, get_profile, load_profiles
from services.workers.status import WorkerUpdater
from services.workers.store import WorkerStore

log = logging.getLogger(__name__)

MAX_LOG_BYTES = 64 * 1024 * 1024


class WorkerManager:
    def __init__(self, context: ServiceContext) -> None:
        self.context = context
        self.settings = context.settings
        self.redis = context.redis
        self.store = WorkerStore(context.redis)
        self.updater = WorkerUpdater(self.store, context.nats)
        self.repositories = RepositoryManager(context, self.store)
        self.profiles = load_profiles(context.settings)
        self.agents = Agents(context.redis, self.nudge_all)
        self.pulls = PullRequestFlow(self)
        self.runs: dict[str, asyncio.Task[None]] = {}
        self.processes: dict[str, AgentProcess] = {}
        self.recorders: dict[str, OutputRecorder] = {}
        self.setup_locks: dict[str, asyncio.Lock] = {}
        self.stopping: set[str] = set()

    # Spawn

    async def spawn(self, payload: dict[str, Any], fixup_of: int | None = None) -> dict[str, Any]:
        request = SpawnWorker.model_validate(payload)
        repository = await store.get_repository(self.redis, request.repo_name)
        config = await load_config(self.redis)
        agent = request.agent or repository.default_agent or config.default_agent
        profile = get_profile(self.profiles, agent)
        base_branch = request.branch or repository.default_branch
        base = await git.resolve_branch(Path(repository.path), base_branch)
        if base is None:
            raise InvalidRequest(
                f'branch "{base_branch}" not found in repository "{repository.name}"'
            )

        worker = await self._insert(
            request, repository, profile, config, base_branch, base[1], fixup_of
        )
        await self.updater.publish(EventType.WORKER_CREATED, worker)
        log.info("worker created", extra={"worker": worker.name, "repo": worker.repo_name})
        self.runs[worker.name] = asyncio.create_task(self.run(worker, profile))
        return worker.view().to_dict()

    async def _insert(
        self,
        request: SpawnWorker,
        repository: Repository,
        profile: AgentProfile,
        config: GlobalConfig,
        base_branch: str,
        base_commit: str,
        fixup_of: int | None,
    ) -> Worker:
        while True:
            name = request.name or await self._next_candy_name(repository)
            worker = self._new_worker(name, request, repository, profile, base_branch, base_commit)
            worker.fixup_of = fixup_of
            if request.name and await git.branch_exists(Path(repository.path), worker.branch):
                raise Conflict(
                    f'branch "{worker.branch}" already exists in repository "{repository.name}" '
                    "from an earlier worker; choose another name"
                )
            try:
                await self.store.create_worker(
                    worker, config.max_workers_per_repo, config.max_workers
                )
            except Conflict:
                if request.name or await store.find_worker(self.redis, name) is None:
                    raise
                continue  # a custom name took this candy name meanwhile: take the next one
            return worker

    async def _next_candy_name(self, repository: Repository) -> str:
        """Return the next candy name that no worker and no kept branch uses."""
        while True:
            name = candy_name(await self.store.next_candy_number())
            taken = await self.redis.exists(keys.worker(name))
            if not taken and not await git.branch_exists(Path(repository.path), f"work/{name}"):
                return name

    def _new_worker(
        self,
        name: str,
        request: SpawnWorker,
        repository: Repository,
        profile: AgentProfile,
        base_branch: str,
        base_commit: str,
    ) -> Worker:
        now = now_iso()
        worktree = self.repositories.worktrees_dir / repository.name / name
        return Worker(
            name=name,
            task=request.task,
            branch=f"work/{name}",
            status=WorkerStatus.STARTING,
            repo_name=repository.name,
            base_branch=base_branch,
            base_commit=base_commit,
            agent=profile.name,
            model=request.model,
            created_at=now,
            updated_at=now,
            instance_id=self.settings.instance_id,
            worktree=str(worktree),
        )

    # Run

    async def run(self, worker: Worker, profile: AgentProfile, resume: bool = False) -> None:
        """Start the agent (in a new worktree, or resuming in its old one) and record how it
        ends. An unexpected error fails the worker, so no worker is left without an outcome."""
        try:
            await self._run_agent(worker, profile, resume)
        except Exception as exc:
            log.exception("worker run failed", extra={"worker": worker.name})
            with contextlib.suppress(Exception):
                await self._finish(worker.name, WorkerStatus.FAILED, f"internal error: {exc}")

    async def _run_agent(self, worker: Worker, profile: AgentProfile, resume: bool) -> None:
        # A stop waits for this lock, so it never lands between creating the worktree and
        # registering the agent, which would leave either behind.
        async with self._setup_lock(worker.name):
            if await store.find_worker(self.redis, worker.name) is None:
                return  # deleted before its agent could start
            try:
                agent = await self._start_agent(worker, profile, resume)
            except git.GitError as exc:
                await self._finish(
                    worker.name, WorkerStatus.FAILED, f"could not create the worktree: {exc}"
                )
                return
            except OSError as exc:
                await self._finish(
                    worker.name, WorkerStatus.FAILED, f"could not start the agent: {exc}"
                )
                return
        await self.updater.update(
            worker.name,
            ACTIVE_STATUSES,
            status=WorkerStatus.WORKING,
            agent_pid=agent.pid,
            agent_started_at=process_start_time(agent.pid),
        )
        code = await agent.wait()
        if worker.name in self.stopping:
            return  # stopped on request: the stop records the outcome
        self.processes.pop(worker.name, None)
        await self._close_output(worker.name)
        if code == 0:
            await self._finish(worker.name, WorkerStatus.COMPLETED, exit_code=code)
            await self._open_pull_request(worker.name)
        else:
            reason = f"agent exited with code {code}"
            if agent.last_line():
                reason += f": {agent.last_line()}"
            await self._finish(worker.name, WorkerStatus.FAILED, reason, exit_code=code)

    async def _start_agent(
        self, worker: Worker, profile: AgentProfile, resume: bool
    ) -> AgentProcess:
        worktree = Path(worker.worktree)
        if not resume:
            repository = await store.get_repository(self.redis, worker.repo_name)
            assert worker.base_commit is not None
            await git.add_worktree(
                Path(repository.path), worktree, worker.base_commit, worker.branch
            )
        argv = profile.build_argv(worker.task, worker.model, resume)
        recorder = OutputRecorder(self.redis, worker.name)
        self.recorders[worker.name] = recorder
        agent = await AgentProcess.start(
            argv,
            worktree,
            self._agent_env(worker, profile),
            self._log_path(worker),
            MAX_LOG_BYTES,
            recorder.add_line,
        )
        self.processes[worker.name] = agent
        log.info(
            "agent started", extra={"worker": worker.name, "pid": agent.pid, "agent": profile.name}
        )
        return agent

    def _agent_env(self, worker: Worker, profile: AgentProfile) -> dict[str, str]:
        # The service's own settings (tokens, Redis and NATS addresses) stay out of the agent.
        env = {k: v for k, v in os.environ.items() if not k.startswith("COCOPILOT_")}
        identity = {
            "GIT_AUTHOR_NAME": f"{worker.name} (CoCoPilot)",
            "GIT_AUTHOR_EMAIL": f"{worker.name.lower()}@cocopilot.invalid",
        }
        identity["GIT_COMMITTER_NAME"] = identity["GIT_AUTHOR_NAME"]
        identity["GIT_COMMITTER_EMAIL"] = identity["GIT_AUTHOR_EMAIL"]
        for key, value in identity.items():
            env.setdefault(key, value)
        env["COCOPILOT_WORKER_NAME"] = worker.name
        env["COCOPILOT_REPO_NAME"] = worker.repo_name
        return env | profile.env

    def _log_path(self, worker: Worker) -> Path:
        return self.settings.data_dir / "logs" / worker.repo_name / f"{worker.name}.log"

    # Status

    async def _finish(
        self,
        name: str,
        status: WorkerStatus,
        error: str | None = None,
        exit_code: int | None = None,
    ) -> None:
        """Record how the agent ended, unless the worker already ended another way."""
        await self.updater.update(
            name, ACTIVE_STATUSES, status=status, error=error, exit_code=exit_code
        )
        self.runs.pop(name, None)

    async def _open_pull_request(self, name: str) -> None:
        worker = await store.find_worker(self.redis, name)
        if worker is None or worker.status != WorkerStatus.COMPLETED:
            return
        try:
            await self.pulls.on_completed(worker)
        except Exception:
            log.exception("opening the pull request failed", extra={"worker": name})

    async def spawn_fixup(
        self,
        repository: Repository,
        pr: PullRequest,
        task: str,
        agent: str | None,
        model: str | None,
    ) -> None:
        """Spawn a worker on a pull request's branch to fix what failed there."""
        payload = {"task": task, "repoName": repository.name, "branch": pr.branch}
        if agent:
            payload["agent"] = agent
        if model:
            payload["model"] = model
        try:
            worker = await self.spawn(payload, fixup_of=pr.number)
        except CocopilotError as exc:
            log.warning("spawning a fix-up failed", extra={"pr": pr.number, "error": exc.message})
            return
        log.info("fix-up spawned", extra={"pr": pr.number, "worker": worker["name"]})

    # Stop

    async def stop(self, payload: dict[str, Any]) -> None:
        name = check_name(str(payload.get("name", "")), "name")
        worker = await store.get_worker(self.redis, name)
        if worker.instance_id != self.settings.instance_id:
            raise NotFound(f'Worker "{name}" is not run by instance {self.settings.instance_id}')
        log.info("stopping worker", extra={"worker": name})
        async with self._setup_lock(name):
            await self._stop_agent(name)
            await self._remove(worker)
        self.setup_locks.pop(name, None)

    def _setup_lock(self, name: str) -> asyncio.Lock:
        return self.setup_locks.setdefault(name, asyncio.Lock())

    async def stop_orphaned(self, payload: dict[str, Any]) -> None:
        """Remove a worker whose replica is gone; its agent died with that replica."""
        name = check_name(str(payload.get("name", "")), "name")
        worker = await store.get_worker(self.redis, name)
        if worker.instance_id == self.settings.instance_id:
            await self.stop(payload)
            return
        owner = keys.service_heartbeat("workers", worker.instance_id)
        if await self.redis.exists(owner):
            # Its replica still runs, so only that replica may end the agent.
            raise ServiceUnavailable(
                f'the workers replica running "{name}" did not respond; try again'
            )
        await self._remove(worker)

    async def _stop_agent(self, name: str) -> None:
        """End the agent and wait for its run to notice. The caller holds the setup lock, so
        a run without an agent yet is waiting for that lock; it finds the record gone later."""
        # Not cancelled: a task cancelled inside a NATS or Redis call could hang there for
        # that call's whole timeout. The run ends by itself once its agent has exited.
        self.stopping.add(name)
        try:
            agent = self.processes.pop(name, None)
            if agent is not None:
                await agent.stop(self.settings.agent_stop_grace_s)
                run = self.runs.pop(name, None)
                if run is not None:
                    await asyncio.gather(run, return_exceptions=True)
        finally:
            self.stopping.discard(name)
        await self._close_output(name)

    async def end_agent(self, name: str, reason: str) -> None:
        """Fail a worker with ``reason`` and stop its agent, keeping worktree and record."""
        await self.updater.update(name, ACTIVE_STATUSES, status=WorkerStatus.FAILED, error=reason)
        agent = self.processes.get(name)
        if agent is not None:
            log.warning("stopping agent", extra={"worker": name, "reason": reason})
            await agent.stop(self.settings.agent_stop_grace_s)

    async def _close_output(self, name: str) -> None:
        recorder = self.recorders.pop(name, None)
        if recorder is not None:
            await recorder.close()

    async def _remove(self, worker: Worker) -> None:
        """Remove the worktree, the log file and the record; keep the branch if it has commits
        of its own."""
        repository = await store.find_repository(self.redis, worker.repo_name)
        if repository is not None:
            await self._remove_worktree(worker, Path(repository.path))
        await asyncio.to_thread(self._log_path(worker).unlink, missing_ok=True)
        if await self.store.delete_worker(worker):
            removed = worker.model_copy(update={"updated_at": now_iso()})
            await self.updater.publish(EventType.WORKER_REMOVED, removed)
            log.info("worker removed", extra={"worker": worker.name, "repo": worker.repo_name})

    async def _remove_worktree(self, worker: Worker, repo: Path) -> None:
        try:
            await git.remove_worktree(repo, Path(worker.worktree))
            if not await git.branch_exists(repo, worker.branch) or worker.base_commit is None:
                return
            if await git.commits_ahead(repo, worker.branch, worker.base_commit) == 0:
                await git.delete_branch(repo, worker.branch)
            else:
                log.info(
                    "branch kept: it has commits",
                    extra={"worker": worker.name, "branch": worker.branch},
                )
        except git.GitError as exc:
            log.warning(
                "worktree cleanup failed", extra={"worker": worker.name, "error": exc.message}
            )

    # Input to a running agent

    async def nudge(self, payload: dict[str, Any]) -> dict[str, Any]:
        name = check_name(str(payload.get("name", "")), "name")
        request = Nudge.model_validate(payload.get("body") or {})
        text = request.message or DEFAULT_NUDGE
        worker = await self._type_into(name, text)
        await self.updater.update(name, nudge_count=worker.nudge_count + 1)
        data = {"worker": worker.name, "message": text, "by": str(payload.get("by", "api"))}
        event = Event(type=EventType.WORKER_NUDGED, repoName=worker.repo_name, data=data)
        await bus.publish_event(self.context.nats, event)
        return {"name": worker.name, "message": text, "nudgedAt": event.time}

    async def message(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Type a ``text`` message into a worker's session and keep it in the worker's inbox."""
        name = check_name(str(payload.get("name", "")), "name")
        message = AgentMessage.model_validate(payload.get("body") or {})
        if message.type != "text" or message.text is None:
            raise InvalidRequest(f"worker agents take only text messages, not {message.type!r}")
        worker = await self._type_into(name, message.text)
        record = await self.agents.store_message(
            worker.repo_name, worker.name, message, {"delivered": True}
        )
        event = Event(type=EventType.AGENT_MESSAGE, repoName=worker.repo_name, data=record)
        await bus.publish_event(self.context.nats, event)
        return record

    async def _type_into(self, name: str, text: str) -> Worker:
        worker = await store.get_worker(self.redis, name)
        agent = self.processes.get(name)
        if agent is None or worker.status not in ACTIVE_STATUSES:
            raise Conflict(f'Worker "{name}" is {worker.status}; only a running agent takes input')
        if not self.takes_input(worker):
            raise Conflict(
                f'Worker "{name}" runs the {worker.agent} agent, which does not read input '
                "while it runs"
            )
        agent.write_input(text)
        log.info("input typed into agent", extra={"worker": name, "bytes": len(text.encode())})
        return worker

    def takes_input(self, worker: Worker) -> bool:
        profile = self.profiles.get(worker.agent)
        return profile is not None and profile.input == "terminal"

    async def nudge_all(self, repo_name: str, text: str | None) -> int:
        """Nudge every active worker of a repository, on whichever replica runs it; return how
        many took the nudge."""
        nudged = 0
        for worker in await store.list_workers(self.redis, repo_name):
            if worker.status not in ACTIVE_STATUSES:
                continue
            subject = subjects.worker_command(worker.instance_id, "nudge")
            payload = {"name": worker.name, "body": {"message": text}, "by": "supervisor"}
            try:
                await bus.request(
                    self.context.nats, subject, payload, self.settings.command_timeout_s
                )
                nudged += 1
            except CocopilotError as exc:
                log.warning("nudge failed", extra={"worker": worker.name, "error": exc.message})
        return nudged

    async def message_built_in(self, payload: dict[str, Any]) -> dict[str, Any]:
        repo_name = check_name(str(payload.get("repoName", "")), "repoName")
        agent_name = str(payload.get("agent", ""))
        message = AgentMessage.model_validate(payload.get("body") or {})
        record = await self.agents.message_built_in(repo_name, agent_name, message)
        event = Event(type=EventType.AGENT_MESSAGE, repoName=repo_name, data=record)
        await bus.publish_event(self.context.nats, event)
        return record

    async def list_agents(self, payload: dict[str, Any]) -> list[dict[str, Any]]:
        return await self.agents.list(check_name(str(payload.get("repoName", "")), "repoName"))
