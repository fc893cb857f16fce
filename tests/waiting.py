"""Waiting on a condition with a timeout, instead of a bare sleep."""

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def wait_until(
    condition: Callable[[], Awaitable[T]], timeout_s: float = 10.0, interval_s: float = 0.05
) -> T:
    """Await ``condition`` until it returns a truthy value and return that value, or fail."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = await condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s; last value: {result!r}")
        await asyncio.sleep(interval_s)
