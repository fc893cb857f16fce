"""Redis connection with retry at start."""

import asyncio
import logging

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from cocopilot.logs import redact_url

log = logging.getLogger(__name__)


async def connect_redis(url: str, retry_interval_s: float = 1.0) -> "Redis":
    """Connect and ping, retrying until the server answers, so a service can start before Redis."""
    client: Redis = Redis.from_url(url, decode_responses=True)
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
