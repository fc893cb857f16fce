"""Redis connection with retry at start."""

import asyncio
import logging

from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from cocopilot.logs import redact_url

log = logging.getLogger(__name__)

# Connections per service process: enough for hundreds of agents' output and the api's live
# log streams, each of which keeps one connection while it waits for lines.
MAX_CONNECTIONS = 512
POOL_TIMEOUT_S = 20.0


async def connect_redis(url: str, retry_interval_s: float = 1.0) -> "Redis":
    """Connect and ping, retrying until the server responds, so a service can start before Redis."""
    # A blocking pool makes a burst wait for a free connection instead of failing at once, as
    # redis-py's default pool does past its maximum.
    pool = BlockingConnectionPool.from_url(
        url, decode_responses=True, max_connections=MAX_CONNECTIONS, timeout=POOL_TIMEOUT_S
    )
    # from_pool hands the pool to the client, so closing the client closes its connections.
    client: Redis = Redis.from_pool(pool)
    attempt = 0
    while True:
        attempt += 1
        try:
            await client.ping()
            return client
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            log.warning(
                "Redis not reachable, retrying",
                extra={"url": redact_url(url), "attempt": attempt, "error": str(exc)},
            )
            await asyncio.sleep(retry_interval_s)
