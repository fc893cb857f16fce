"""Profile of single spawns: the time of each git call, of the agent's start and of the rest.

The workers service is restarted with a ``git`` wrapper first on its PATH. The wrapper runs the
real git and appends each call's start and end (bash's EPOCHREALTIME, wall-clock seconds) and
arguments to a log. A spawn's time from POST to the ``working`` event then splits into three
parts. The first is the git calls made inside that window. The second is the agent's start, from
the end of ``git worktree add`` to the service's "agent started" log line (millisecond
resolution). The rest is HTTP, NATS, Redis and the services' own Python. The wrapper's own
bash start-up lands in the rest (about 2 ms per git call, measured once on the 2-core benchmark
machine), so profiled spawns run a little slower than unprofiled ones.
"""

import asyncio
import json
import os
import shlex
import shutil
import statistics
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.workers_client import WorkersBench, perf_from_wall
from tests.stack import Stack

PROFILE_SPAWNS = 5
SPAWN_TIMEOUT_S = 60.0
AGENT_S = 3600

GIT_WRAPPER = """\
#!/bin/bash
started=$EPOCHREALTIME
{git} "$@"
status=$?
printf '%s %s %s\\n' "$started" "$EPOCHREALTIME" "$*" >> {log}
exit $status
"""


def install_git_wrapper(folder: Path) -> tuple[Path, Path]:
    """Write the wrapper as ``folder/bin/git``; return that folder and the log it appends to."""
    real_git = shutil.which("git")
    if real_git is None:
        raise RuntimeError("git not found on PATH")
    bin_dir, calls_log = folder / "bin", folder / "git-calls.log"
    bin_dir.mkdir(parents=True)
    wrapper = bin_dir / "git"
    wrapper.write_text(
        GIT_WRAPPER.format(git=shlex.quote(real_git), log=shlex.quote(str(calls_log)))
    )
    wrapper.chmod(0o755)
    return bin_dir, calls_log


def restart_workers(stack: Stack, env_change: dict[str, str]) -> None:
    stack.stop("workers")
    stack.env = {**stack.env, **env_change}
    stack.start("workers")
    stack.wait_healthy()


def git_calls(calls_log: Path, start: float, end: float) -> list[tuple[str, float, float]]:
    """Return ``(command, started, ended)`` (perf_counter scale) of calls between start and
    end; the command is git's subcommand, with its own subcommand for ``worktree``."""
    calls = []
    for line in calls_log.read_text().splitlines():
        started_wall, ended_wall, *args = line.split()
        started, ended = perf_from_wall(float(started_wall)), perf_from_wall(float(ended_wall))
        if start <= started and ended <= end:
            command = " ".join(args[:2]) if args[0] == "worktree" else args[0]
            calls.append((command, started, ended))
    return calls


def agent_started_at(workers_log: Path, name: str) -> float:
    """Return when the service logged "agent started" for worker ``name``."""
    for line in workers_log.read_text().splitlines():
        if not line.startswith("{"):
            continue
        entry = json.loads(line)
        if entry.get("message") == "agent started" and entry.get("worker") == name:
            return perf_from_wall(datetime.fromisoformat(entry["time"]).timestamp())
    raise RuntimeError(f'no "agent started" log line for worker {name}')


async def profile_spawn(
    bench: WorkersBench, repo: str, name: str, calls_log: Path
) -> dict[str, float]:
    """Spawn one worker, split its POST-to-working time in milliseconds, delete it."""
    started = time.perf_counter()
    response = await bench.spawn(name, repo, AGENT_S)
    if response.status_code != 201:
        raise RuntimeError(f"spawn of {name} failed: {response.text}")
    working = await bench.events.wait(name, "working", SPAWN_TIMEOUT_S)
    calls = git_calls(calls_log, started, working)
    agent_started = agent_started_at(bench.stack.logs_dir / "workers.log", name)

    await bench.delete(name)
    return split_spawn(started, working, calls, agent_started)


def split_spawn(
    started: float, working: float, calls: list[tuple[str, float, float]], agent_started: float
) -> dict[str, float]:
    """Return the parts of one spawn in milliseconds, and its number of git calls."""
    git_ms: dict[str, float] = {}
    for command, call_start, call_end in calls:
        key = f"git {command}"
        git_ms[key] = git_ms.get(key, 0.0) + (call_end - call_start) * 1000
    worktree_added = max(end for command, _, end in calls if command == "worktree add")
    total_ms = (working - started) * 1000
    agent_start_ms = (agent_started - worktree_added) * 1000
    return {
        "total": total_ms,
        **git_ms,
        "agentStart": agent_start_ms,
        "rest": total_ms - sum(git_ms.values()) - agent_start_ms,
        # Two parts of the rest: before git runs, and after the agent started.
        "postToFirstGitCall": (calls[0][1] - started) * 1000,
        "agentStartedToWorkingEvent": (working - agent_started) * 1000,
        "gitCalls": len(calls),
    }


async def profile_spawns(bench: WorkersBench, repos: list[str], folder: Path) -> dict[str, Any]:
    """Profile PROFILE_SPAWNS spawns per repository with the workers service behind the git
    wrapper, then restart it without. Return the median of each part, in milliseconds."""
    bin_dir, calls_log = install_git_wrapper(folder / "git-wrapper")
    original_path = bench.stack.env["PATH"]
    wrapped_path = f"{bin_dir}{os.pathsep}{original_path}"
    await asyncio.to_thread(restart_workers, bench.stack, {"PATH": wrapped_path})
    try:
        medians = {repo: await profile_repository(bench, repo, calls_log) for repo in repos}
    finally:
        await asyncio.to_thread(restart_workers, bench.stack, {"PATH": original_path})
    return {"spawns": PROFILE_SPAWNS, "medianMs": medians}


async def profile_repository(bench: WorkersBench, repo: str, calls_log: Path) -> dict[str, float]:
    runs = [
        await profile_spawn(bench, repo, f"Profile-{repo}-{number}", calls_log)
        for number in range(PROFILE_SPAWNS)
    ]
    keys = dict.fromkeys(key for run in runs for key in run)
    return {key: statistics.median(run.get(key, 0.0) for run in runs) for key in keys}


def profile_lines(profile: dict[str, Any]) -> Iterator[str]:
    for repo, parts in profile["medianMs"].items():
        split = ", ".join(f"{key} {value:.1f}" for key, value in parts.items())
        yield f"profile {repo} (median of {profile['spawns']} spawns, ms): {split}"
