"""The four services started as processes against the test servers, as compose would run them."""

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.gitrepos import make_repository
from tests.servers import Servers, free_port

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("api", "workers", "webhooks", "metrics")
STOP_TIMEOUT_S = 15


@dataclass
class Stack:
    base_url: str
    data_dir: Path
    repos_dir: Path
    env: dict[str, str]
    logs_dir: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, service: str, instance_id: str | None = None) -> str:
        """Start ``service``; with ``instance_id``, as one more replica under that id.

        Return the key that ``stop`` takes: the service's name, or ``service:instance_id``.
        """
        key = service if instance_id is None else f"{service}:{instance_id}"
        env = (
            self.env if instance_id is None else {**self.env, "COCOPILOT_INSTANCE_ID": instance_id}
        )
        # The child keeps its own copy of the file descriptor; ours can close at once.
        with (self.logs_dir / f"{key}.log").open("ab") as log_file:
            self.processes[key] = subprocess.Popen(
                [sys.executable, "-m", f"services.{service}.main"],
                cwd=ROOT,
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        return key

    def stop(self, service: str, kill: bool = False) -> None:
        """Stop ``service`` with SIGTERM (or SIGKILL); fail if SIGTERM does not end it in time."""
        process = self.processes.pop(service)
        if kill:
            process.kill()
        else:
            process.terminate()
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise AssertionError(
                f"{service} did not stop within {STOP_TIMEOUT_S} s of SIGTERM\n{self.logs()}"
            ) from None

    def wait_api(self, timeout_s: float = 30.0) -> None:
        """Wait until the api returns 200 from ``/healthz``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"api not healthy after {timeout_s} s\n{self.logs()}")

    def wait_healthy(self, timeout_s: float = 30.0) -> None:
        """Wait until the api responds and every background service reports a heartbeat."""
        deadline = time.monotonic() + timeout_s
        last = ""
        while time.monotonic() < deadline:
            try:
                status = httpx.get(
                    f"{self.base_url}/api/v1/status", headers=self.headers, timeout=2
                )
                services = status.json().get("services", {})
                if all(services.get(name, {}).get("healthy") for name in SERVICES[1:]):
                    return
                last = status.text
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.1)
        raise TimeoutError(f"stack not healthy after {timeout_s} s: {last}\n{self.logs()}")

    @property
    def headers(self) -> dict[str, str]:
        token = self.env.get("COCOPILOT_API_TOKEN")
        return {"Authorization": f"Bearer {token}"} if token else {}

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, headers=self.headers, timeout=30)

    def register_repository(self, name: str) -> dict[str, object]:
        """Make a git repository under ``repos_dir`` and track it under ``name``."""
        make_repository(self.repos_dir / name)
        with self.client() as client:
            response = client.post(
                "/api/v1/repositories", json={"name": name, "url": str(self.repos_dir / name)}
            )
        assert response.status_code == 201, response.text
        result: dict[str, object] = response.json()
        return result

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-4000:]}"
            for path in sorted(self.logs_dir.glob("*.log"))
        )


@contextmanager
def running_stack(
    servers: Servers, tmp_path: Path, extra_env: dict[str, str] | None = None
) -> Iterator[Stack]:
    stack = make_stack(servers, tmp_path, extra_env)
    try:
        for service in SERVICES:
            stack.start(service)
        stack.wait_healthy()
        yield stack
    finally:
        stop_all(stack)


# An agent for the ``command`` profile that keeps its worker active until it is stopped.
SLEEPING_AGENT = "import time\ntime.sleep(600)\n"


def sleeping_agent_env(folder: Path) -> dict[str, str]:
    """Settings that make the ``command`` agent profile run SLEEPING_AGENT."""
    script = folder / "sleeping_agent.py"
    script.write_text(SLEEPING_AGENT)
    return {"COCOPILOT_AGENT_COMMAND": f'["{sys.executable}", "{script}", "{{task}}"]'}


def make_stack(servers: Servers, tmp_path: Path, extra_env: dict[str, str] | None = None) -> Stack:
    """Return a stack with its folders and settings made and nothing started."""
    port = free_port()
    data_dir, repos_dir, logs_dir = tmp_path / "data", tmp_path / "repos", tmp_path / "logs"
    for folder in (data_dir, repos_dir, logs_dir):
        folder.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "COCOPILOT_REDIS_URL": servers.redis_url,
        "COCOPILOT_NATS_URL": servers.nats_url,
        "COCOPILOT_PORT": str(port),
        "COCOPILOT_DATA_DIR": str(data_dir),
        "COCOPILOT_LOCAL_REPO_ROOTS": f'["{repos_dir}"]',
        "COCOPILOT_HEALTH_DIR": str(tmp_path / "health"),
        "COCOPILOT_HEARTBEAT_INTERVAL_S": "0.5",
        "COCOPILOT_DEMO_AGENT_DELAY_S": "0.2",
        "COCOPILOT_WEBHOOK_ALLOWED_NETWORKS": '["127.0.0.0/8"]',
        "COCOPILOT_LOG_FORMAT": "text",
        "COCOPILOT_INSTANCE_ID": f"test-{port}",
        **(extra_env or {}),
    }
    return Stack(f"http://127.0.0.1:{port}", data_dir, repos_dir, env, logs_dir)


def stop_all(stack: Stack) -> None:
    """Stop every service, all of them even when one fails to stop."""
    failures = []
    for service in list(stack.processes):
        try:
            stack.stop(service)
        except AssertionError as exc:
            failures.append(str(exc))
    if failures:
        raise AssertionError("\n".join(failures))
