"""An agent's output lines in a capped Redis stream: the last lines for ``…/logs?tail=N`` and a
live feed for ``…/logs/stream``, bounded whatever the agent prints."""

import asyncio
import contextlib
import logging

from redis.asyncio import Redis
from redis.exceptions import RedisError

from cocopilot import keys

log = logging.getLogger(__name__)

# Lines kept per worker; older ones are trimmed (approximately, which Redis does cheaply).
RING_LINES = 5000
MAX_LINE_CHARS = 4096
FLUSH_INTERVAL_S = 0.2
# Lines waiting for a flush; past this, new lines are dropped until Redis catches up.
MAX_PENDING_LINES = 10_000


class OutputRecorder:
    def __init__(self, redis: Redis, worker_name: str) -> None:
        self.redis = redis
        self.key = keys.worker_output(worker_name)
        self.worker_name = worker_name
        self._pending: list[str] = []
        self._dropped = 0
        self._flusher = asyncio.create_task(self._flush_periodically())

    def add_line(self, line: str) -> None:
        if len(self._pending) >= MAX_PENDING_LINES:
            self._dropped += 1
            return
        self._pending.append(line[:MAX_LINE_CHARS])

    async def close(self) -> None:
        self._flusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._flusher
        await self._flush()

    async def _flush_periodically(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            await self._flush()

    async def _flush(self) -> None:
        if self._dropped:
            self._pending.append(f"[cocopilot: {self._dropped} lines dropped]")
            self._dropped = 0
        lines, self._pending = self._pending, []
        if not lines:
            return
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for line in lines:
                    pipe.xadd(self.key, {"line": line}, maxlen=RING_LINES, approximate=True)
                await pipe.execute()
        except RedisError as exc:
            log.warning(
                "storing agent output failed",
                extra={"worker": self.worker_name, "lines": len(lines), "error": str(exc)},
            )
