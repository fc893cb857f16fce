"""Turn events from the JetStream stream into deliveries, one per subscribed webhook.

A durable pull consumer hands out the public event types. Each batch of events is written to
Redis as deliveries in one script call, and only then acked, so an event is never lost. If the
service dies before the ack, JetStream hands the event out again after the ack wait. The
delivery ids are derived from the event and webhook ids, so the second write is a no-op.
"""

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Callable

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.client import JetStreamContext
from pydantic import ValidationError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from cocopilot import keys, subjects
from cocopilot.events import PUBLIC_EVENT_TYPES, Event
from cocopilot.models import Webhook
from cocopilot.timeutil import parse_time
from services.webhooks.queue import DeliveryQueue, NewDelivery, now_ms

log = logging.getLogger(__name__)

DURABLE_NAME = "webhooks"
BATCH_SIZE = 256
FETCH_TIMEOUT_S = 1.0  # maximum wait for the next event before looking at the stop flag
COLLECT_TIMEOUT_S = 0.001  # maximum wait for more events once one arrived
RETRY_DELAY_S = 1.0  # before an event whose deliveries could not be written is handed out again
# Namespace of the uuid5 delivery ids, so one event and one webhook always give the same id.
DELIVERY_NAMESPACE = uuid.UUID("0f4bb0b1-8f5e-4a53-9f57-6d8c3c0e1a2b")


def delivery_id(webhook_id: str, event_id: str) -> str:
    return "msg_" + uuid.uuid5(DELIVERY_NAMESPACE, f"{webhook_id}/{event_id}").hex


def webhook_body(event_type: str, timestamp: str, data: dict[str, object]) -> str:
    """Return the JSON body of a delivery: ``{"type", "timestamp", "data"}``, compact."""
    payload = {"type": event_type, "timestamp": timestamp, "data": data}
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


def new_delivery(webhook: Webhook, event: Event, now_ms: int, max_attempts: int) -> NewDelivery:
    return NewDelivery(
        webhook_id=webhook.id,
        delivery_id=delivery_id(webhook.id, event.id),
        event_id=event.id,
        event_type=str(event.type),
        body=webhook_body(str(event.type), event.time, event.data),
        created_ms=int(parse_time(event.time).timestamp() * 1000),
        due_ms=now_ms,
        max_attempts=max_attempts,
    )


async def fetch_batch(subscription: JetStreamContext.PullSubscription) -> list[Msg]:
    """Wait for the next event, then take up to a batch of those already waiting.

    A fetch of n messages in nats-py (2.16) waits until n arrived or the timeout passed, which
    would keep a lone event waiting for the whole timeout. A fetch of one message returns as
    soon as it arrives.
    """
    messages = await subscription.fetch(1, timeout=FETCH_TIMEOUT_S)
    with contextlib.suppress(TimeoutError):
        messages += await subscription.fetch(BATCH_SIZE - 1, timeout=COLLECT_TIMEOUT_S)
    return messages


class EventFanout:
    def __init__(
        self,
        nc: NATS,
        redis: Redis,
        queue: DeliveryQueue,
        max_attempts: int,
        ack_wait_s: float,
        on_scheduled: Callable[[], None],
    ) -> None:
        self.nc = nc
        self.redis = redis
        self.queue = queue
        self.max_attempts = max_attempts
        self.ack_wait_s = ack_wait_s
        self.on_scheduled = on_scheduled
        self.subscription: JetStreamContext.PullSubscription | None = None

    async def run(self, stopping: asyncio.Event) -> None:
        """Hand events to ``handle_batch`` until ``stopping`` is set; ``subscribe`` comes first."""
        subscription = self.subscription
        assert subscription is not None, "subscribe() before run()"
        log.info("webhook event consumer started", extra={"durable": DURABLE_NAME})
        try:
            while not stopping.is_set():
                await self._fetch_and_handle(subscription)
        finally:
            # Status messages of expired pull requests stay in the subscription unread, and
            # would hold up the connection's drain until its timeout.
            await subscription.unsubscribe()
        log.info("webhook event consumer stopped")

    async def _fetch_and_handle(self, subscription: JetStreamContext.PullSubscription) -> None:
        try:
            messages = await fetch_batch(subscription)
        except TimeoutError:  # nats-py raises its own subclass, or asyncio's
            return
        except NatsError as exc:
            log.warning("fetching events failed, retrying", extra={"error": str(exc)})
            await asyncio.sleep(RETRY_DELAY_S)
            return
        await self.handle_batch(messages)

    async def subscribe(self) -> None:
        """Create the durable consumer, or update the settings of an existing one, and bind."""
        js = self.nc.jetstream()
        config = ConsumerConfig(
            durable_name=DURABLE_NAME,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait_s,
            deliver_policy=DeliverPolicy.ALL,
            filter_subjects=[subjects.event(event_type) for event_type in PUBLIC_EVENT_TYPES],
        )
        await js.add_consumer(subjects.EVENTS_STREAM, config)
        self.subscription = await js.pull_subscribe_bind(
            DURABLE_NAME, stream=subjects.EVENTS_STREAM
        )

    async def handle_batch(self, messages: list[Msg]) -> None:
        events = [event for event in map(parse_event, messages) if event is not None]
        try:
            await self._schedule(events)
        except RedisError as exc:
            log.warning(
                "writing deliveries failed; the events are handed out again",
                extra={"events": len(events), "error": str(exc)},
            )
            for message in messages:
                await message.nak(delay=RETRY_DELAY_S)
            return
        for message in messages:
            await message.ack()

    async def _schedule(self, events: list[Event]) -> None:
        if not events:
            return
        webhooks = await self._active_webhooks()
        now = now_ms()
        deliveries = [
            new_delivery(webhook, event, now, self.max_attempts)
            for event in events
            for webhook in webhooks
            if event.type in webhook.events
        ]
        if await self.queue.schedule(deliveries, now):
            self.on_scheduled()

    async def _active_webhooks(self) -> list[Webhook]:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hvals(keys.WEBHOOKS)
            pipe.hkeys(keys.WEBHOOKS_DISABLED)
            records, disabled = await pipe.execute()
        webhooks = [Webhook.model_validate_json(record) for record in records]
        disabled_ids = set(disabled)
        return [webhook for webhook in webhooks if webhook.id not in disabled_ids]


def parse_event(message: Msg) -> Event | None:
    """Return the event of a message, or None (logged) when it is malformed.

    The caller acks the message either way, because a malformed event never becomes valid.
    """
    try:
        return Event.model_validate_json(message.data)
    except ValidationError:
        log.warning("dropping a malformed event", extra={"subject": message.subject})
        return None
