"""The workers service: tracked repositories, worktrees and agent processes.

It serves spawn, repository and agent commands as a queue group shared by every replica. The
commands for one worker (stop, nudge, message) go to subjects of its own instance, because
only the replica that started an agent has its process tree and terminal.
"""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from cocopilot import bus, subjects
from cocopilot.service import ServiceContext
from services.workers.manager import WorkerManager
from services.workers.recovery import Recovery
from services.workers.supervision import Supervisor

Handler = Callable[[dict[str, Any]], Awaitable[Any]]


class WorkersService:
    def __init__(self, context: ServiceContext) -> None:
        self.context = context
        self.manager = WorkerManager(context)
        self.recovery = Recovery(self.manager)
        self.background: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        await self.recovery.recover()
        await self.recovery.prune_worktrees()
        for subject, handler, queue in self._handlers():
            await bus.serve_command(self.context.nats, subject, handler, queue=queue)
        self.background = [
            asyncio.create_task(self.recovery.watch_orphans()),
            asyncio.create_task(Supervisor(self.manager).run()),
            asyncio.create_task(self.manager.pulls.run()),
        ]

    def _handlers(self) -> list[tuple[str, Handler, str]]:
        manager = self.manager
        shared: list[tuple[str, Handler]] = [
            (subjects.SPAWN_WORKER, manager.spawn),
            (subjects.STOP_ORPHANED_WORKER, manager.stop_orphaned),
            (subjects.ADD_REPOSITORY, manager.repositories.add),
            (subjects.REMOVE_REPOSITORY, manager.repositories.remove),
            (subjects.LIST_AGENTS, manager.list_agents),
            (subjects.MESSAGE_BUILT_IN_AGENT, manager.message_built_in),
        ]
        own = {"stop": manager.stop, "nudge": manager.nudge, "message": manager.message}
        instance_id = self.context.settings.instance_id
        return [(subject, handler, subjects.WORKERS_QUEUE) for subject, handler in shared] + [
            (subjects.worker_command(instance_id, action), handler, "")
            for action, handler in own.items()
        ]

    async def stop(self) -> None:
        for task in self.background:
            task.cancel()
        await self.recovery.shutdown()


# The running service, from start to stop.
_service: WorkersService | None = None


async def start(context: ServiceContext) -> None:
    global _service
    _service = WorkersService(context)
    await _service.start()


async def stop(context: ServiceContext) -> None:
    if _service is not None:
        await _service.stop()
