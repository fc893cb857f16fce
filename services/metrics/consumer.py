"""A durable JetStream consumer that applies events in batches.

Like ``cocopilot.bus.consume_events``, it acks an event only after it is applied, so an event in
hand when the service dies comes again and handlers must be idempotent. It differs in two ways:
a whole fetched batch is applied in one Redis round trip, and the pull subscription is removed
on stop, without which a later ``drain()`` of the connection waits out its 30 s timeout
(nats-py 2.16).
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from redis.exceptions import RedisError

from cocopilot import subjects
from cocopilot.events import Event

log = logging.getLogger(__name__)

# Applies events in order; returns one entry per event: None when applied, else the error.
BatchHandler = Callable[[list[Event]], Awaitable[list[BaseException | None]]]

BATCH_SIZE = 200
FETCH_TIMEOUT_S = 0.5  # also the longest a stop waits for the fetch in progress
RETRY_DELAY_S = 5.0


async def consume_in_batches(
    nc: NATS, durable: str, handle: BatchHandler, stop: asyncio.Event
) -> None:
    """Feed every event of the stream to ``handle`` until ``stop`` is set."""
    subscription = await nc.jetstream().pull_subscribe(subjects.EVENTS_WILDCARD, durable=durable)
    try:
        while not stop.is_set():
            try:
                messages = await subscription.fetch(BATCH_SIZE, timeout=FETCH_TIMEOUT_S)
            except TimeoutError:  # nats-py raises its own subclass, or asyncio's
                continue
            await handle_messages(messages, handle)
    finally:
        await subscription.unsubscribe()


async def handle_messages(messages: list[Msg], handle: BatchHandler) -> None:
    parsed = await parse_events(messages)
    try:
        errors = await handle([event for _, event in parsed])
    except (RedisError, OSError) as exc:
        log.warning(
            "applying events failed, retrying later",
            extra={"events": len(parsed), "retry_in_s": RETRY_DELAY_S, "error": str(exc)},
        )
        for msg, _ in parsed:
            await msg.nak(delay=RETRY_DELAY_S)
        return
    for (msg, event), error in zip(parsed, errors, strict=True):
        if error is None:
            await msg.ack()
            continue
        log.error(
            "applying an event failed, retrying later",
            extra={"event_id": event.id, "event_type": str(event.type), "error": str(error)},
        )
        await msg.nak(delay=RETRY_DELAY_S)


async def parse_events(messages: list[Msg]) -> list[tuple[Msg, Event]]:
    """Return the messages that hold an event; drop the rest for good, since no retry fixes them."""
    parsed = []
    for msg in messages:
        try:
            parsed.append((msg, Event.model_validate_json(msg.data)))
        except ValueError:
            log.warning("dropping a malformed event", extra={"subject": msg.subject})
            await msg.term()
    return parsed
