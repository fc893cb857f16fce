"""Records stored in Redis and returned by the API, in the API's camelCase shape."""

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class CamelModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, exclude_none=True)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class WorkerStatus(StrEnum):
    STARTING = "starting"
    WORKING = "working"
    STUCK = "stuck"
    COMPLETED = "completed"
    FAILED = "failed"
    MERGED = "merged"


ACTIVE_STATUSES = frozenset({WorkerStatus.STARTING, WorkerStatus.WORKING, WorkerStatus.STUCK})


class WorkerView(CamelModel):
    """A worker as the API shows it."""

    name: str = Field(examples=["Snickers"])
    task: str = Field(examples=["Add unit tests for the auth module"])
    branch: str = Field(examples=["work/Snickers"])
    status: WorkerStatus
    repo_name: str = Field(examples=["my-app"])
    base_branch: str = Field(examples=["main"])
    agent: str = Field(examples=["demo"])
    model: str | None = Field(default=None, examples=["claude-sonnet-4-5"])
    error: str | None = Field(default=None, description="Why the worker failed.")
    waiting_for_input: bool = Field(
        default=False, description="The agent shows a prompt and has printed nothing since."
    )
    nudge_count: int = Field(default=0, description="Nudges typed into the session so far.")
    exit_code: int | None = None
    created_at: str = Field(examples=["2026-01-28T12:00:00.000Z"])
    updated_at: str = Field(examples=["2026-01-28T12:05:00.000Z"])


class Worker(WorkerView):
    """A worker as stored: the view plus what only the services need."""

    # The workers replica that runs the agent; stop commands go to it.
    instance_id: str
    worktree: str
    # The commit the branch started from; commits past it are the worker's own.
    base_commit: str | None = None
    # The agent process and its start time (seconds since the epoch), so a restarted service
    # can end an agent that outlived it without signalling a process that reused the pid.
    agent_pid: int | None = None
    agent_started_at: float | None = None

    def view(self) -> WorkerView:
        return WorkerView.model_validate(self.model_dump())


class RepositoryView(CamelModel):
    name: str = Field(examples=["my-app"])
    url: str = Field(examples=["https://github.com/octo/my-app.git"])
    default_branch: str = Field(examples=["main"])
    default_agent: str | None = Field(
        default=None,
        description="Agent of this repository's spawns that name none",
        examples=["claude"],
    )
    created_at: str = Field(examples=["2026-01-28T11:00:00.000Z"])


class Repository(RepositoryView):
    path: str  # the clone in the workers service's data folder

    def view(self) -> RepositoryView:
        return RepositoryView.model_validate(self.model_dump())


class WebhookView(CamelModel):
    id: str = Field(examples=["3f0c9a52-7d2b-4a8e-9c1f-5b6e2d8a7c40"])
    url: str = Field(examples=["https://example.com/hooks/cocopilot"])
    events: list[str] = Field(examples=[["worker.completed", "pr.merged"]])
    created_at: str = Field(examples=["2026-01-28T12:00:00.000Z"])


class Webhook(WebhookView):
    secret: str

    def view(self) -> WebhookView:
        return WebhookView.model_validate(self.model_dump())
