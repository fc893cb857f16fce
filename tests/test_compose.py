"""The README's ``docker compose up -d --build``: all six services become healthy, a demo worker
runs from spawn to commit, and the state outlives ``down`` and ``up``. Everything is driven
through the api's published port.

Each run uses its own compose project, host port and repositories folder, builds the images
without agent CLIs, and removes its containers, volumes and images at the end. Skipped when no
container engine is reachable.
"""

import asyncio
import os
import secrets
import shutil
import subprocess
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from tests.gitrepos import make_repository
from tests.servers import free_port
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("redis", "nats", "api", "workers", "webhooks", "metrics")
BACKGROUND_SERVICES = ("workers", "webhooks", "metrics")
# A first build downloads the base images and every dependency, and later builds use the cache.
BUILD_TIMEOUT_S = 900.0
HEALTHY_TIMEOUT_S = 60.0
COMMAND_TIMEOUT_S = 120.0

pytestmark = [
    pytest.mark.compose,
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.timeout(BUILD_TIMEOUT_S + 300),
]


def engine_problem() -> str | None:
    """Return why ``docker compose`` cannot run here, or None when it can."""
    if shutil.which("docker") is None:
        return "docker not found on PATH"
    for argv in (["docker", "info"], ["docker", "compose", "version"]):
        try:
            result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        except subprocess.TimeoutExpired:
            return f"`{' '.join(argv)}` timed out after 30 s"
        if result.returncode != 0:
            output = result.stderr.strip().splitlines() or [f"exit code {result.returncode}"]
            return f"`{' '.join(argv)}` failed: {output[-1]}"
    return None


@dataclass
class ComposeProject:
    name: str
    env: dict[str, str]
    base_url: str
    token: str
    repos_dir: Path

    async def compose(
        self, *args: str, timeout_s: float = COMMAND_TIMEOUT_S, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run ``docker compose -p NAME args`` in the repository root, as a user would."""
        argv = ["docker", "compose", "-p", self.name, *args]
        result = await asyncio.to_thread(
            subprocess.run,
            argv,
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"`{' '.join(argv)}` failed with exit code {result.returncode}:\n"
                f"{tail(result.stdout + result.stderr)}"
            )
        return result

    async def health(self) -> dict[str, str]:
        """Return each running service's health: healthy, starting, unhealthy or no-check."""
        ids = (await self.compose("ps", "-q")).stdout.split()
        if not ids:
            return {}
        template = (
            '{{index .Config.Labels "com.docker.compose.service"}} '
            "{{if .State.Health}}{{.State.Health.Status}}{{else}}no-check{{end}}"
        )
        result = await asyncio.to_thread(
            subprocess.run,
            ["docker", "inspect", "--format", template, *ids],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
        )
        pairs = (line.split() for line in result.stdout.splitlines())
        return {pair[0]: pair[1] for pair in pairs if len(pair) == 2}

    async def logs(self) -> str:
        result = await self.compose("logs", "--tail", "30", check=False)
        return tail(result.stdout + result.stderr, lines=200)

    def client(self, token: str | None = None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        return httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=30)


def tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def new_project(repos_dir: Path) -> ComposeProject:
    port = free_port()
    token = secrets.token_hex(16)
    env = os.environ | {
        "COCOPILOT_BIND": "127.0.0.1",
        "COCOPILOT_PORT": str(port),
        "COCOPILOT_API_TOKEN": token,
        "COCOPILOT_REPOS_DIR": str(repos_dir),
        "COCOPILOT_AGENT_CLIS": "",
        "COCOPILOT_PIP_AGENT_PACKAGES": "",
    }
    return ComposeProject(
        name=f"cocopilot-test-{secrets.token_hex(4)}",
        env=env,
        base_url=f"http://127.0.0.1:{port}",
        token=token,
        repos_dir=repos_dir,
    )


async def wait_healthy(project: ComposeProject, timeout_s: float) -> None:
    observed: dict[str, str] = {}

    async def all_healthy() -> bool:
        observed.clear()
        observed.update(await project.health())
        return all(observed.get(service) == "healthy" for service in SERVICES)

    try:
        await wait_until(all_healthy, timeout_s=timeout_s, interval_s=1.0)
    except AssertionError:
        pytest.fail(
            f"services not healthy within {timeout_s:g} s: {observed or 'no containers'}\n"
            f"{await project.logs()}"
        )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def project(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ComposeProject]:
    problem = await asyncio.to_thread(engine_problem)
    if problem is not None:
        pytest.skip(f"no container engine: {problem}")
    repos_dir = tmp_path_factory.mktemp("repos")
    # The workers service runs as its own user, which must be able to read the mounted folder.
    repos_dir.chmod(0o755)
    project = new_project(repos_dir)
    try:
        await project.compose("up", "-d", "--build", timeout_s=BUILD_TIMEOUT_S)
        await wait_healthy(project, HEALTHY_TIMEOUT_S)
        yield project
    finally:
        await project.compose("down", "-v", "--rmi", "local", check=False)


async def test_compose_services_report_healthy(project: ComposeProject) -> None:
    async with project.client() as client:
        healthz = await client.get("/healthz")
        status = await client.get("/api/v1/status")

    assert healthz.status_code == 200, healthz.text
    assert status.status_code == 200, status.text
    body = status.json()
    assert body["redis"]["connected"] is True
    assert body["nats"]["connected"] is True
    for service in BACKGROUND_SERVICES:
        assert body["services"][service]["healthy"] is True, body["services"]


async def test_compose_api_requires_token(project: ComposeProject) -> None:
    async with httpx.AsyncClient(base_url=project.base_url, timeout=30) as client:
        without_token = await client.get("/api/v1/status")
        healthz = await client.get("/healthz")
    async with project.client(token="not-the-token") as client:
        wrong_token = await client.get("/api/v1/status")

    assert without_token.status_code == 401, without_token.text
    assert wrong_token.status_code == 401, wrong_token.text
    assert healthz.status_code == 200, healthz.text


# A completed worker's pull request may be merged at once by the merge queue, which moves the
# worker on to merged, so either status shows that the agent finished its task.
DONE_STATUSES = ("completed", "merged")


async def finished_worker(client: httpx.AsyncClient, name: str) -> dict[str, Any]:
    """Return the worker once its agent has finished or failed, else an empty dict."""
    response = await client.get(f"/api/v1/workers/{name}")
    response.raise_for_status()
    worker: dict[str, Any] = response.json()
    return worker if worker["status"] in (*DONE_STATUSES, "failed") else {}


async def completions(client: httpx.AsyncClient, repo_name: str) -> int:
    response = await client.get("/api/v1/metrics", params={"repoName": repo_name})
    response.raise_for_status()
    return sum(hour["count"] for hour in response.json()["workerThroughput"])


async def branch_subjects(project: ComposeProject, repo_name: str, branch: str) -> Sequence[str]:
    """Return the commit subjects of a branch in the workers service's clone of a repository."""
    # The workers service clones into repos/<name> under its data folder, /data in compose.
    git_log = ["git", "-C", f"/data/repos/{repo_name}", "log", "--format=%s", branch]
    result = await project.compose("exec", "-T", "workers", *git_log)
    return result.stdout.splitlines()


async def expect_status(project: ComposeProject, response: httpx.Response, status: int) -> None:
    """Fail with the response and the services' latest logs unless it has ``status``."""
    if response.status_code != status:
        request = response.request
        pytest.fail(
            f"{request.method} {request.url.path} returned {response.status_code}, expected "
            f"{status}: {response.text}\n{await project.logs()}"
        )


async def run_demo_worker(
    project: ComposeProject, client: httpx.AsyncClient, repo_name: str, task: str
) -> dict[str, Any]:
    """Add a new repository from the mounted folder, run a demo worker on it, and return the
    worker once it has finished."""
    make_repository(project.repos_dir / repo_name)
    added = await client.post("/api/v1/repositories", json={"url": f"/repos/{repo_name}"})
    await expect_status(project, added, 201)

    body = {"task": task, "repoName": repo_name, "agent": "demo"}
    spawned = await client.post("/api/v1/workers", json=body)
    await expect_status(project, spawned, 201)

    name = spawned.json()["name"]
    return await wait_until(lambda: finished_worker(client, name), timeout_s=60)


async def test_compose_demo_worker_commits_on_branch(project: ComposeProject) -> None:
    task = "Write the demo note"
    async with project.client() as client:
        worker = await run_demo_worker(project, client, "demo-app", task)
        completed = await wait_until(lambda: completions(client, "demo-app"), timeout_s=30)

    assert worker["status"] in DONE_STATUSES, worker
    assert worker["branch"] == f"work/{worker['name']}", worker
    subjects = await branch_subjects(project, "demo-app", worker["branch"])
    assert f"Record demo task: {task}" in subjects, subjects
    assert completed == 1


async def test_compose_recreate_keeps_state(project: ComposeProject) -> None:
    task = "Write a note that outlives the containers"
    async with project.client() as client:
        worker = await run_demo_worker(project, client, "kept-app", task)
    assert worker["status"] in DONE_STATUSES, worker

    # down without -v keeps the volumes, and they contain all of the state.
    await project.compose("down")
    await project.compose("up", "-d", timeout_s=BUILD_TIMEOUT_S)
    await wait_healthy(project, HEALTHY_TIMEOUT_S)

    async with project.client() as client:
        repository = await client.get("/api/v1/repositories/kept-app")
        kept = await client.get(f"/api/v1/workers/{worker['name']}")
    assert repository.status_code == 200, repository.text
    assert kept.status_code == 200, kept.text
    assert kept.json()["status"] in DONE_STATUSES, kept.text
    subjects = await branch_subjects(project, "kept-app", worker["branch"])
    assert f"Record demo task: {task}" in subjects, subjects
