import asyncio
from typing import Any

import pytest
from nats.aio.client import Client as NATS

from cocopilot import bus
from cocopilot.errors import CocopilotError, NotFound, ServiceTimeout, ServiceUnavailable
from cocopilot.events import Event, EventType


async def test_request_returns_result(nc: NATS) -> None:
    async def double(payload: dict[str, Any]) -> int:
        return int(payload["n"]) * 2

    await bus.serve_command(nc, "test.double", double)

    assert await bus.request(nc, "test.double", {"n": 21}, timeout_s=2) == 42


async def test_request_raises_domain_error(nc: NATS) -> None:
    async def missing(payload: dict[str, Any]) -> None:
        raise NotFound('Worker "Twix" not found')

    await bus.serve_command(nc, "test.missing", missing)

    with pytest.raises(CocopilotError) as raised:
        await bus.request(nc, "test.missing", {}, timeout_s=2)
    assert raised.value.status == 404
    assert raised.value.message == 'Worker "Twix" not found'


async def test_request_without_listener_is_unavailable(nc: NATS) -> None:
    with pytest.raises(ServiceUnavailable):
        await bus.request(nc, "test.nobody", {}, timeout_s=2)


async def test_request_without_reply_times_out(nc: NATS) -> None:
    async def hang(payload: dict[str, Any]) -> None:
        await asyncio.sleep(5)

    await bus.serve_command(nc, "test.hang", hang)

    with pytest.raises(ServiceTimeout):
        await bus.request(nc, "test.hang", {}, timeout_s=0.3)


async def test_consumer_receives_each_event_once(nc: NATS) -> None:
    received: list[str] = []
    stop = asyncio.Event()

    async def handle(event: Event) -> None:
        received.append(event.id)
        if len(received) == 2:
            stop.set()

    event = Event(type=EventType.WORKER_CREATED, repoName="app")
    await bus.publish_event(nc, event)
    await bus.publish_event(nc, event)  # the same id again: stored once
    await bus.publish_event(nc, Event(type=EventType.WORKER_REMOVED, repoName="app"))

    await asyncio.wait_for(bus.consume_events(nc, "test-consumer", handle, stop), timeout=10)

    assert received[0] == event.id
    assert len(set(received)) == 2
