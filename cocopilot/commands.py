"""Command payloads that the api receives as request bodies and the workers service serves.

The api validates them; the workers service validates them again, since a command may come
from any NATS client. The checks of cocopilot.validation raise InvalidRequest, a ValueError,
whose message names the field; the api's error handler returns it as a 400 unchanged. Each
checked type also carries the JSON Schema of its check, so the OpenAPI document states the rule.
"""

from functools import partial
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema, model_validator
from pydantic.alias_generators import to_camel

from cocopilot import validation
from cocopilot.errors import InvalidRequest

# Built-in agents of every repository. No worker may take their names.
BUILT_IN_AGENT_NAMES = ("supervisor", "merge-queue", "pr-shepherd")

NAME_SCHEMA: dict[str, Any] = {
    "type": "string",
    "minLength": 1,
    "maxLength": validation.MAX_NAME_LENGTH,
    "pattern": validation.NAME_PATTERN,
}
TEXT_SCHEMA = WithJsonSchema({"type": "string", "pattern": validation.TEXT_PATTERN})
BRANCH_SCHEMA = WithJsonSchema({"type": "string", "pattern": validation.BRANCH_PATTERN})


def check_worker_name(value: str) -> str:
    validation.check_name(value, "name")
    if value in BUILT_IN_AGENT_NAMES:
        raise InvalidRequest(f"name {value!r} is the name of a built-in agent; choose another")
    return value


WorkerName = Annotated[
    str,
    AfterValidator(check_worker_name),
    WithJsonSchema({**NAME_SCHEMA, "not": {"enum": list(BUILT_IN_AGENT_NAMES)}}),
]
RepoName = Annotated[
    str,
    AfterValidator(partial(validation.check_name, field="repoName")),
    WithJsonSchema(NAME_SCHEMA),
]
AgentProfileName = Annotated[
    str, AfterValidator(partial(validation.check_name, field="agent")), WithJsonSchema(NAME_SCHEMA)
]
SenderName = Annotated[
    str, AfterValidator(partial(validation.check_name, field="from")), WithJsonSchema(NAME_SCHEMA)
]
Branch = Annotated[
    str, AfterValidator(partial(validation.check_branch, field="branch")), BRANCH_SCHEMA
]
DefaultBranch = Annotated[
    str, AfterValidator(partial(validation.check_branch, field="defaultBranch")), BRANCH_SCHEMA
]
Task = Annotated[str, AfterValidator(partial(validation.check_text, field="task")), TEXT_SCHEMA]
TERMINAL_TEXT_SCHEMA = WithJsonSchema(
    {"type": "string", "pattern": validation.TERMINAL_TEXT_PATTERN}
)
NudgeText = Annotated[
    str,
    AfterValidator(partial(validation.check_terminal_text, field="message")),
    TERMINAL_TEXT_SCHEMA,
]
MessageText = Annotated[
    str,
    AfterValidator(partial(validation.check_terminal_text, field="text")),
    TERMINAL_TEXT_SCHEMA,
]
Model = Annotated[
    str,
    AfterValidator(validation.check_model),
    WithJsonSchema({"type": "string", "pattern": validation.MODEL_PATTERN}),
]


def _check_ci_command(argv: list[str]) -> list[str]:
    if not argv or not argv[0]:
        raise ValueError("must name a program to run")
    if len(argv) > 100 or any(len(arg) > 4096 or "\x00" in arg for arg in argv):
        raise ValueError("must be at most 100 arguments of at most 4096 characters, no NUL")
    return argv


CiCommand = Annotated[list[str], AfterValidator(_check_ci_command)]

# After GitHub's naming rules: an owner is up to 39 letters, digits and hyphens, starting with a
# letter or digit, and a repository name is up to 100 letters, digits, '.', '_' and '-'.
GITHUB_REPOSITORY_PATTERN = r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$"
GitHubRepository = Annotated[str, Field(pattern=GITHUB_REPOSITORY_PATTERN)]
# GitHub allows label names of at most 50 characters.
PrLabel = Annotated[str, Field(min_length=1, max_length=50, pattern=r"^[^\x00-\x1f\x7f]+$")]
PrLabels = Annotated[list[PrLabel], Field(max_length=20)]


class RequestModel(BaseModel):
    # strict: "1" is no integer and 1 is no string; forbid: a misspelt field is an error, not
    # a silently ignored one. Only the camelCase names validate, so repo_name is unknown too.
    model_config = ConfigDict(alias_generator=to_camel, strict=True, extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _reject_lone_surrogates(cls, data: Any) -> Any:
        check_unicode(data)
        return data


def check_unicode(data: Any) -> None:
    """Raise InvalidRequest when a string in ``data`` cannot be encoded as UTF-8."""
    where = validation.find_lone_surrogate(data)
    if where is not None:
        raise InvalidRequest(
            f"{where or 'the request body'} must be valid Unicode: it contains a lone "
            "surrogate (\\ud800 to \\udfff)"
        )


class WorkerSpec(RequestModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"task": "Add unit tests for the auth module", "name": "Snickers"}]
        }
    )

    task: Task = Field(
        description=f"What the agent should do: at most {validation.MAX_TEXT_BYTES} bytes as "
        "UTF-8, not blank, no NUL characters",
        examples=["Add unit tests for the auth module"],
    )
    branch: Branch | None = Field(
        default=None,
        description="Base branch, a name that git check-ref-format --branch accepts; the "
        "repository's default branch when omitted",
        examples=["main"],
    )
    name: WorkerName | None = Field(
        default=None,
        description="Worker name, unique across repositories: 1 to 64 letters, digits, '.', '_' "
        "or '-', starting with a letter or digit; a candy name is assigned when omitted",
        examples=["Snickers"],
    )
    model: Model | None = Field(default=None, examples=["claude-sonnet-4-5"])
    agent: AgentProfileName | None = Field(
        default=None,
        description="Agent runtime profile, such as demo or command; the configured "
        "defaultAgent when omitted",
        examples=["demo"],
    )


class SpawnWorker(WorkerSpec):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "task": "Add unit tests for the auth module",
                    "repoName": "my-app",
                    "branch": "main",
                    "name": "Snickers",
                    "model": "claude-sonnet-4-5",
                }
            ]
        }
    )

    repo_name: RepoName = Field(description="Name of a tracked repository", examples=["my-app"])


class AddRepository(RequestModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"url": "https://github.com/octo/my-app.git", "defaultBranch": "main"}]
        }
    )

    url: str = Field(
        description="A git URL (https, http, ssh, git, user@host:path), or a local path or "
        "file:// URL inside COCOPILOT_LOCAL_REPO_ROOTS",
        examples=["https://github.com/octo/my-app.git"],
    )
    name: RepoName | None = Field(
        default=None,
        description="Defaults to the last part of the URL without .git",
        examples=["my-app"],
    )
    default_branch: DefaultBranch | None = Field(
        default=None,
        description="Defaults to the branch that the remote's HEAD points to",
        examples=["main"],
    )
    default_agent: AgentProfileName | None = Field(
        default=None,
        description="Agent of this repository's spawns that name none; defaults to the global "
        "defaultAgent",
        examples=["claude"],
    )
    forge: Literal["local", "github"] | None = Field(
        default=None,
        description="Where pull requests, CI and merges live: local keeps them in the clone, "
        "github uses GitHub's REST API. Defaults to github for a github.com URL when the "
        "workers service has a GitHub token, else local",
    )
    github_repository: GitHubRepository | None = Field(
        default=None,
        description="owner/name on GitHub, for the github forge; read from a github.com URL "
        "when omitted",
        examples=["octo/my-app"],
    )
    pr_labels: PrLabels | None = Field(
        default=None,
        description="Labels that the github forge adds to each pull request it opens",
        examples=[["cocopilot"]],
    )
    merge_mode: Literal["queue", "manual"] = Field(
        default="queue",
        description="queue: the merge queue merges green pull requests; manual: people merge, "
        "and the PR shepherd follows them",
    )
    ci_command: CiCommand | None = Field(
        default=None,
        description="argv of the CI that the local forge runs in a clean checkout of each "
        "pull request's head commit; without it, pull requests have no checks",
        examples=[["python", "-m", "pytest", "-q"]],
    )


DEFAULT_NUDGE = (
    "You seem to have stopped making progress. Continue with your task, "
    "or say what is blocking you."
)


class Nudge(RequestModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"message": "Run the tests before you finish."}]}
    )

    message: NudgeText | None = Field(
        default=None,
        description="Text typed into the worker's session; a standard reminder when omitted",
        examples=["Run the tests before you finish."],
    )


class AgentMessage(RequestModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"text": "Also update the changelog.", "from": "alice"},
                {"type": "nudge-all"},
                {"type": "pause", "from": "alice"},
            ],
            # The rules of _text_or_payload: a text message (the default type) needs text, and
            # no message has both text and a payload.
            "if": {"properties": {"type": {"const": "text"}}},
            "then": {"properties": {"text": {"type": "string"}}, "required": ["text"]},
            "not": {
                "properties": {"text": {"type": "string"}, "payload": {"type": "object"}},
                "required": ["text", "payload"],
            },
        }
    )

    type: str = Field(
        default="text",
        pattern=r"^[a-z][a-z0-9-]{0,31}$",
        description="text for a worker; for built-in agents one of the types they document",
        examples=["text", "nudge-all", "pause"],
    )
    text: MessageText | None = Field(default=None, examples=["Also update the changelog."])
    payload: dict[str, Any] | None = Field(default=None, description="Data for built-in agents")
    sender: SenderName | None = Field(
        default=None, alias="from", description="Who sends it, for the inbox", examples=["alice"]
    )

    @model_validator(mode="after")
    def _text_or_payload(self) -> "AgentMessage":
        if self.text is not None and self.payload is not None:
            raise InvalidRequest("give text or payload, not both")
        if self.type == "text" and self.text is None:
            raise InvalidRequest("a text message needs text")
        return self
