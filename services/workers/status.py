"""Updates of stored workers, each published as the event that reports it."""

import logging
from typing import Any

from nats.aio.client import Client as NATS

from cocopilot import bus
from cocopilot.events import Event, EventType
from cocopilot.models import Worker, WorkerStatus
from cocopilot.timeutil import now_iso
from services.workers.store import WorkerStore

log = logging.getLogger(__name__)

STATUS_EVENTS = {
    WorkerStatus.COMPLETED: EventType.WORKER_COMPLETED,
    WorkerStatus.FAILED: EventType.WORKER_FAILED,
}


class WorkerUpdater:
    def __init__(self, worker_store: WorkerStore, nats: NATS) -> None:
        self.store = worker_store
        self.nats = nats

    async def update(
        self, name: str, allowed: frozenset[WorkerStatus] | None = None, **changes: Any
    ) -> Worker | None:
        """Apply ``changes`` to the stored worker if its status is one of ``allowed`` (any, if
        None), and publish the event. Return the new record, or None when nothing changed."""
        while True:
            found = await self.store.read_worker(name)
            if found is None:
                return None
            current, raw = found
            if allowed is not None and current.status not in allowed:
                return None
            updated = current.model_copy(update={**changes, "updated_at": now_iso()})
            if await self.store.replace_worker(updated, raw):
                break
            # Changed meanwhile by another task: apply the change again on top of that.
        await self._announce(current, updated)
        return updated

    async def _announce(self, before: Worker, after: Worker) -> None:
        if after.status != before.status:
            event_type = STATUS_EVENTS.get(after.status, EventType.WORKER_UPDATED)
            log.info(
                "worker status changed", extra={"worker": after.name, "status": str(after.status)}
            )
        elif after.view().model_dump(exclude={"updated_at"}) != before.view().model_dump(
            exclude={"updated_at"}
        ):
            event_type = EventType.WORKER_UPDATED
        else:
            return
        await self.publish(event_type, after)

    async def publish(self, event_type: EventType, worker: Worker) -> None:
        event = Event(type=event_type, repoName=worker.repo_name, data=worker.view().to_dict())
        await bus.publish_event(self.nats, event)
