"""The supervisor: stuck workers, nudges, prompts waiting for input, and the worker timeout."""

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from nats.aio.client import Client as NATS
from redis.asyncio import Redis

from tests.gitrepos import make_repository
from tests.servers import Servers
from tests.stack import Stack, running_stack
from tests.waiting import wait_until

# Prints once, then treats each line typed into its terminal as its first argument selects:
# "silent" prints nothing and "echo" prints the line back. "ask" prints a prompt first, and
# "chatty" prints every 0.3 s and never ends.
AGENT = """
import sys
mode = sys.argv[1]
print("started", flush=True)
if mode == "ask":
    print("Do you want to overwrite README.md? (y/n)", flush=True)
if mode == "chatty":
    import time
    while True:
        print("still busy", flush=True)
        time.sleep(0.3)
for line in sys.stdin:
    if mode == "echo":
        print("heard:", line.strip(), flush=True)
"""


@pytest.fixture
async def api(
    servers: Servers, redis: Redis, nc: NATS, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    script = tmp_path / "agent.py"
    script.write_text(AGENT)
    env = {"COCOPILOT_AGENT_COMMAND": f'["python3", "{script}", "{{task}}"]'}
    with running_stack(servers, tmp_path, env) as stack:
        async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as client:
            await _register(client, stack)
            yield client


async def _register(api: httpx.AsyncClient, stack: Stack) -> None:
    make_repository(stack.repos_dir / "app")
    response = await api.post(
        "/api/v1/repositories", json={"name": "app", "url": str(stack.repos_dir / "app")}
    )
    assert response.status_code == 201, response.text


async def spawn(api: httpx.AsyncClient, name: str, mode: str) -> None:
    body = {"task": mode, "repoName": "app", "agent": "command", "name": name}
    response = await api.post("/api/v1/workers", json=body)
    assert response.status_code == 201, response.text


async def worker_when(
    api: httpx.AsyncClient, name: str, check: Any, timeout_s: float = 20
) -> dict[str, Any]:
    async def matching() -> dict[str, Any] | None:
        worker = (await api.get(f"/api/v1/workers/{name}")).json()
        return worker if check(worker) else None

    return await wait_until(matching, timeout_s=timeout_s)


async def test_stuck_worker_nudged_then_failed(api: httpx.AsyncClient) -> None:
    config = {"stuckAfter": 1, "supervisorNudgeInterval": 1, "supervisorMaxNudges": 2}
    assert (await api.patch("/api/v1/config", json=config)).status_code == 200
    await spawn(api, "Sleepy", "silent")

    stuck = await worker_when(api, "Sleepy", lambda worker: worker["status"] == "stuck")
    failed = await worker_when(api, "Sleepy", lambda worker: worker["status"] == "failed")
    events = (await api.get("/api/v1/events", params={"workerName": "Sleepy", "limit": 100})).json()

    assert stuck["nudgeCount"] == 0
    assert failed["nudgeCount"] == 2
    assert failed["error"] == "stuck: no progress after 2 nudges"
    nudges = [entry for entry in events["events"] if entry["type"] == "worker.nudged"]
    assert len(nudges) == 2


async def test_output_after_nudge_unsticks(api: httpx.AsyncClient) -> None:
    config = {"stuckAfter": 2, "supervisorNudgeInterval": 1, "supervisorMaxNudges": 5}
    assert (await api.patch("/api/v1/config", json=config)).status_code == 200
    await spawn(api, "Parrot", "echo")

    await worker_when(api, "Parrot", lambda worker: worker["status"] == "stuck")
    working = await worker_when(
        api, "Parrot", lambda worker: worker["status"] == "working" and worker["nudgeCount"] >= 1
    )

    assert working["error"] is None or "error" not in working


async def test_prompt_marks_waiting_for_input(api: httpx.AsyncClient) -> None:
    await spawn(api, "Asker", "ask")

    worker = await worker_when(api, "Asker", lambda worker: worker["waitingForInput"], timeout_s=15)
    response = await api.post("/api/v1/repositories/app/agents/Asker/message", json={"text": "y"})

    assert worker["status"] == "working"
    assert response.status_code == 201


async def test_worker_timeout_fails_busy_worker(api: httpx.AsyncClient) -> None:
    assert (await api.patch("/api/v1/config", json={"workerTimeout": 2})).status_code == 200
    await spawn(api, "Busy", "chatty")

    worker = await worker_when(api, "Busy", lambda worker: worker["status"] == "failed")

    assert worker["error"] == "timed out: ran longer than workerTimeout (2 s)"
