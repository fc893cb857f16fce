"""Webhooks and their delivery log. The webhooks service owns them: changes go to it as commands,
reads come straight from Redis."""

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Response, status
from pydantic import Field

from cocopilot import keys, store, subjects
from cocopilot.errors import NotFound
from cocopilot.models import Webhook, WebhookView
from cocopilot.webhook_deliveries import (
    DeliveryView,
    WebhookDisabled,
    disabled_webhooks,
    get_delivery,
    list_deliveries,
)
from services.api.errors import error_responses
from services.api.schemas import CreateWebhook
from services.api.state import ApiState, get_state

router = APIRouter(tags=["webhooks"])

State = Annotated[ApiState, Depends(get_state)]
WebhookIdParam = Annotated[str, Path(description="The webhook's id")]
DeliveryIdParam = Annotated[
    str, Path(alias="deliveryId", description="The delivery's id, also its webhook-id header")
]


class CreatedWebhook(WebhookView):
    secret: str = Field(
        description="Signing secret (whsec_ and base64); shown only in this response",
        examples=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
    )


class WebhookState(WebhookView):
    status: Literal["active", "disabled"] = Field(
        description="disabled after the endpoint responded 410 Gone, until enabled again"
    )
    disabled_at: str | None = None
    disabled_reason: str | None = None


def webhook_state(webhook: Webhook, disabled: WebhookDisabled | None) -> WebhookState:
    view = webhook.view().model_dump()
    if disabled is None:
        return WebhookState(**view, status="active")
    return WebhookState(
        **view,
        status="disabled",
        disabled_at=disabled.disabled_at,
        disabled_reason=disabled.reason,
    )


async def get_webhook_state(state: ApiState, webhook_id: str) -> WebhookState:
    raw = await state.redis.hget(keys.WEBHOOKS, webhook_id)
    if raw is None:
        raise NotFound(f'Webhook "{webhook_id}" not found')
    disabled = await state.redis.hget(keys.WEBHOOKS_DISABLED, webhook_id)
    return webhook_state(
        Webhook.model_validate_json(raw),
        WebhookDisabled.model_validate_json(disabled) if disabled else None,
    )


@router.post(
    "/webhooks",
    status_code=status.HTTP_201_CREATED,
    summary="Register a webhook",
    description="The URL must be http or https and resolve only to public addresses. The "
    "response carries the signing secret; it is shown only here.",
    responses=error_responses(400, 503, 504),
)
async def create_webhook(body: CreateWebhook, state: State) -> CreatedWebhook:
    result = await state.command(subjects.CREATE_WEBHOOK, body.model_dump(by_alias=True))
    return CreatedWebhook.model_validate(result)


@router.get("/webhooks", summary="List webhooks")
async def list_webhooks(state: State) -> list[WebhookState]:
    disabled = await disabled_webhooks(state.redis)
    webhooks = await store.list_webhooks(state.redis)
    return [webhook_state(webhook, disabled.get(webhook.id)) for webhook in webhooks]


@router.delete(
    "/webhooks/{id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove a webhook",
    description="Pending deliveries are dropped; the delivery log expires with its retention.",
    responses=error_responses(404, 503, 504),
)
async def delete_webhook(id: WebhookIdParam, state: State) -> Response:
    await state.command(subjects.DELETE_WEBHOOK, {"id": id})
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/webhooks/{id}/enable",
    summary="Enable a disabled webhook",
    description="Resumes its queued deliveries and closes its circuit breaker.",
    responses=error_responses(404, 503, 504),
)
async def enable_webhook(id: WebhookIdParam, state: State) -> WebhookState:
    await state.command(subjects.ENABLE_WEBHOOK, {"id": id})
    return await get_webhook_state(state, id)


@router.post(
    "/webhooks/{id}/test",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Send a test message",
    description='Queues one attempt of a "webhook.test" message, whichever events the webhook '
    "lists; its outcome appears in the delivery log.",
    responses=error_responses(404, 409, 503, 504),
)
async def test_webhook(id: WebhookIdParam, state: State) -> DeliveryView:
    result = await state.command(subjects.TEST_WEBHOOK, {"id": id})
    return DeliveryView.model_validate(result)


@router.get(
    "/webhooks/{id}/deliveries",
    summary="List a webhook's deliveries with their attempts",
    description="Newest first. Records are deleted after COCOPILOT_WEBHOOK_DELIVERY_RETENTION_S "
    "without change.",
    responses=error_responses(400, 404),
)
async def list_webhook_deliveries(
    id: WebhookIdParam,
    state: State,
    limit: Annotated[int, Query(ge=1, le=200, description="Deliveries to return")] = 50,
) -> list[DeliveryView]:
    await get_webhook_state(state, id)
    return await list_deliveries(state.redis, id, limit)


@router.get(
    "/webhooks/{id}/deliveries/{deliveryId}",
    summary="Get one delivery with its attempts",
    responses=error_responses(404),
)
async def get_webhook_delivery(
    id: WebhookIdParam, delivery_id: DeliveryIdParam, state: State
) -> DeliveryView:
    await get_webhook_state(state, id)
    return await get_delivery(state.redis, id, delivery_id)


@router.post(
    "/webhooks/{id}/deliveries/{deliveryId}/redeliver",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Send a delivery again",
    description="Queues one more attempt now, with the same webhook-id, so receivers that "
    "deduplicate by it see the same message.",
    responses=error_responses(404, 409, 503, 504),
)
async def redeliver(id: WebhookIdParam, delivery_id: DeliveryIdParam, state: State) -> DeliveryView:
    payload: dict[str, Any] = {"id": id, "deliveryId": delivery_id}
    result = await state.command(subjects.REDELIVER_WEBHOOK, payload)
    return DeliveryView.model_validate(result)
