"""Webhook registrations. The webhooks service owns them; this module forwards the changes."""

from typing import Annotated

from fastapi import APIRouter, Depends, Response, status

from cocopilot import store, subjects
from cocopilot.models import WebhookView
from services.api.errors import error_responses
from services.api.schemas import CreateWebhook
from services.api.state import ApiState, get_state

router = APIRouter(tags=["webhooks"])

State = Annotated[ApiState, Depends(get_state)]


class CreatedWebhook(WebhookView):
    secret: str


@router.post(
    "/webhooks",
    status_code=status.HTTP_201_CREATED,
    summary="Register a webhook",
    description="The response carries the signing secret; it is shown only here.",
    responses=error_responses(400, 503, 504),
)
async def create_webhook(body: CreateWebhook, state: State) -> CreatedWebhook:
    result = await state.command(subjects.CREATE_WEBHOOK, body.model_dump(by_alias=True))
    return CreatedWebhook.model_validate(result)


@router.get("/webhooks", summary="List webhooks")
async def list_webhooks(state: State) -> list[WebhookView]:
    return [webhook.view() for webhook in await store.list_webhooks(state.redis)]


@router.delete(
    "/webhooks/{id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove a webhook",
    responses=error_responses(404, 503, 504),
)
async def delete_webhook(id: str, state: State) -> Response:
    await state.command(subjects.DELETE_WEBHOOK, {"id": id})
    return Response(status_code=status.HTTP_204_NO_CONTENT)
