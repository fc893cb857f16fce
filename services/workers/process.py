"""One agent process: run under a pseudo-terminal in its own session, output kept in a log file,
input written to the terminal, stopped as a whole process tree."""

import asyncio
import contextlib
import fcntl
import logging
import os
import pty
import re
import signal
import struct
import termios
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import psutil

from cocopilot.errors import Conflict

log = logging.getLogger(__name__)

TAIL_LINES = 20
LineHandler = Callable[[str], None]
TERMINAL_ROWS, TERMINAL_COLUMNS = 40, 120
# Output still arriving this long after the agent exited comes from a descendant that kept the
# terminal open; it is not waited for.
OUTPUT_DRAIN_S = 1.0
_ANSI_ESCAPE = re.compile(rb"\x1b(\[[0-9;?]*[ -/]*[@-~]|\][^\x07]*\x07|[@-Z\\-_])")


class AgentProcess:
    def __init__(
        self,
        process: asyncio.subprocess.Process,
        terminal_fd: int,
        log_path: Path,
        max_log_bytes: int,
        on_line: LineHandler,
    ) -> None:
        self.process = process
        self.pid = process.pid
        self.terminal_fd = terminal_fd
        self.max_log_bytes = max_log_bytes
        self.on_line = on_line
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.last_output_at = time.monotonic()
        self._partial_line = b""
        self._written_bytes = 0
        self._log_file = log_path.open("ab")
        self._output_closed = asyncio.Event()
        asyncio.get_running_loop().add_reader(terminal_fd, self._read_output)

    @classmethod
    async def start(
        cls,
        argv: list[str],
        cwd: Path,
        env: dict[str, str],
        log_path: Path,
        max_log_bytes: int,
        on_line: LineHandler,
    ) -> "AgentProcess":
        log_path.parent.mkdir(parents=True, exist_ok=True)
        # A terminal, so interactive CLIs behave as they do for a person.
        terminal_fd, agent_fd = pty.openpty()
        size = struct.pack("HHHH", TERMINAL_ROWS, TERMINAL_COLUMNS, 0, 0)
        fcntl.ioctl(agent_fd, termios.TIOCSWINSZ, size)
        # No echo: text typed into the session must not count as the agent's own output.
        attributes = termios.tcgetattr(agent_fd)
        attributes[3] &= ~termios.ECHO
        termios.tcsetattr(agent_fd, termios.TCSANOW, attributes)
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                cwd=cwd,
                env={"TERM": "xterm-256color", **env},
                stdin=agent_fd,
                stdout=agent_fd,
                stderr=agent_fd,
                # A session of its own makes the agent a process-group leader, so a stop can
                # signal the group, and no terminal signal meant for the service reaches it.
                start_new_session=True,
            )
        except OSError:
            os.close(terminal_fd)
            raise
        finally:
            os.close(agent_fd)
        os.set_blocking(terminal_fd, False)
        return cls(process, terminal_fd, log_path, max_log_bytes, on_line)

    def _read_output(self) -> None:
        try:
            data = os.read(self.terminal_fd, 65536)
        except BlockingIOError:
            return
        except OSError:  # EIO: every process holding the terminal has closed it
            data = b""
        if not data:
            self._close_output()
            return
        self.last_output_at = time.monotonic()
        self._write_log(data)
        self._keep_tail(data)

    def _write_log(self, data: bytes) -> None:
        if self._written_bytes >= self.max_log_bytes:
            return
        self._log_file.write(data)
        self._written_bytes += len(data)
        if self._written_bytes >= self.max_log_bytes:
            self._log_file.write(b"\n[cocopilot: log limit reached; later output dropped]\n")
        self._log_file.flush()

    def _keep_tail(self, data: bytes) -> None:
        lines = (self._partial_line + data).split(b"\n")
        self._partial_line = lines.pop()[-4096:]
        for line in lines:
            self._add_line(_plain_text(line))

    def _close_output(self) -> None:
        if self._output_closed.is_set():
            return
        asyncio.get_running_loop().remove_reader(self.terminal_fd)
        os.close(self.terminal_fd)
        if self._partial_line:
            self._add_line(_plain_text(self._partial_line))
        self._log_file.close()
        self._output_closed.set()

    def _add_line(self, line: str) -> None:
        self.tail.append(line)
        self.on_line(line)

    def write_input(self, text: str) -> None:
        """Type ``text`` into the agent's terminal and press Enter."""
        if self._output_closed.is_set():
            raise Conflict("the agent's terminal is closed")
        try:
            os.write(self.terminal_fd, text.encode() + b"\r")
        except BlockingIOError:
            raise Conflict("the agent is not reading its input; try again later") from None

    async def wait(self) -> int:
        code = await self.process.wait()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._output_closed.wait(), OUTPUT_DRAIN_S)
        self._close_output()
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
        """Wait for the agent and its descendants, then return the descendants still alive.
        asyncio reaps the agent, which is our child; psutil only watches the descendants."""
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


def _plain_text(line: bytes) -> str:
    return _ANSI_ESCAPE.sub(b"", line).decode(errors="replace").replace("\r", "").rstrip()


def _descendants(pid: int) -> list[psutil.Process]:
    """Return the agent's descendants, including those that left its process group."""
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
