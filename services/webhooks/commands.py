"""Command handlers: register, delete and enable webhooks, redeliver, send a test message.

The api validates request bodies first; the checks here repeat what matters, because a command
may come from any NATS client.
"""

import json
import re
import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from redis.asyncio import Redis

from cocopilot import keys
from cocopilot.errors import Conflict, InvalidRequest, NotFound
from cocopilot.events import PUBLIC_EVENT_TYPES
from cocopilot.models import Webhook
from cocopilot.timeutil import now_iso
from cocopilot.webhook_deliveries import DeliveryView, get_delivery
from services.webhooks.addresses import AddressPolicy, Resolver, check_webhook_url
from services.webhooks.fanout import webhook_body
from services.webhooks.queue import DeliveryQueue, NewDelivery, now_ms
from services.webhooks.signing import generate_secret, secret_key

TEST_EVENT_TYPE = "webhook.test"
# Ids that this service hands out: uuid4 for webhooks, msg_ plus hex for deliveries.
_ID = re.compile(r"[A-Za-z0-9_-]{1,100}")


class CreateWebhookCommand(BaseModel):
    model_config = ConfigDict(extra="ignore")

    url: str
    events: list[str] = Field(min_length=1)
    secret: str | None = None

    @field_validator("events")
    @classmethod
    def check_events(cls, events: list[str]) -> list[str]:
        unknown = [event for event in events if event not in PUBLIC_EVENT_TYPES]
        if unknown:
            raise ValueError(
                f"unknown event {unknown[0]!r}; valid events: {', '.join(PUBLIC_EVENT_TYPES)}"
            )
        return list(dict.fromkeys(events))


def parse_create(payload: dict[str, Any]) -> CreateWebhookCommand:
    try:
        return CreateWebhookCommand.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        message = str(first["msg"]).removeprefix("Value error, ")
        raise InvalidRequest(f"invalid {field}: {message}") from exc


def webhook_id_of(payload: dict[str, Any]) -> str:
    """Return the payload's webhook id; one that this service never hands out is not found."""
    webhook_id = str(payload.get("id", ""))
    if not _ID.fullmatch(webhook_id):
        raise NotFound(f'Webhook "{webhook_id}" not found')
    return webhook_id


class WebhookCommands:
    def __init__(
        self,
        redis: Redis,
        queue: DeliveryQueue,
        resolver: Resolver,
        policy: AddressPolicy,
        resolve_timeout_s: float,
    ) -> None:
        self.redis = redis
        self.queue = queue
        self.resolver = resolver
        self.policy = policy
        self.resolve_timeout_s = resolve_timeout_s

    async def create(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Register a webhook; the reply is its view plus the secret, shown only here."""
        command = parse_create(payload)
        await check_webhook_url(command.url, self.resolver, self.policy, self.resolve_timeout_s)
        secret = command.secret if command.secret is not None else generate_secret()
        secret_key(secret)
        webhook = Webhook(
            id=str(uuid.uuid4()),
            url=command.url,
            events=command.events,
            created_at=now_iso(),
            secret=secret,
        )
        await self.redis.hset(keys.WEBHOOKS, webhook.id, webhook.to_json())
        return {**webhook.view().to_dict(), "secret": secret}

    async def delete(self, payload: dict[str, Any]) -> None:
        webhook_id = webhook_id_of(payload)
        if not await self.queue.delete_webhook(webhook_id):
            raise NotFound(f'Webhook "{webhook_id}" not found')

    async def enable(self, payload: dict[str, Any]) -> None:
        webhook_id = webhook_id_of(payload)
        if not await self.queue.enable(webhook_id):
            raise NotFound(f'Webhook "{webhook_id}" not found')

    async def redeliver(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Queue one more attempt of a delivery now, with the same webhook-id."""
        webhook_id = webhook_id_of(payload)
        delivery_id = str(payload.get("deliveryId", ""))
        if not _ID.fullmatch(delivery_id):
            raise NotFound(f'Delivery "{delivery_id}" of webhook "{webhook_id}" not found')
        result = await self.queue.redeliver(webhook_id, delivery_id, now_ms())
        if result == 0:
            await self._get_webhook(webhook_id)
            raise NotFound(f'Delivery "{delivery_id}" of webhook "{webhook_id}" not found')
        if result == -1:
            raise _disabled(webhook_id)
        return await self._view(webhook_id, delivery_id)

    async def test(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Queue a ``webhook.test`` message for one attempt, whichever events the webhook lists."""
        webhook = await self._get_webhook(webhook_id_of(payload))
        if await self.redis.hexists(keys.WEBHOOKS_DISABLED, webhook.id):
            raise _disabled(webhook.id)
        now = now_ms()
        delivery = NewDelivery(
            webhook_id=webhook.id,
            delivery_id="msg_" + uuid.uuid4().hex,
            event_id=str(uuid.uuid4()),
            event_type=TEST_EVENT_TYPE,
            body=webhook_body(TEST_EVENT_TYPE, now_iso(), {"webhookId": webhook.id}),
            created_ms=now,
            due_ms=now,
            max_attempts=1,
        )
        await self.queue.schedule([delivery], now)
        # Queued again through redeliver, which half-opens an open breaker, so the test goes out
        # now as the breaker's probe instead of waiting for the pause to end.
        await self.queue.redeliver(webhook.id, delivery.delivery_id, now)
        return await self._view(webhook.id, delivery.delivery_id)

    async def _get_webhook(self, webhook_id: str) -> Webhook:
        raw = await self.redis.hget(keys.WEBHOOKS, webhook_id)
        if raw is None:
            raise NotFound(f'Webhook "{webhook_id}" not found')
        return Webhook.model_validate_json(raw)

    async def _view(self, webhook_id: str, delivery_id: str) -> dict[str, Any]:
        delivery: DeliveryView = await get_delivery(self.redis, webhook_id, delivery_id)
        result: dict[str, Any] = json.loads(delivery.model_dump_json(by_alias=True))
        return result


def _disabled(webhook_id: str) -> Conflict:
    return Conflict(
        f'Webhook "{webhook_id}" is disabled because its endpoint responded 410 Gone; '
        f"enable it with POST /api/v1/webhooks/{webhook_id}/enable"
    )
