"""Command payloads that the api receives as request bodies and the workers service serves.

The api validates them; the workers service validates them again, since a command may come
from any NATS client. The checks of cocopilot.validation raise InvalidRequest, a ValueError,
which pydantic reports and the api's error handler turns into a 400 that names the field."""

from functools import partial
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from cocopilot import validation

Name = Annotated[str, AfterValidator(partial(validation.check_name, field="name"))]
BranchName = Annotated[str, AfterValidator(validation.check_branch)]
Task = Annotated[str, AfterValidator(validation.check_task)]
Model = Annotated[str, AfterValidator(validation.check_model)]


class RequestModel(BaseModel):
    # strict: "1" is no integer and 1 is no string; forbid: a misspelt field is an error, not
    # a silently ignored one.
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, strict=True, extra="forbid"
    )


class WorkerSpec(RequestModel):
    task: Task = Field(examples=["Add unit tests for the auth module"])
    branch: BranchName | None = Field(
        default=None, description="Base branch; the repository's default branch when omitted"
    )
    name: Name | None = Field(
        default=None, description="Worker name; a candy name is assigned when omitted"
    )
    model: Model | None = Field(default=None, examples=["claude-sonnet-4-5"])
    agent: Name | None = Field(
        default=None, description="Agent runtime profile, such as demo or command"
    )


class SpawnWorker(WorkerSpec):
    repo_name: Name = Field(examples=["my-app"])


class AddRepository(RequestModel):
    url: str = Field(
        description="A git URL (https, http, ssh, git, user@host:path), or a local path or "
        "file:// URL inside COCOPILOT_LOCAL_REPO_ROOTS",
        examples=["https://github.com/octo/my-app.git"],
    )
    name: Name | None = Field(
        default=None, description="Defaults to the last part of the URL without .git"
    )
    default_branch: BranchName | None = Field(
        default=None, description="Defaults to the branch that the remote's HEAD points to"
    )


MAX_MESSAGE_BYTES = 64 * 1024
DEFAULT_NUDGE = (
    "You seem to have stopped making progress. Continue with your task, "
    "or say what is blocking you."
)


def _check_message_text(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    if len(value.encode()) > MAX_MESSAGE_BYTES or "\x00" in value:
        raise ValueError(f"must be at most {MAX_MESSAGE_BYTES} bytes, with no NUL characters")
    return value


MessageText = Annotated[str, AfterValidator(_check_message_text)]


class Nudge(RequestModel):
    message: MessageText | None = Field(
        default=None,
        description="Text typed into the worker's session; a standard reminder when omitted",
        examples=["Run the tests before you finish."],
    )


class AgentMessage(RequestModel):
    type: str = Field(
        default="text",
        pattern=r"^[a-z][a-z0-9-]{0,31}$",
        description="text for a worker; for built-in agents one of the types they document",
        examples=["text", "nudge-all", "pause"],
    )
    text: MessageText | None = Field(default=None, examples=["Also update the changelog."])
    payload: dict[str, Any] | None = Field(default=None, description="Data for built-in agents")
    sender: Name | None = Field(
        default=None, alias="from", description="Who sends it, for the inbox", examples=["alice"]
    )

    @model_validator(mode="after")
    def _text_or_payload(self) -> "AgentMessage":
        if self.text is not None and self.payload is not None:
            raise ValueError("give text or payload, not both")
        if self.type == "text" and self.text is None:
            raise ValueError("a text message needs text")
        return self
