"""The webhook delivery log: records written by the webhooks service and read by the api.

A delivery is one event (or test message) for one webhook. Its id is also the ``webhook-id``
header, the same on every attempt. In Redis a delivery is a hash (keys.webhook_delivery) with
the fields below, its attempts a list of JSON objects (keys.webhook_delivery_attempts), and each
webhook has an index of its deliveries by creation time (keys.webhook_deliveries). Times in
Redis are milliseconds since the epoch.
"""

import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import Field
from redis.asyncio import Redis

from cocopilot import keys
from cocopilot.errors import NotFound
from cocopilot.models import CamelModel
from cocopilot.timeutil import format_time


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # an attempt is due, running, or waiting for its retry time
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # retries ran out, or the endpoint responded 410 Gone


class DeliveryAttempt(CamelModel):
    attempted_at: str = Field(examples=["2026-01-28T12:00:05.000Z"])
    status_code: int | None = Field(
        default=None, description="HTTP status of the response; null when none arrived"
    )
    latency_ms: float = Field(description="From the start of the attempt to the response")
    error: str | None = Field(default=None, description="Why the attempt failed")
    response_body: str | None = Field(
        default=None, description="The first 16 KiB of the response body"
    )
    response_truncated: bool = False
    address: str | None = Field(default=None, description="The IP address connected to")


class DeliveryView(CamelModel):
    id: str = Field(description="Also the webhook-id header", examples=["msg_2b6f0c..."])
    webhook_id: str
    event_id: str
    event_type: str = Field(examples=["worker.completed"])
    status: DeliveryStatus
    created_at: str = Field(examples=["2026-01-28T12:00:00.000Z"])
    next_attempt_at: str | None = Field(
        default=None, description="When the next attempt is due, while the status is pending"
    )
    attempt_count: int
    payload: dict[str, Any] = Field(description='The body sent: {"type", "timestamp", "data"}')
    attempts: list[DeliveryAttempt] = Field(description="Oldest first")


class WebhookDisabled(CamelModel):
    disabled_at: str
    reason: str


def ms_to_iso(ms: int | float | str) -> str:
    return format_time(datetime.fromtimestamp(int(ms) / 1000, UTC))


def delivery_view(record: dict[str, str], attempts: list[str]) -> DeliveryView:
    next_attempt_ms = record.get("nextAttemptAt", "")
    return DeliveryView(
        id=record["id"],
        webhook_id=record["webhookId"],
        event_id=record["eventId"],
        event_type=record["eventType"],
        status=DeliveryStatus(record["status"]),
        created_at=ms_to_iso(record["createdAt"]),
        next_attempt_at=ms_to_iso(next_attempt_ms) if next_attempt_ms else None,
        attempt_count=int(record.get("attemptCount", 0)),
        payload=json.loads(record["body"]),
        attempts=[DeliveryAttempt.model_validate_json(attempt) for attempt in attempts],
    )


async def read_deliveries(redis: Redis, delivery_ids: list[str]) -> list[DeliveryView]:
    """Read deliveries in the given order, skipping those that expired."""
    async with redis.pipeline(transaction=False) as pipe:
        for delivery_id in delivery_ids:
            pipe.hgetall(keys.webhook_delivery(delivery_id))
            pipe.lrange(keys.webhook_delivery_attempts(delivery_id), 0, -1)
        replies = await pipe.execute()
    records = replies[0::2]
    attempt_lists = replies[1::2]
    return [
        delivery_view(record, attempts)
        for record, attempts in zip(records, attempt_lists, strict=True)
        if record
    ]


async def list_deliveries(redis: Redis, webhook_id: str, limit: int) -> list[DeliveryView]:
    """Return a webhook's latest deliveries, newest first."""
    ids = await redis.zrevrange(keys.webhook_deliveries(webhook_id), 0, limit - 1)
    return await read_deliveries(redis, [str(delivery_id) for delivery_id in ids])


async def get_delivery(redis: Redis, webhook_id: str, delivery_id: str) -> DeliveryView:
    deliveries = await read_deliveries(redis, [delivery_id])
    if not deliveries or deliveries[0].webhook_id != webhook_id:
        raise NotFound(f'Delivery "{delivery_id}" of webhook "{webhook_id}" not found')
    return deliveries[0]


async def disabled_webhooks(redis: Redis) -> dict[str, WebhookDisabled]:
    records = await redis.hgetall(keys.WEBHOOKS_DISABLED)
    return {
        str(webhook_id): WebhookDisabled.model_validate_json(raw)
        for webhook_id, raw in records.items()
    }
