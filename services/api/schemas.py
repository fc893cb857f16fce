"""Request bodies of the api's own routes (the workers' ones are in cocopilot.commands), and
the path parameters that name repositories, workers and agents."""

from functools import partial
from typing import Annotated

from fastapi import Path
from pydantic import AfterValidator, ConfigDict, Field, WithJsonSchema

from cocopilot.commands import NAME_SCHEMA, RequestModel
from cocopilot.events import PUBLIC_EVENT_TYPES
from cocopilot.validation import check_name

# A name that check_name rejects cannot exist, so it is a 400. Looked up, it could read a key of
# another kind: "app:workers" as a repository name reads the key of app's worker set.
RepoNamePath = Annotated[
    str,
    Path(alias="repoName", description="Name of a tracked repository"),
    AfterValidator(partial(check_name, field="repoName")),
    WithJsonSchema(NAME_SCHEMA),
]
WorkerNamePath = Annotated[
    str,
    Path(alias="workerName", description="Name of a worker of the repository"),
    AfterValidator(partial(check_name, field="workerName")),
    WithJsonSchema(NAME_SCHEMA),
]
FlatWorkerNamePath = Annotated[
    str,
    Path(description="Name of a worker, unique across repositories"),
    AfterValidator(partial(check_name, field="name")),
    WithJsonSchema(NAME_SCHEMA),
]
AgentNamePath = Annotated[
    str,
    Path(alias="agentName", description="supervisor, merge-queue, or a worker's name"),
    AfterValidator(partial(check_name, field="agentName")),
    WithJsonSchema(NAME_SCHEMA),
]

EventName = Annotated[str, Field(json_schema_extra={"enum": list(PUBLIC_EVENT_TYPES)})]


def _check_events(events: list[str]) -> list[str]:
    if not events:
        raise ValueError("events must list at least one event")
    unknown = [event for event in events if event not in PUBLIC_EVENT_TYPES]
    if unknown:
        raise ValueError(
            f"unknown event {unknown[0]!r}; valid events: {', '.join(PUBLIC_EVENT_TYPES)}"
        )
    return list(dict.fromkeys(events))


# The webhooks service's rule for a secret, in base64 groups of 4 characters (3 bytes): 8 to 20
# groups with an optional tail of 1 or 2 bytes, or 21 groups with an optional 1-byte tail.
_BASE64_GROUP = "[A-Za-z0-9+/]{4}"
_BASE64_TAIL = "(?:[A-Za-z0-9+/]{2}(?:==)?|[A-Za-z0-9+/]{3}=?)"
_BASE64_ONE_BYTE = "(?:[A-Za-z0-9+/]{2}(?:==)?)"
SECRET_PATTERN = (
    f"^whsec_(?:(?:{_BASE64_GROUP}){{8,20}}{_BASE64_TAIL}?"
    f"|(?:{_BASE64_GROUP}){{21}}{_BASE64_ONE_BYTE}?)$"
)
# Documented only: the webhooks service checks the secret and names the problem.
WebhookSecret = Annotated[str, WithJsonSchema({"type": "string", "pattern": SECRET_PATTERN})]


class CreateWebhook(RequestModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "url": "https://example.com/hooks/cocopilot",
                    "events": ["worker.completed", "pr.merged"],
                }
            ]
        }
    )

    url: str = Field(examples=["https://example.com/hooks/cocopilot"])
    events: Annotated[list[EventName], AfterValidator(_check_events)] = Field(
        examples=[["worker.completed", "pr.merged"]],
        # Documented only, so the message of _check_events stays the one callers see.
        json_schema_extra={"minItems": 1},
    )
    secret: WebhookSecret | None = Field(
        default=None,
        description="Signing secret: whsec_ and the base64 (padded or not) of 24 to 64 random "
        "bytes; one is generated and returned once when omitted",
    )
