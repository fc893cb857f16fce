"""Waiting on a condition with a timeout, instead of a bare sleep."""

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def wait_until(
    condition: Callable[[], Awaitable[T] | T], timeout_s: float = 10.0, interval_s: float = 0.05
) -> T:
    """Call ``condition`` (a plain or an async function) until it returns a truthy value and
    return that value, or fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s; last value: {result!r}")
        await asyncio.sleep(interval_s)
