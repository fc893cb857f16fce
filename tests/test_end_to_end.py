"""The whole flow across the four services: repository, demo worker, commit, webhook, metrics."""

import json
from pathlib import Path

import httpx
from nats.aio.client import Client as NATS
from redis.asyncio import Redis

from tests.gitrepos import make_repository, run_git
from tests.servers import Servers
from tests.stack import running_stack
from tests.waiting import wait_until
from tests.webhook_receiver import Receiver


async def test_demo_worker_end_to_end(
    servers: Servers, redis: Redis, nc: NATS, tmp_path: Path
) -> None:
    with running_stack(servers, tmp_path) as stack:
        async with (
            Receiver() as receiver,
            httpx.AsyncClient(base_url=stack.base_url, timeout=30) as api,
        ):
            make_repository(stack.repos_dir / "shop")
            hook = await api.post(
                "/api/v1/webhooks", json={"url": receiver.url(), "events": ["worker.completed"]}
            )
            repository = await api.post(
                "/api/v1/repositories",
                json={"name": "shop", "url": f"file://{stack.repos_dir}/shop"},
            )
            spawned = await api.post(
                "/api/v1/workers",
                json={"task": "Add a price filter", "repoName": "shop", "model": "demo-model"},
            )
            name = spawned.json()["name"]

            async def completed() -> bool:
                worker = (await api.get(f"/api/v1/workers/{name}")).json()
                return worker["status"] == "completed"

            await wait_until(completed, timeout_s=30)
            await wait_until(lambda: len(receiver.requests) >= 1, timeout_s=30)

            async def counted() -> dict[str, object] | None:
                metrics = (await api.get("/api/v1/metrics")).json()
                done = sum(hour["count"] for hour in metrics["workerThroughput"])
                return metrics if done == 1 else None

            metrics = await wait_until(counted, timeout_s=30)

    assert hook.status_code == 201, hook.text
    assert repository.status_code == 201, repository.text
    assert spawned.status_code == 201, spawned.text
    assert spawned.json()["status"] == "starting"
    assert spawned.json()["branch"] == f"work/{name}"
    log = run_git(stack.data_dir / "repos" / "shop", "log", "--format=%s", f"work/{name}")
    assert log.splitlines()[0] == "Record demo task: Add a price filter"
    delivery = json.loads(receiver.requests[0].body)
    assert delivery["type"] == "worker.completed"
    assert delivery["data"]["name"] == name
    assert receiver.requests[0].headers["webhook-id"]
    assert {"model": "demo-model", "tokens": 1} in metrics["tokenUsage"]
