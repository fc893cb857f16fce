import asyncio

import nats
from nats.aio.client import Client as NATS

from cocopilot import bus
from cocopilot.events import Event
from tests.servers import Servers


async def test_drain_is_quick_after_consumer_stops(servers: Servers, nc: NATS) -> None:
    # A pull subscription left open made drain() wait out its 30 s timeout, so services took
    # that long to stop on SIGTERM.
    client = await nats.connect(servers.nats_url)
    stop = asyncio.Event()

    async def ignore(event: Event) -> None:
        pass

    consumer = asyncio.create_task(bus.consume_events(client, "drain-test", ignore, stop))
    await asyncio.sleep(0.5)
    stop.set()
    await asyncio.wait_for(consumer, 5)

    await asyncio.wait_for(client.drain(), 2)
