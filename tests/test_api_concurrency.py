"""Simultaneous requests: worker limits, unique names, and deletes racing spawns, with one and
with two replicas of the workers service."""

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from functools import partial
from pathlib import Path

import httpx
import psutil
import pytest
from nats.aio.client import Client as NATS
from redis.asyncio import Redis

from cocopilot import keys
from tests.servers import Servers
from tests.stack import Stack, running_stack, sleeping_agent_env
from tests.waiting import wait_until

SPAWNS = 50
LIMIT = 10
SAME_NAME_SPAWNS = 20
RACES = 8
# How often, and how long apart, a racing delete is sent until the worker it races exists.
DELETE_ATTEMPTS = 400
DELETE_INTERVAL_S = 0.002
# Spawns that may go to the first replica before one reaches the second, at 1 in 2 each.
PROBES = 20


@pytest.fixture(params=[1, 2], ids=["one-replica", "two-replicas"])
def replicas(request: pytest.FixtureRequest) -> int:
    return int(request.param)


@pytest.fixture
def stack(
    servers: Servers, redis: Redis, nc: NATS, tmp_path: Path, replicas: int
) -> Iterator[Stack]:
    # redis and nc empty the database and the events stream before the services start.
    with running_stack(servers, tmp_path, sleeping_agent_env(tmp_path)) as running:
        for number in range(2, replicas + 1):
            running.start("workers", instance_id=f"replica-{number}")
        running.wait_healthy()
        running.register_repository("app")
        yield running


@pytest.fixture
async def api(stack: Stack, replicas: int) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=stack.base_url, headers=stack.headers, timeout=30
    ) as client:
        await wait_until(lambda: workers_instances(client, replicas), timeout_s=20)
        yield client


async def workers_instances(client: httpx.AsyncClient, expected: int) -> bool:
    status = (await client.get("/api/v1/status")).json()
    return len(status["services"]["workers"]["instances"]) == expected


def spawn_body(name: str | None = None) -> dict[str, str]:
    body = {"task": "Stay busy", "repoName": "app", "agent": "command"}
    return body | {"name": name} if name else body


async def spawn_all(api: httpx.AsyncClient, bodies: list[dict[str, str]]) -> list[httpx.Response]:
    return await asyncio.gather(*(api.post("/api/v1/workers", json=body) for body in bodies))


async def stored_workers(redis: Redis) -> list[dict[str, object]]:
    names = sorted(await redis.smembers(keys.WORKERS))
    records = await redis.mget([keys.worker(name) for name in names]) if names else []
    return [json.loads(record) for record in records if record]


async def spawn_reaches(api: httpx.AsyncClient, redis: Redis, instance_id: str) -> bool:
    """Spawn and delete workers until one is created by ``instance_id``; return whether one was."""
    for attempt in range(PROBES):
        name = f"Probe{attempt}"
        response = await api.post("/api/v1/workers", json=spawn_body(name))
        assert response.status_code == 201, response.text
        record = json.loads(await redis.get(keys.worker(name)) or "{}")
        # Deleted once working: a delete racing the spawn is another test's subject.
        await wait_until(partial(has_status, api, name, "working"), timeout_s=20)
        assert (await api.delete(f"/api/v1/workers/{name}")).status_code == 204
        if record.get("instanceId") == instance_id:
            return True
    return False


def inactive(workers: list[dict[str, str]]) -> list[tuple[str, str, str]]:
    """Return the workers that left the active statuses, with why: a slot they freed lets one
    more spawn in."""
    return [
        (worker["name"], worker["status"], worker.get("error") or "")
        for worker in workers
        if worker["status"] not in ("starting", "working")
    ]


async def none_starting(api: httpx.AsyncClient) -> bool:
    workers = (await api.get("/api/v1/workers")).json()
    return all(worker["status"] != "starting" for worker in workers)


async def has_status(api: httpx.AsyncClient, name: str, status: str) -> bool:
    return bool((await api.get(f"/api/v1/workers/{name}")).json().get("status") == status)


async def test_spawn_limit_holds(api: httpx.AsyncClient, redis: Redis, replicas: int) -> None:
    config = await api.patch("/api/v1/config", json={"maxWorkersPerRepo": LIMIT})
    assert config.status_code == 200, config.text
    # The spawn queue group hands spawns to the second replica too (each goes to a random one).
    if replicas == 2:
        assert await spawn_reaches(api, redis, "replica-2")

    responses = await spawn_all(api, [spawn_body() for _ in range(SPAWNS)])

    statuses = Counter(response.status_code for response in responses)
    workers = (await api.get("/api/v1/workers")).json()
    assert statuses == {201: LIMIT, 409: SPAWNS - LIMIT}, inactive(workers)
    conflicts = {r.json()["error"]["message"] for r in responses if r.status_code == 409}
    assert conflicts == {
        f'Repository "app" already has {LIMIT} active workers (maxWorkersPerRepo); wait for '
        "one to finish or stop one"
    }
    created = sorted(r.json()["name"] for r in responses if r.status_code == 201)
    listed = sorted(worker["name"] for worker in (await api.get("/api/v1/workers")).json())
    assert listed == created
    assert len(set(created)) == LIMIT
    # Every worker that got in runs: none failed and freed its slot after the count.
    await wait_until(partial(none_starting, api), timeout_s=30)
    assert inactive((await api.get("/api/v1/workers")).json()) == []
    assert await redis.scard(keys.repository_active_workers("app")) == LIMIT


@pytest.mark.parametrize("replicas", [2], ids=["two-replicas"], indirect=True)
async def test_same_name_spawns_once(api: httpx.AsyncClient, redis: Redis) -> None:
    responses = await spawn_all(api, [spawn_body("Twin") for _ in range(SAME_NAME_SPAWNS)])

    statuses = Counter(response.status_code for response in responses)
    assert statuses == {201: 1, 409: SAME_NAME_SPAWNS - 1}, [r.text for r in responses]
    conflicts = {r.json()["error"]["message"] for r in responses if r.status_code == 409}
    # A spawn that starts after the first made its branch finds the branch before the record.
    assert conflicts <= {
        'Worker "Twin" already exists',
        'branch "work/Twin" already exists in repository "app" from an earlier worker; '
        "choose another name",
    }
    assert [worker["name"] for worker in await stored_workers(redis)] == ["Twin"]


async def delete_when_it_exists(api: httpx.AsyncClient, name: str) -> int:
    """Send DELETE for ``name`` until it finds the worker, so it lands right after the spawn
    stores the record; return the last status."""
    status = 404
    for _ in range(DELETE_ATTEMPTS):
        status = (await api.delete(f"/api/v1/workers/{name}")).status_code
        if status != 404:
            return status
        # Not waiting for a condition: this paces the race, and the loop is bounded.
        await asyncio.sleep(DELETE_INTERVAL_S)
    return status


def agent_worktrees(worktrees: Path) -> set[str]:
    """Return the workers whose worktree an agent process runs in."""
    names = set()
    for process in psutil.process_iter(["cwd"]):
        cwd = process.info.get("cwd")
        if cwd and Path(cwd).is_relative_to(worktrees):
            names.add(Path(cwd).relative_to(worktrees).parts[0])
    return names


async def whole_workers(api: httpx.AsyncClient, worktrees: Path) -> dict[str, set[str]]:
    workers = (await api.get("/api/v1/repositories/app/workers")).json()
    return {
        "records": {worker["name"] for worker in workers},
        "working": {worker["name"] for worker in workers if worker["status"] == "working"},
        "worktrees": {path.name for path in worktrees.iterdir()} if worktrees.exists() else set(),
        "agents": agent_worktrees(worktrees),
    }


@pytest.mark.parametrize("replicas", [1], ids=["one-replica"], indirect=True)
async def test_delete_racing_spawn_leaves_whole_workers(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    worktrees = stack.data_dir / "worktrees" / "app"
    outcomes = []
    for number in range(RACES):
        name = f"Racer{number}"
        spawned, deleted = await asyncio.gather(
            api.post("/api/v1/workers", json=spawn_body(name)), delete_when_it_exists(api, name)
        )
        outcomes.append((spawned.status_code, deleted))
        if outcomes[-1] != (201, 204):
            break  # a stuck delete takes the command timeout; one shows the problem

    assert outcomes == [(201, 204)] * RACES

    async def settled() -> dict[str, set[str]] | None:
        state = await whole_workers(api, worktrees)
        parts = state.values()
        return state if all(part == state["records"] for part in parts) else None

    try:
        await wait_until(settled, timeout_s=20)
    except AssertionError:
        raise AssertionError(
            f"records, worktrees and agents differ: {await whole_workers(api, worktrees)}; "
            f"spawn and delete statuses: {outcomes}"
        ) from None
