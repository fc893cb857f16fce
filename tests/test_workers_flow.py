"""A worker's life through the api, with all four services running as processes."""

import os
import shutil
import subprocess
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
    async with httpx.AsyncClient(
        base_url=stack.base_url, headers=stack.headers, timeout=30
    ) as client:
        yield client


async def register(api: httpx.AsyncClient, stack: Stack, name: str = "app") -> dict[str, object]:
    make_repository(stack.repos_dir / name)
    response = await api.post(
        "/api/v1/repositories", json={"name": name, "url": str(stack.repos_dir / name)}
    )
    assert response.status_code == 201, response.text
    return response.json()


async def wait_for_status(api: httpx.AsyncClient, name: str, status: str) -> dict[str, object]:
    async def reached() -> dict[str, object] | None:
        worker = (await api.get(f"/api/v1/workers/{name}")).json()
        return worker if worker.get("status") == status else None

    return await wait_until(reached, timeout_s=20)


async def test_demo_worker_commits_on_its_branch(api: httpx.AsyncClient, stack: Stack) -> None:
    await register(api, stack)

    response = await api.post(
        "/api/v1/workers", json={"task": "Add a changelog", "repoName": "app"}
    )

    assert response.status_code == 201, response.text
    worker = response.json()
    assert worker["status"] == "starting"
    assert worker["branch"] == f"work/{worker['name']}"
    await wait_for_status(api, worker["name"], "completed")
    clone = stack.data_dir / "repos" / "app"
    log = run_git(clone, "log", "--format=%s", f"work/{worker['name']}")
    assert log.splitlines()[0] == "Record demo task: Add a changelog"


async def test_failing_agent_reports_exit_code(
    servers: Servers, redis: Redis, nc: NATS, tmp_path: Path
) -> None:
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


def agent_stack_env(tmp_path: Path, source: str) -> dict[str, str]:
    """Settings for a stack whose ``command`` agent is the Python program ``source``."""
    script = tmp_path / "agent.py"
    script.write_text(source)
    return {"COCOPILOT_AGENT_COMMAND": f'["python3", "{script}", "{{task}}"]'}


# Starts a child and a grandchild in a new session (out of the agent's process group), records
# their pids, commits once, then sleeps until stopped.
TREE_AGENT = """
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
grandchild = subprocess.Popen(
    [sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True
)
open(os.environ["PIDS_FILE"], "w").write(f"{os.getpid()} {child.pid} {grandchild.pid}")
open("work.txt", "w").write("started")
subprocess.run(["git", "add", "work.txt"], check=True)
subprocess.run(["git", "commit", "-qm", "Start work"], check=True)
print("ready", flush=True)
time.sleep(600)
"""


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has ended; only its parent has not collected it yet.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(") ")[-1][0] != "Z"


async def test_delete_ends_process_tree_and_keeps_branch(
    servers: Servers, redis: Redis, nc: NATS, tmp_path: Path
) -> None:
    pids_file = tmp_path / "pids"
    env = agent_stack_env(tmp_path, TREE_AGENT) | {"PIDS_FILE": str(pids_file)}
    with running_stack(servers, tmp_path, env) as stack:
        async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as api:
            await register(api, stack)
            body = {"task": "Work forever", "repoName": "app", "agent": "command", "name": "Tree"}
            assert (await api.post("/api/v1/workers", json=body)).status_code == 201
            await wait_for_status(api, "Tree", "working")
            await wait_until(lambda: pids_file.exists() and pids_file.read_text(), 20)
            worktree = stack.data_dir / "worktrees" / "app" / "Tree"
            clone = stack.data_dir / "repos" / "app"
            await wait_until(lambda: "Start work" in _log(clone, "work/Tree"), 20)

            response = await api.delete("/api/v1/workers/Tree")

            assert response.status_code == 204
            assert (await api.get("/api/v1/workers/Tree")).status_code == 404
    pids = [int(pid) for pid in pids_file.read_text().split()]
    assert [pid for pid in pids if pid_alive(pid)] == []
    assert not worktree.exists()
    assert "Start work" in _log(clone, "work/Tree")


async def test_delete_removes_branch_without_commits(api: httpx.AsyncClient, stack: Stack) -> None:
    await register(api, stack)
    body = {"task": "Nothing", "repoName": "app", "name": "Idle", "branch": "main"}
    assert (await api.post("/api/v1/workers", json=body)).status_code == 201
    await wait_for_status(api, "Idle", "completed")
    clone = stack.data_dir / "repos" / "app"
    run_git(clone, "update-ref", "refs/heads/work/Idle", "refs/remotes/origin/main")

    assert (await api.delete("/api/v1/workers/Idle")).status_code == 204

    assert run_git(clone, "branch", "--list", "work/Idle") == ""


async def test_restart_fails_lost_worker(
    servers: Servers, redis: Redis, nc: NATS, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"
    source = (
        f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\ntime.sleep(600)\n"
    )
    env = agent_stack_env(tmp_path, source)
    with running_stack(servers, tmp_path, env) as stack:
        async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as api:
            await register(api, stack)
            body = {"task": "Hang", "repoName": "app", "agent": "command", "name": "Lost"}
            assert (await api.post("/api/v1/workers", json=body)).status_code == 201
            await wait_for_status(api, "Lost", "working")
            await wait_until(lambda: pid_file.exists() and pid_file.read_text(), 20)

            stack.stop("workers", kill=True)
            stack.start("workers")

            worker = await wait_for_status(api, "Lost", "failed")
            repositories = (await api.get("/api/v1/repositories")).json()
    assert worker["error"].startswith("agent process lost")
    assert [repository["name"] for repository in repositories] == ["app"]
    assert not pid_alive(int(pid_file.read_text()))


async def test_records_survive_api_restart(api: httpx.AsyncClient, stack: Stack) -> None:
    await register(api, stack)
    body = {"task": "Keep me", "repoName": "app", "name": "Kept"}
    assert (await api.post("/api/v1/workers", json=body)).status_code == 201

    stack.stop("api")
    stack.start("api")
    stack.wait_healthy()

    assert (await api.get("/api/v1/workers/Kept")).json()["task"] == "Keep me"


def _log(repo: Path, ref: str) -> str:
    try:
        return run_git(repo, "log", "--format=%s", ref)
    except subprocess.CalledProcessError:
        return ""


# Reads lines from its terminal: records each, exits 0 on "finish".
READER_AGENT = """
import sys
print("ready", flush=True)
for line in sys.stdin:
    print("got:", line.strip(), flush=True)
    if line.strip() == "finish":
        sys.exit(0)
"""


async def test_nudge_and_message_reach_session(
    servers: Servers, redis: Redis, nc: NATS, tmp_path: Path
) -> None:
    with running_stack(servers, tmp_path, agent_stack_env(tmp_path, READER_AGENT)) as stack:
        async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as api:
            await register(api, stack)
            body = {"task": "Listen", "repoName": "app", "agent": "command", "name": "Ears"}
            assert (await api.post("/api/v1/workers", json=body)).status_code == 201
            await wait_for_status(api, "Ears", "working")
            base = "/api/v1/repositories/app"

            nudge = await api.post(f"{base}/workers/Ears/nudge", json={"message": "keep going"})
            default_nudge = await api.post(f"{base}/workers/Ears/nudge")
            message = await api.post(f"{base}/agents/Ears/message", json={"text": "finish"})
            worker = await wait_for_status(api, "Ears", "completed")
            inbox = (await api.get(f"{base}/agents/Ears/messages")).json()
            late_nudge = await api.post(f"{base}/workers/Ears/nudge")

    log = (stack.data_dir / "logs" / "app" / "Ears.log").read_text()
    assert nudge.status_code == 200, nudge.text
    assert nudge.json()["message"] == "keep going"
    assert default_nudge.status_code == 200, default_nudge.text
    assert message.status_code == 201, message.text
    assert "got: keep going" in log
    assert f"got: {default_nudge.json()['message']}" in log
    assert worker["exitCode"] == 0
    assert [entry["text"] for entry in inbox] == ["finish"]
    assert late_nudge.status_code == 409


async def test_agents_list_and_supervisor_messages(api: httpx.AsyncClient, stack: Stack) -> None:
    await register(api, stack)
    body = {"task": "Quick", "repoName": "app", "name": "Quick"}
    assert (await api.post("/api/v1/workers", json=body)).status_code == 201
    base = "/api/v1/repositories/app/agents"

    agents = (await api.get(base)).json()
    pause = await api.post(f"{base}/merge-queue/message", json={"type": "pause", "from": "alice"})
    wrong_type = await api.post(f"{base}/merge-queue/message", json={"type": "nudge-all"})
    nudge_all = await api.post(f"{base}/supervisor/message", json={"type": "nudge-all"})
    agents_after = {agent["name"]: agent for agent in (await api.get(base)).json()}

    assert [(agent["name"], agent["type"]) for agent in agents] == [
        ("supervisor", "supervisor"),
        ("merge-queue", "merge-queue"),
        ("Quick", "worker"),
    ]
    assert pause.status_code == 201, pause.text
    assert pause.json()["from"] == "alice"
    assert wrong_type.status_code == 400
    assert nudge_all.status_code == 201, nudge_all.text
    assert agents_after["merge-queue"]["status"] == "paused"


async def test_logs_tail_and_stream(
    servers: Servers, redis: Redis, nc: NATS, tmp_path: Path
) -> None:
    source = (
        "import time\nfor n in range(5):\n    print(f'step {n}', flush=True)\n    time.sleep(0.2)\n"
    )
    with running_stack(servers, tmp_path, agent_stack_env(tmp_path, source)) as stack:
        async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as api:
            await register(api, stack)
            body = {"task": "Count", "repoName": "app", "agent": "command", "name": "Counter"}
            assert (await api.post("/api/v1/workers", json=body)).status_code == 201

            events = []
            async with api.stream("GET", "/api/v1/workers/Counter/logs/stream?tail=100") as stream:
                async for line in stream.aiter_lines():
                    if line.startswith(("event:", "data:")):
                        events.append(line)
            await wait_for_status(api, "Counter", "completed")
            tail = (await api.get("/api/v1/repositories/app/workers/Counter/logs?tail=2")).json()
            missing = await api.get("/api/v1/workers/Nobody/logs")

    data = [line.removeprefix("data: ") for line in events if line.startswith("data:")]
    assert data[:5] == [f"step {n}" for n in range(5)]
    assert events[-2:] == ["event: end", 'data: {"status": "completed"}']
    assert tail["lines"] == ["step 3", "step 4"]
    assert missing.status_code == 404


RESUMABLE_AGENT = """
import sys, time
if sys.argv[1] == "--resume":
    print("resumed:", sys.argv[2], flush=True)
    sys.exit(0)
print("first run", flush=True)
time.sleep(600)
"""


async def test_restart_resumes_resumable_agent(
    servers: Servers, redis: Redis, nc: NATS, tmp_path: Path
) -> None:
    script = tmp_path / "agent.py"
    script.write_text(RESUMABLE_AGENT)
    env = {
        "COCOPILOT_AGENT_COMMAND": f'["python3", "{script}", "{{task}}"]',
        "COCOPILOT_AGENT_RESUME_COMMAND": f'["python3", "{script}", "--resume", "{{task}}"]',
    }
    with running_stack(servers, tmp_path, env) as stack:
        async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as api:
            await register(api, stack)
            body = {"task": "Long job", "repoName": "app", "agent": "command", "name": "Phoenix"}
            assert (await api.post("/api/v1/workers", json=body)).status_code == 201
            await wait_for_status(api, "Phoenix", "working")

            stack.stop("workers", kill=True)
            stack.start("workers")

            worker = await wait_for_status(api, "Phoenix", "completed")
            logs = (await api.get("/api/v1/workers/Phoenix/logs")).json()

    assert worker["exitCode"] == 0
    assert logs["lines"][-1] == "resumed: Long job"


async def test_worktree_removed_by_hand_is_pruned(api: httpx.AsyncClient, stack: Stack) -> None:
    await register(api, stack)
    body = {"task": "Note", "repoName": "app", "name": "Reuse"}
    assert (await api.post("/api/v1/workers", json=body)).status_code == 201
    await wait_for_status(api, "Reuse", "completed")
    clone = stack.data_dir / "repos" / "app"
    run_git(clone, "update-ref", "refs/heads/work/Reuse", "refs/remotes/origin/main")
    shutil.rmtree(stack.data_dir / "worktrees" / "app" / "Reuse")

    removed = await api.delete("/api/v1/workers/Reuse")
    again = await api.post("/api/v1/workers", json=body)
    await wait_for_status(api, "Reuse", "completed")

    assert removed.status_code == 204
    assert again.status_code == 201, again.text
    assert "Reuse" in run_git(clone, "worktree", "list")


async def test_restart_prunes_orphaned_worktree(
    api: httpx.AsyncClient, stack: Stack, redis: Redis
) -> None:
    await register(api, stack)
    body = {"task": "Note", "repoName": "app", "name": "Orphan"}
    assert (await api.post("/api/v1/workers", json=body)).status_code == 201
    await wait_for_status(api, "Orphan", "completed")
    # A stop that deleted the record and was killed before it removed the worktree.
    await redis.delete("cocopilot:worker:Orphan")
    worktree = stack.data_dir / "worktrees" / "app" / "Orphan"

    stack.stop("workers", kill=True)
    stack.start("workers")

    # The killed service's heartbeat outlives it, so wait for the pruning itself.
    await wait_until(lambda: not worktree.exists(), timeout_s=30)
    assert "Orphan" not in run_git(stack.data_dir / "repos" / "app", "worktree", "list")


async def test_git_file_outside_roots_is_rejected(api: httpx.AsyncClient, stack: Stack) -> None:
    await register(api, stack)
    # A .git file pointing at the service's own clone, inside the allowed folder.
    sneaky = stack.repos_dir / "sneaky"
    sneaky.mkdir()
    (sneaky / ".git").write_text(f"gitdir: {stack.data_dir / 'repos' / 'app' / '.git'}\n")

    response = await api.post("/api/v1/repositories", json={"name": "sneaky", "url": str(sneaky)})

    assert response.status_code == 400
    assert "git data must be inside" in response.json()["error"]["message"]
    assert (await api.get("/api/v1/repositories/sneaky")).status_code == 404
