"""The local forge end to end: pull requests, CI, fix-ups and the merge queue."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from nats.aio.client import Client as NATS
from redis.asyncio import Redis

from tests.gitrepos import make_repository, run_git
from tests.servers import Servers
from tests.stack import Stack, running_stack
from tests.waiting import wait_until

# Writes the task into shared.txt and commits it: two such workers change the same line.
SAME_LINE_AGENT = """
import subprocess, sys
open("shared.txt", "w").write(sys.argv[1] + "\\n")
subprocess.run(["git", "add", "shared.txt"], check=True)
subprocess.run(["git", "commit", "-qm", "Write shared.txt"], check=True)
"""

# Passes once two or more demo notes exist: the first worker's commit fails it, and a fix-up
# worker's note makes it pass.
TWO_NOTES_CI = [
    "python3",
    "-c",
    "import os, sys; notes = os.listdir('cocopilot-demo'); print('notes:', notes); "
    "sys.exit(0 if len(notes) >= 2 else 1)",
]


async def add_repository(api: httpx.AsyncClient, stack: Stack, **options: Any) -> None:
    make_repository(
        stack.repos_dir / "app", files={"README.md": "# App\n", "shared.txt": "start\n"}
    )
    body = {"name": "app", "url": str(stack.repos_dir / "app"), **options}
    response = await api.post("/api/v1/repositories", json=body)
    assert response.status_code == 201, response.text


async def pulls_when(
    api: httpx.AsyncClient, check: Callable[[list[dict[str, Any]]], bool], timeout_s: float = 40
) -> list[dict[str, Any]]:
    async def matching() -> list[dict[str, Any]] | None:
        pulls = (await api.get("/api/v1/repositories/app/prs")).json()
        return pulls if check(pulls) else None

    return await wait_until(matching, timeout_s=timeout_s)


async def event_types(api: httpx.AsyncClient) -> list[str]:
    page = (await api.get("/api/v1/events", params={"repoName": "app", "limit": 200})).json()
    return [entry["type"] for entry in reversed(page["events"])]


async def test_commit_becomes_merged_pull_request(
    servers: Servers, redis: Redis, nc: NATS, tmp_path: Path
) -> None:
    with running_stack(servers, tmp_path) as stack:
        async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as api:
            await add_repository(api, stack, ciCommand=["git", "status", "--short"])
            body = {"task": "Add a note", "repoName": "app", "name": "Noter"}
            assert (await api.post("/api/v1/workers", json=body)).status_code == 201

            pulls = await pulls_when(
                api, lambda pulls: bool(pulls) and pulls[0]["stage"] == "merged"
            )
            worker = (await api.get("/api/v1/workers/Noter")).json()
            types = await wait_until(lambda: _types_with(api, "pr.merged"), timeout_s=20)

    clone = stack.data_dir / "repos" / "app"
    assert pulls[0]["worker"] == "Noter"
    assert pulls[0]["checks"][0]["conclusion"] == "success"
    assert worker["status"] == "merged"
    assert worker["prNumber"] == pulls[0]["number"]
    assert "Add a note (#1)" in run_git(clone, "log", "--format=%s", "main")
    assert run_git(clone, "show", "main:cocopilot-demo/Noter.md").startswith("# Task for Noter")
    assert types.index("pr.created") < types.index("ci.passed") < types.index("pr.merged")


async def test_failed_ci_gets_fixup_then_merge(
    servers: Servers, redis: Redis, nc: NATS, tmp_path: Path
) -> None:
    with running_stack(servers, tmp_path) as stack:
        async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as api:
            await add_repository(api, stack, ciCommand=TWO_NOTES_CI)
            body = {"task": "Add a first note", "repoName": "app", "name": "First"}
            assert (await api.post("/api/v1/workers", json=body)).status_code == 201

            pulls = await pulls_when(
                api, lambda pulls: bool(pulls) and pulls[0]["stage"] == "merged", 60
            )
            workers = (await api.get("/api/v1/repositories/app/workers")).json()
            types = await wait_until(lambda: _types_with(api, "pr.merged"), timeout_s=20)

    fixers = [worker for worker in workers if worker.get("fixupOf") == 1]
    assert len(pulls) == 1
    assert pulls[0]["fixups"] == 1
    assert len(fixers) == 1
    assert fixers[0]["branch"] != "work/First"
    assert types.index("ci.failed") < types.index("ci.passed") < types.index("pr.merged")


async def test_same_line_gives_merge_and_conflict(
    servers: Servers, redis: Redis, nc: NATS, tmp_path: Path
) -> None:
    script = tmp_path / "agent.py"
    script.write_text(SAME_LINE_AGENT)
    env = {"COCOPILOT_AGENT_COMMAND": f'["python3", "{script}", "{{task}}"]'}
    with running_stack(servers, tmp_path, env) as stack:
        async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as api:
            await add_repository(api, stack, defaultAgent="command")
            config = await api.patch("/api/v1/config", json={"maxFixupAttempts": 1})
            assert config.status_code == 200
            # Paused, so both pull requests are open before the queue merges either.
            await api.post(
                "/api/v1/repositories/app/agents/merge-queue/message", json={"type": "pause"}
            )
            for name in ("Left", "Right"):
                body = {"task": f"{name} wins", "repoName": "app", "name": name}
                assert (await api.post("/api/v1/workers", json=body)).status_code == 201
            await pulls_when(
                api, lambda pulls: len(pulls) == 2 and all(pr["stage"] == "ready" for pr in pulls)
            )
            await api.post(
                "/api/v1/repositories/app/agents/merge-queue/message", json={"type": "resume"}
            )

            pulls = await pulls_when(
                api,
                lambda pulls: (
                    any(pr["stage"] == "merged" for pr in pulls)
                    and any(pr["fixups"] == 1 for pr in pulls)
                ),
            )
            # The fix-up count is saved before its worker is spawned.
            workers = await wait_until(lambda: fixup_workers(api), timeout_s=20)

    merged = [pr for pr in pulls if pr["stage"] == "merged"]
    conflicted = [pr for pr in pulls if pr["stage"] != "merged"]
    # The queue merges in pull request order, so whichever finished first wins.
    assert len(merged) == 1
    assert len(conflicted) == 1
    assert conflicted[0]["number"] > merged[0]["number"]
    assert [worker["fixupOf"] for worker in workers] == [conflicted[0]["number"]]
    clone = stack.data_dir / "repos" / "app"
    assert run_git(clone, "show", "main:shared.txt") == f"{merged[0]['worker']} wins\n"


async def fixup_workers(api: httpx.AsyncClient) -> list[dict[str, Any]]:
    workers = (await api.get("/api/v1/repositories/app/workers")).json()
    return [worker for worker in workers if worker.get("fixupOf")]


async def _types_with(api: httpx.AsyncClient, event_type: str) -> list[str] | None:
    types = await event_types(api)
    return types if event_type in types else None
