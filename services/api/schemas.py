"""Request bodies of the api's own routes; the workers' ones are in cocopilot.commands."""

from typing import Annotated

from pydantic import AfterValidator, Field

from cocopilot.commands import RequestModel
from cocopilot.events import PUBLIC_EVENT_TYPES

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


class CreateWebhook(RequestModel):
    url: str = Field(examples=["https://example.com/hooks/cocopilot"])
    events: Annotated[list[EventName], AfterValidator(_check_events)] = Field(
        examples=[["worker.completed", "pr.merged"]]
    )
    secret: str | None = Field(
        default=None,
        description="Signing secret; one is generated and returned once when omitted",
    )
