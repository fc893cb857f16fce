"""The workers service: tracked repositories, worktrees and agent processes.

It serves spawn and repository commands as a queue group shared by every replica, and stop
commands on a subject of its own instance, since only the replica that started an agent can
end its process tree.
"""

import asyncio
import logging
from typing import Any

from cocopilot import bus, subjects
from cocopilot.service import ServiceContext
from services.workers.manager import WorkerManager
from services.workers.supervision import Supervisor

log = logging.getLogger(__name__)

_manager: WorkerManager | None = None
_background: list[asyncio.Task[None]] = []


async def start(context: ServiceContext) -> None:
    global _manager
    manager = WorkerManager(context)
    _manager = manager
    await manager.recover()
    handlers: list[tuple[str, Any, str]] = [
        (subjects.SPAWN_WORKER, manager.spawn, subjects.WORKERS_QUEUE),
        (subjects.STOP_ORPHANED_WORKER, manager.stop_orphaned, subjects.WORKERS_QUEUE),
        (subjects.ADD_REPOSITORY, manager.repositories.add, subjects.WORKERS_QUEUE),
        (subjects.REMOVE_REPOSITORY, manager.repositories.remove, subjects.WORKERS_QUEUE),
        (subjects.LIST_AGENTS, manager.list_agents, subjects.WORKERS_QUEUE),
        (subjects.MESSAGE_BUILT_IN_AGENT, manager.message_built_in, subjects.WORKERS_QUEUE),
    ]
    instance_handlers = {"stop": manager.stop, "nudge": manager.nudge, "message": manager.message}
    for action, handler in instance_handlers.items():
        handlers.append(
            (subjects.worker_command(context.settings.instance_id, action), handler, "")
        )
    for subject, handler, queue in handlers:
        await bus.serve_command(context.nats, subject, handler, queue=queue)
    _background.append(asyncio.create_task(manager.watch_orphans()))
    _background.append(asyncio.create_task(Supervisor(manager).run()))


async def stop(context: ServiceContext) -> None:
    for task in _background:
        task.cancel()
    if _manager is not None:
        await _manager.shutdown()
