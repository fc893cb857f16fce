"""A worker's life through the api, with all four services running as processes."""

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from nats.aio.client import Client as NATS
from redis.asyncio import Redis

from tests.gitrepos import make_repository, run_git
from tests.servers import Servers
from tests.stack import Stack, running_stack
from tests.waiting import wait_until


@pytest.fixture
def stack(servers: Servers, redis: Redis, nc: NATS, tmp_path: Path) -> Iterator[Stack]:
    # redis and nc empty the database and the events stream before the services start.
    with running_stack(servers, tmp_path) as running:
        yield running


@pytest.fixture
async def api(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.base_url, headers=stack.headers, timeout=30) as client:
        yield client


async def register(api: httpx.AsyncClient, stack: Stack, name: str = "app") -> dict[str, object]:
    make_repository(stack.repos_dir / name)
    response = await api.post("/api/v1/repositories", json={"name": name, "url": str(stack.repos_dir / name)})
    assert response.status_code == 201, response.text
    return response.json()


async def wait_for_status(api: httpx.AsyncClient, name: str, status: str) -> dict[str, object]:
    async def reached() -> dict[str, object] | None:
        worker = (await api.get(f"/api/v1/workers/{name}")).json()
        return worker if worker.get("status") == status else None

    return await wait_until(reached, timeout_s=20)


async def test_demo_worker_commits_on_its_branch(api: httpx.AsyncClient, stack: Stack) -> None:
    await register(api, stack)

    response = await api.post("/api/v1/workers", json={"task": "Add a changelog", "repoName": "app"})

    assert response.status_code == 201, response.text
    worker = response.json()
    assert worker["status"] == "starting"
    assert worker["branch"] == f"work/{worker['name']}"
    await wait_for_status(api, worker["name"], "completed")
    clone = stack.data_dir / "repos" / "app"
    log = run_git(clone, "log", "--format=%s", f"work/{worker['name']}")
    assert log.splitlines()[0] == "Record demo task: Add a changelog"


async def test_failing_agent_reports_exit_code(servers: Servers, redis: Redis, nc: NATS, tmp_path: Path) -> None:
    script = tmp_path / "fail.py"
    script.write_text("import sys\nprint('cannot do', sys.argv[1])\nsys.exit(3)\n")
    env = {"COCOPILOT_AGENT_COMMAND": f'["python3", "{script}", "{{task}}"]'}
    with running_stack(servers, tmp_path, env) as stack:
        async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as api:
            await register(api, stack)
            body = {"task": "Fix it", "repoName": "app", "agent": "command", "name": "Failer"}
            assert (await api.post("/api/v1/workers", json=body)).status_code == 201

            worker = await wait_for_status(api, "Failer", "failed")

    assert worker["error"] == "agent exited with code 3: cannot do Fix it"
