"""The webhooks service killed with SIGKILL mid-stream loses no event."""

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from nats.aio.client import Client as NATS
from redis.asyncio import Redis

from cocopilot.errors import ServiceUnavailable
from tests.servers import Servers
from tests.waiting import wait_until
from tests.webhook_receiver import Receiver
from tests.webhook_service import publish, register

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
EVENT_COUNT = 500
EVENTS_PER_SECOND = 250


def service_environment(servers: Servers, health_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "COCOPILOT_REDIS_URL": servers.redis_url,
        "COCOPILOT_NATS_URL": servers.nats_url,
        "COCOPILOT_INSTANCE_ID": "webhooks-restart-test",
        "COCOPILOT_HEALTH_DIR": str(health_dir),
        "COCOPILOT_LOG_LEVEL": "WARNING",
        "COCOPILOT_WEBHOOK_ALLOWED_NETWORKS": '["127.0.0.0/8"]',
        "COCOPILOT_WEBHOOK_RETRY_DELAYS_S": "[0.2, 0.2, 0.2, 0.2, 0.2]",
        "COCOPILOT_WEBHOOK_RETRY_JITTER": "0",
        "COCOPILOT_WEBHOOK_TIMEOUT_S": "2",
        "COCOPILOT_WEBHOOK_EVENT_ACK_WAIT_S": "2",
        "COCOPILOT_WEBHOOK_POLL_INTERVAL_S": "0.05",
    }


@contextmanager
def service_process(
    environment: dict[str, str], log_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.webhooks.main"],
            cwd=REPOSITORY_ROOT,
            env=environment,
            stdout=log,
            stderr=log,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(15)


async def register_when_ready(nc: NATS, url: str) -> dict[str, Any]:
    async def attempt() -> dict[str, Any] | None:
        try:
            return await register(nc, url)
        except ServiceUnavailable:
            return None  # the service has not subscribed to its commands yet

    return await wait_until(attempt, timeout_s=20, interval_s=0.1)


async def publish_stream(nc: NATS, published: list[int]) -> None:
    for number in range(EVENT_COUNT):
        await publish(nc, number=number)
        published.append(number)
        await asyncio.sleep(1 / EVENTS_PER_SECOND)


async def test_killed_service_loses_no_event(
    servers: Servers, redis: Redis, nc: NATS, tmp_path: Path
) -> None:
    # The redis fixture is here for its empty database, which the service process then uses.
    environment = service_environment(servers, tmp_path / "health")
    log_path = tmp_path / "webhooks.log"
    published: list[int] = []
    async with Receiver() as receiver:
        with service_process(environment, log_path) as first:
            await register_when_ready(nc, receiver.url())
            stream = asyncio.create_task(publish_stream(nc, published))
            await wait_until(lambda: _received(receiver, 100))
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        received_before_restart = len(receiver.requests)
        await wait_until(lambda: _published(published, EVENT_COUNT * 3 // 5))

        with service_process(environment, log_path):
            await stream
            await wait_until(lambda: _all_numbers(receiver), timeout_s=60)

    ids_by_number: dict[int, set[str]] = defaultdict(set)
    for request in receiver.requests:
        ids_by_number[json.loads(request.body)["data"]["number"]].add(request.headers["webhook-id"])
    assert first.returncode == -signal.SIGKILL
    assert received_before_restart < EVENT_COUNT
    assert sorted(ids_by_number) == list(range(EVENT_COUNT))
    assert all(len(ids) == 1 for ids in ids_by_number.values())


async def _received(receiver: Receiver, count: int) -> bool:
    return len(receiver.requests) >= count


async def _published(published: list[int], count: int) -> bool:
    return len(published) >= count


async def _all_numbers(receiver: Receiver) -> bool:
    numbers = {json.loads(request.body)["data"]["number"] for request in receiver.requests}
    return len(numbers) == EVENT_COUNT
