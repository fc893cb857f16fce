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

    def start(self, service: str) -> None:
        # The child keeps its own copy of the file descriptor; ours can close at once.
        with (self.logs_dir / f"{service}.log").open("ab") as log_file:
            self.processes[service] = subprocess.Popen(
                [sys.executable, "-m", f"services.{service}.main"],
                cwd=ROOT,
                env=self.env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )

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

    def wait_healthy(self, timeout_s: float = 30.0) -> None:
        """Wait until the api answers and every background service reports a heartbeat."""
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

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-4000:]}"
            for path in sorted(self.logs_dir.glob("*.log"))
        )


@contextmanager
def running_stack(
    servers: Servers, tmp_path: Path, extra_env: dict[str, str] | None = None
) -> Iterator[Stack]:
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
    stack = Stack(f"http://127.0.0.1:{port}", data_dir, repos_dir, env, logs_dir)
    try:
        for service in SERVICES:
            stack.start(service)
        stack.wait_healthy()
        yield stack
    finally:
        stop_all(stack)


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
