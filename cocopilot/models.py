"""Records stored in Redis and returned by the API, in the API's camelCase shape."""

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class CamelModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, exclude_none=True)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


ForgeKind = Literal["local", "github"]
MergeMode = Literal["queue", "manual"]


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
    pr_number: int | None = Field(default=None, description="Its pull request, once opened.")
    pr_url: str | None = None
    fixup_of: int | None = Field(
        default=None, description="The pull request whose failure this worker fixes."
    )
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
    forge: ForgeKind = Field(default="local", description="Where pull requests and CI live")
    merge_mode: MergeMode = Field(
        default="queue",
        description="queue: the merge queue merges green pull requests; manual: people merge "
        "and the PR shepherd follows them",
    )
    ci_command: list[str] | None = Field(
        default=None,
        description="argv of the local forge's CI, run in a clean checkout of the head commit",
        examples=[["python", "-m", "pytest", "-q"]],
    )
    github_repository: str | None = Field(
        default=None,
        description="owner/name of the repository on GitHub, for the github forge",
        examples=["octo/my-app"],
    )
    pr_labels: list[str] | None = Field(
        default=None,
        description="Labels that the github forge adds to each pull request",
        examples=[["cocopilot"]],
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


class PrStage(StrEnum):
    OPEN = "open"
    CI_RUNNING = "ci_running"
    CI_FAILED = "ci_failed"
    READY = "ready"
    MERGED = "merged"
    CLOSED = "closed"


OPEN_PR_STAGES = frozenset({PrStage.OPEN, PrStage.CI_RUNNING, PrStage.CI_FAILED, PrStage.READY})


class CheckResult(CamelModel):
    name: str = Field(examples=["ci"])
    conclusion: Literal["success", "failure", "pending"]
    excerpt: str | None = Field(default=None, description="The end of the check's output")


class PullRequest(CamelModel):
    number: int = Field(examples=[7])
    repo_name: str = Field(examples=["my-app"])
    worker: str = Field(examples=["Snickers"])
    title: str
    url: str = Field(examples=["https://github.com/octo/my-app/pull/7"])
    branch: str = Field(examples=["work/Snickers"])
    base_branch: str = Field(examples=["main"])
    head_commit: str
    stage: PrStage
    # CI results stand for head_commit only; a new head makes them void.
    checks: list[CheckResult] = Field(default_factory=list)
    checks_commit: str | None = None
    fixups: int = Field(default=0, description="Fix-up workers spawned for it so far")
    reviews: dict[str, str] = Field(
        default_factory=dict,
        description="Each reviewer's latest review state, where the forge has reviews",
        examples=[{"alice": "APPROVED"}],
    )
    merge_commit: str | None = None
    created_at: str
    updated_at: str
    merged_at: str | None = None
