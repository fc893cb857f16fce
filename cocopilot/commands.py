"""Command payloads that the api receives as request bodies and the workers service serves.

The api validates them; the workers service validates them again, since a command may come
from any NATS client. The checks of cocopilot.validation raise InvalidRequest, a ValueError,
which pydantic reports and the api's error handler turns into a 400 that names the field."""

from functools import partial
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
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
