"""Delivery state in Redis: scheduling, claiming and completing attempts (see ``_scripts``)."""

import json
import time
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from cocopilot import keys
from cocopilot.models import Webhook
from cocopilot.webhook_deliveries import ms_to_iso
from services.webhooks import _scripts

# Templates of the per-id keys, for the scripts that build keys from ids.
DELIVERY_TEMPLATE = keys.webhook_delivery("{id}")
QUEUE_TEMPLATE = keys.webhook_queue("{id}")
BREAKER_TEMPLATE = keys.webhook_breaker("{id}")
INDEX_TEMPLATE = keys.webhook_deliveries("{id}")

# The log lists at most this many of a webhook's latest deliveries.
INDEX_MAX_DELIVERIES = 10_000
# Attempts kept per delivery; older ones are dropped when redeliveries add more.
ATTEMPTS_KEPT = 100


def now_ms() -> int:
    """Return the wall-clock time in milliseconds since the epoch, the unit of every time
    stored with deliveries."""
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class NewDelivery:
    webhook_id: str
    delivery_id: str
    event_id: str
    event_type: str
    body: str
    created_ms: int
    due_ms: int
    max_attempts: int

    def script_args(self) -> list[str | int]:
        return [
            self.webhook_id,
            self.delivery_id,
            self.event_id,
            self.event_type,
            self.body,
            self.created_ms,
            self.due_ms,
            self.max_attempts,
        ]


@dataclass(frozen=True)
class ClaimedDelivery:
    delivery_id: str
    body: str
    attempt: int  # this attempt's number, counted from 1
    max_attempts: int
    event_type: str
    lease_until_ms: int


@dataclass(frozen=True)
class Claim:
    webhook: Webhook
    deliveries: list[ClaimedDelivery]


@dataclass(frozen=True)
class Completion:
    """The outcome of an attempt and the schedule after it, for ``DeliveryQueue.complete``."""

    outcome: str  # "success", "failure" or "gone"
    next_due_ms: int | None  # None when no attempt follows
    final_status: str  # the delivery's status when no attempt follows
    hold_until_ms: int = 0  # no attempt to this webhook before this time (Retry-After)


@dataclass(frozen=True)
class BreakerSettings:
    failures: int
    pause_ms: int
    pause_max_ms: int


def webhook_keys(webhook_id: str) -> list[str]:
    """Keys that every per-webhook script takes first, in their order."""
    return [
        keys.WEBHOOKS,
        keys.WEBHOOKS_DISABLED,
        keys.WEBHOOKS_READY,
        keys.webhook_queue(webhook_id),
        keys.webhook_in_flight(webhook_id),
        keys.webhook_breaker(webhook_id),
    ]


class DeliveryQueue:
    def __init__(self, redis: Redis, retention_s: float, breaker: BreakerSettings) -> None:
        self.redis = redis
        self.retention_s = max(int(retention_s), 1)
        self.breaker = breaker
        self._schedule = redis.register_script(_scripts.SCHEDULE)
        self._claim = redis.register_script(_scripts.CLAIM)
        self._complete = redis.register_script(_scripts.COMPLETE)
        self._redeliver = redis.register_script(_scripts.REDELIVER)
        self._enable = redis.register_script(_scripts.ENABLE)

    async def schedule(self, deliveries: list[NewDelivery], now_ms: int) -> int:
        """Create the deliveries that do not exist yet; return how many were created."""
        if not deliveries:
            return 0
        args: list[Any] = [now_ms, self.retention_s, INDEX_MAX_DELIVERIES]
        args += [DELIVERY_TEMPLATE, QUEUE_TEMPLATE, BREAKER_TEMPLATE, INDEX_TEMPLATE]
        for delivery in deliveries:
            args += delivery.script_args()
        script_keys = [keys.WEBHOOKS, keys.WEBHOOKS_DISABLED, keys.WEBHOOKS_READY]
        created: int = await self._schedule(keys=script_keys, args=args)
        return created

    async def due_webhooks(self, now_ms: int, limit: int) -> list[str]:
        ids = await self.redis.zrangebyscore(keys.WEBHOOKS_READY, "-inf", now_ms, 0, limit)
        return [str(webhook_id) for webhook_id in ids]

    async def next_ready_ms(self) -> int | None:
        first = await self.redis.zrange(keys.WEBHOOKS_READY, 0, 0, withscores=True)
        return int(first[0][1]) if first else None

    async def claim(
        self, webhook_id: str, now_ms: int, endpoint_limit: int, max_claims: int, lease_ms: int
    ) -> Claim | None:
        """Claim up to ``max_claims`` due deliveries of one webhook, within its limits."""
        args: list[str | int] = [webhook_id, now_ms, endpoint_limit, max_claims, lease_ms]
        args.append(self.breaker.failures)
        reply = await self._claim(keys=webhook_keys(webhook_id), args=[*args, DELIVERY_TEMPLATE])
        if len(reply) < 2:
            return None
        lease_until_ms = now_ms + lease_ms
        deliveries = [
            ClaimedDelivery(
                delivery_id=str(reply[i]),
                body=str(reply[i + 1]),
                attempt=int(reply[i + 2]),
                max_attempts=int(reply[i + 3]),
                event_type=str(reply[i + 4]),
                lease_until_ms=lease_until_ms,
            )
            for i in range(1, len(reply), 5)
        ]
        return Claim(Webhook.model_validate_json(reply[0]), deliveries)

    async def complete(
        self,
        webhook_id: str,
        claimed: ClaimedDelivery,
        attempt_json: str,
        completion: Completion,
        now_ms: int,
    ) -> tuple[bool, int]:
        """Record an attempt and schedule what follows it.

        Returns whether the claim was still the caller's (when not, only the attempt is
        recorded) and the time until which the breaker opened (0 when it did not open).
        """
        script_keys = [
            *webhook_keys(webhook_id),
            keys.webhook_delivery(claimed.delivery_id),
            keys.webhook_delivery_attempts(claimed.delivery_id),
            keys.WEBHOOK_DELIVERY_OUTCOMES,
        ]
        args: list[str | int] = [
            webhook_id,
            claimed.delivery_id,
            claimed.lease_until_ms,
            now_ms,
            attempt_json,
            *self._completion_args(completion, now_ms),
        ]
        owned, opened_until_ms = await self._complete(keys=script_keys, args=args)
        return bool(owned), int(opened_until_ms)

    def _completion_args(self, completion: Completion, now_ms: int) -> list[str | int]:
        disabled = json.dumps(
            {"disabledAt": ms_to_iso(now_ms), "reason": "the endpoint responded 410 Gone"}
        )
        return [
            completion.outcome,
            "" if completion.next_due_ms is None else completion.next_due_ms,
            completion.final_status,
            self.retention_s,
            ATTEMPTS_KEPT,
            self.breaker.failures,
            self.breaker.pause_ms,
            self.breaker.pause_max_ms,
            completion.hold_until_ms,
            disabled,
        ]

    async def redeliver(self, webhook_id: str, delivery_id: str, now_ms: int) -> int:
        script_keys = [*webhook_keys(webhook_id), keys.webhook_delivery(delivery_id)]
        result: int = await self._redeliver(
            keys=script_keys, args=[webhook_id, delivery_id, now_ms]
        )
        return result

    async def enable(self, webhook_id: str) -> bool:
        script_keys = webhook_keys(webhook_id)
        del script_keys[4]  # the script takes no in-flight set
        return bool(await self._enable(keys=script_keys, args=[webhook_id]))

    async def delete_webhook(self, webhook_id: str) -> bool:
        """Remove a registration and its delivery state; the delivery records expire later."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(keys.WEBHOOKS, webhook_id)
            pipe.hdel(keys.WEBHOOKS_DISABLED, webhook_id)
            pipe.zrem(keys.WEBHOOKS_READY, webhook_id)
            pipe.delete(
                keys.webhook_queue(webhook_id),
                keys.webhook_in_flight(webhook_id),
                keys.webhook_breaker(webhook_id),
                keys.webhook_deliveries(webhook_id),
            )
            removed, *_ = await pipe.execute()
        return bool(removed)
