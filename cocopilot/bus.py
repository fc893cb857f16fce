"""NATS connection, the events stream, and command request/reply.

A command reply is JSON: ``{"ok": true, "result": ...}`` or
``{"ok": false, "error": {"status": 404, "message": "..."}}``, so a domain error raised in one
service reaches the HTTP caller with its status and message.
"""

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError

from cocopilot import subjects
from cocopilot.errors import CocopilotError, ServiceTimeout, ServiceUnavailable
from cocopilot.events import Event
from cocopilot.logs import redact_url

log = logging.getLogger(__name__)

# Pauses before a new request when no service responded: just after a replica joins or leaves a
# queue group, nats-server 2.15 can report no responders for a few milliseconds.
NO_RESPONDERS_RETRY_DELAYS_S = (0.02, 0.1, 0.3)

# Maximum wait at stop, in seconds, for replies and acks in flight to go out.
DRAIN_TIMEOUT_S = 5

CommandHandler = Callable[[dict[str, Any]], Awaitable[Any]]
EventHandler = Callable[[Event], Awaitable[None]]

# Strong references to command tasks in flight, which asyncio itself holds only weakly.
_running_commands: set[asyncio.Task[None]] = set()


async def connect_nats(url: str, name: str, retry_interval_s: float = 1.0) -> NATS:
    """Connect, retrying until the server responds, so a service can start before NATS."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return await nats.connect(
                url,
                name=name,
                max_reconnect_attempts=-1,
                connect_timeout=2,
                allow_reconnect=True,
                drain_timeout=DRAIN_TIMEOUT_S,
            )
        except (OSError, NatsTimeoutError, nats.errors.NoServersError) as exc:
            log.warning(
                "NATS not reachable, retrying",
                extra={"url": redact_url(url), "attempt": attempt, "error": str(exc)},
            )
            await asyncio.sleep(retry_interval_s)


async def ensure_events_stream(nc: NATS) -> None:
    js = nc.jetstream()
    config = StreamConfig(
        name=subjects.EVENTS_STREAM,
        subjects=[subjects.EVENTS_WILDCARD],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_age=30 * 24 * 3600,  # seconds
        duplicate_window=120,  # seconds in which a repeated Nats-Msg-Id is stored once
    )
    try:
        await js.add_stream(config)
    except BadRequestError:
        # Another service created it first with the same name; bring its config up to date.
        await js.update_stream(config)


async def publish_event(nc: NATS, event: Event) -> None:
    js = nc.jetstream()
    await js.publish(subjects.event(event.type), event.to_json(), headers={"Nats-Msg-Id": event.id})
    log.info("event published", extra={"event_id": event.id, "event_type": str(event.type)})


async def request(nc: NATS, subject: str, payload: dict[str, Any], timeout_s: float) -> Any:
    """Send a command and return its result; a reply's error is raised as a CocopilotError."""
    data = json.dumps(payload).encode()
    for delay_s in (*NO_RESPONDERS_RETRY_DELAYS_S, None):
        try:
            msg = await nc.request(subject, data, timeout=timeout_s)
            break
        except NoRespondersError as exc:
            if delay_s is None:
                message = f"no service is listening for {subject}; is it running?"
                raise ServiceUnavailable(message) from exc
            await asyncio.sleep(delay_s)
        except NatsTimeoutError as exc:
            raise ServiceTimeout(f"no reply to {subject} within {timeout_s:g} s") from exc
    reply = json.loads(msg.data)
    if not reply.get("ok"):
        error = reply.get("error", {})
        raise CocopilotError(error.get("message", "command failed"), error.get("status", 500))
    return reply.get("result")


async def serve_command(nc: NATS, subject: str, handler: CommandHandler, queue: str = "") -> None:
    """Serve commands on ``subject`` with ``handler``, each in its own task."""

    async def answer(msg: Msg) -> None:
        try:
            result = await handler(json.loads(msg.data))
            reply: dict[str, Any] = {"ok": True, "result": result}
        except CocopilotError as exc:
            reply = {"ok": False, "error": {"status": exc.status, "message": exc.message}}
        except Exception:
            log.exception("command failed", extra={"subject": subject})
            reply = {"ok": False, "error": {"status": 500, "message": "internal error"}}
        await msg.respond(json.dumps(reply).encode())

    async def on_message(msg: Msg) -> None:
        # nats-py runs callbacks one at a time per subscription; a slow command must not block.
        task = asyncio.create_task(answer(msg))
        _running_commands.add(task)
        task.add_done_callback(_running_commands.discard)

    await nc.subscribe(subject, queue=queue, cb=on_message)


async def consume_events(
    nc: NATS,
    durable: str,
    handler: EventHandler,
    stop: asyncio.Event,
    batch_size: int = 100,
) -> None:
    """Feed every event of the stream to ``handler`` through a durable pull consumer.

    An event is acked only after ``handler`` returns, so one that was being handled when the
    service died is delivered again. Handlers must therefore be idempotent. A handler error
    naks the event for a later redelivery.
    """
    js = nc.jetstream()
    subscription = await js.pull_subscribe(subjects.EVENTS_WILDCARD, durable=durable)
    try:
        while not stop.is_set():
            try:
                messages = await subscription.fetch(batch_size, timeout=1)
            except TimeoutError:  # nats-py raises its own subclass, or asyncio's
                continue
            for msg in messages:
                await _handle_event(msg, handler)
    finally:
        # A pull subscription left open makes a later drain() wait for its whole timeout.
        await subscription.unsubscribe()


async def _handle_event(msg: Msg, handler: EventHandler) -> None:
    try:
        event = Event.model_validate_json(msg.data)
    except ValueError:
        log.warning("dropping a malformed event", extra={"subject": msg.subject})
        await msg.term()
        return
    try:
        await handler(event)
    except Exception:
        log.exception(
            "event handler failed", extra={"event_id": event.id, "event_type": str(event.type)}
        )
        await msg.nak(delay=5)
        return
    await msg.ack()
