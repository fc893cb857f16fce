"""Event envelope and types. Events are facts, published once to the JetStream stream.

What ``data`` holds, by type (keys in camelCase, as in the API):

- ``worker.*``: the worker as the API shows it (models.WorkerView), after the change.
  ``worker.updated`` is sent for changes that have no event of their own (starting to working,
  working to stuck and back). ``worker.completed``, ``worker.failed`` and ``worker.removed``
  are sent for those changes only.
- ``pr.created`` and ``pr.merged``: ``{"worker", "number", "url", "branch", "baseBranch",
  "headCommit", "createdAt"}``, plus ``"mergedAt"`` for ``pr.merged``.
- ``ci.failed`` and ``ci.passed``: ``{"worker", "prNumber", "headCommit", "checks": [{"name",
  "conclusion"}], "excerpt"}``.
- ``repository.added`` and ``repository.removed``: the repository as the API shows it.
- ``pr.reviewed``: the pull request fields of ``pr.created`` plus ``"reviews"``, each
  reviewer's latest review state (APPROVED, CHANGES_REQUESTED, COMMENTED, DISMISSED).
- ``worker.nudged``: ``{"worker", "message", "by"}``, ``by`` being "api" or "supervisor".
- ``agent.message``: the stored message (see services/workers/agents.py).
"""

import uuid
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from cocopilot.timeutil import now_iso


class EventType(StrEnum):
    WORKER_CREATED = "worker.created"
    WORKER_UPDATED = "worker.updated"
    WORKER_COMPLETED = "worker.completed"
    WORKER_FAILED = "worker.failed"
    WORKER_REMOVED = "worker.removed"
    PR_CREATED = "pr.created"
    PR_MERGED = "pr.merged"
    CI_FAILED = "ci.failed"
    # Internal: not offered to webhooks.
    CI_PASSED = "ci.passed"
    WORKER_NUDGED = "worker.nudged"
    AGENT_MESSAGE = "agent.message"
    PR_REVIEWED = "pr.reviewed"
    REPOSITORY_ADDED = "repository.added"
    REPOSITORY_REMOVED = "repository.removed"


PUBLIC_EVENT_TYPES: tuple[str, ...] = (
    EventType.WORKER_CREATED,
    EventType.WORKER_UPDATED,
    EventType.WORKER_COMPLETED,
    EventType.WORKER_FAILED,
    EventType.WORKER_REMOVED,
    EventType.PR_CREATED,
    EventType.PR_MERGED,
    EventType.CI_FAILED,
)


class Event(BaseModel):
    id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    type: EventType
    time: str = Field(default_factory=now_iso)
    repo_name: str | None = Field(default=None, alias="repoName")
    data: dict[str, Any] = Field(default_factory=dict)

    model_config = {"populate_by_name": True}

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()
