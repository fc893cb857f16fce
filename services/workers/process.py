"""One agent process: started in its own session, output kept in a log file, stopped as a tree."""

import asyncio
import contextlib
import logging
import os
import signal
from collections import deque
from pathlib import Path

import psutil

log = logging.getLogger(__name__)

TAIL_LINES = 20


class AgentProcess:
    def __init__(self, process: asyncio.subprocess.Process, log_path: Path, max_log_bytes: int):
        self.process = process
        self.pid = process.pid
        self.log_path = log_path
        self.max_log_bytes = max_log_bytes
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self._pump = asyncio.create_task(self._copy_output())

    @classmethod
    async def start(
        cls, argv: list[str], cwd: Path, env: dict[str, str], log_path: Path, max_log_bytes: int
    ) -> "AgentProcess":
        log_path.parent.mkdir(parents=True, exist_ok=True)
        process = await asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            # A session of its own makes the agent a process-group leader, so a stop can
            # signal the group, and no terminal signal meant for the service reaches it.
            start_new_session=True,
        )
        return cls(process, log_path, max_log_bytes)

    async def _copy_output(self) -> None:
        assert self.process.stdout is not None
        written_bytes = 0
        with self.log_path.open("ab") as log_file:
            async for line in self.process.stdout:
                self.tail.append(line.decode(errors="replace").rstrip())
                if written_bytes < self.max_log_bytes:
                    log_file.write(line)
                    log_file.flush()
                    written_bytes += len(line)
                    if written_bytes >= self.max_log_bytes:
                        log_file.write(b"[cocopilot: log limit reached; later output dropped]\n")

    async def wait(self) -> int:
        code = await self.process.wait()
        await self._pump
        return code

    def last_line(self) -> str:
        return next((line for line in reversed(self.tail) if line.strip()), "")

    async def stop(self, grace_s: float) -> None:
        """End the whole process tree: SIGTERM, then SIGKILL to what is left after ``grace_s``."""
        descendants = _descendants(self.pid)
        _signal_all(self.pid, descendants, signal.SIGTERM)
        alive = await self._wait_for_tree(descendants, grace_s)
        if alive or self.process.returncode is None:
            log.warning(
                "agent processes outlived SIGTERM; sending SIGKILL",
                extra={"pid": self.pid, "descendants": [process.pid for process in alive]},
            )
            _signal_all(self.pid, alive, signal.SIGKILL)
            await self._wait_for_tree(alive, grace_s)
        await self.wait()

    async def _wait_for_tree(
        self, descendants: list[psutil.Process], timeout_s: float
    ) -> list[psutil.Process]:
        """Wait for the agent (our child, reaped by asyncio) and its descendants (watched by
        psutil, which must not reap our own child); return the descendants still alive."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.process.wait()), timeout_s)
        _, alive = await asyncio.to_thread(psutil.wait_procs, descendants, timeout_s)
        return list(alive)


async def stop_leftover(pid: int, started_at: float, grace_s: float) -> bool:
    """End the tree of an agent that a previous run of the service started, if that process
    still runs; return whether it did."""
    try:
        root = psutil.Process(pid)
        if abs(root.create_time() - started_at) > 0.01:
            return False  # the pid now belongs to another process
        tree = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return False
    _signal_all(pid, tree, signal.SIGTERM)
    _, alive = await asyncio.to_thread(psutil.wait_procs, tree, grace_s)
    _signal_all(pid, alive, signal.SIGKILL)
    return True


def process_start_time(pid: int) -> float | None:
    try:
        return float(psutil.Process(pid).create_time())
    except psutil.NoSuchProcess:
        return None


def _descendants(pid: int) -> list[psutil.Process]:
    """The agent's descendants, including those that left its process group."""
    try:
        return list(psutil.Process(pid).children(recursive=True))
    except psutil.NoSuchProcess:
        return []


def _signal_all(pid: int, descendants: list[psutil.Process], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)
    for process in descendants:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.send_signal(sig)
