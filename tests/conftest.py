import contextlib
from collections.abc import AsyncIterator, Iterator

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.js.errors import NotFoundError
from redis.asyncio import Redis

from cocopilot import subjects
from cocopilot.bus import ensure_events_stream
from tests.servers import Servers, start_servers


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    with start_servers(tmp_path_factory.mktemp("servers")) as running:
        yield running


@pytest.fixture
async def redis(servers: Servers) -> AsyncIterator[Redis]:
    """A Redis client on an emptied database: each test starts from no state."""
    client: Redis = Redis.from_url(servers.redis_url, decode_responses=True)
    await client.flushdb()
    yield client
    await client.aclose()


@pytest.fixture
async def nc(servers: Servers) -> AsyncIterator[NATS]:
    """A NATS connection with a new, empty events stream."""
    client = await nats.connect(servers.nats_url)
    js = client.jetstream()
    with contextlib.suppress(NotFoundError):
        await js.delete_stream(subjects.EVENTS_STREAM)
    await ensure_events_stream(client)
    yield client
    await client.drain()
