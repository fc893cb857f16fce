"""Benchmark of the workers service: spawn-to-working latency, and 100 workers at once.

    .venv/bin/python -m bench.workers_spawn [--runs 15] [--temp-root /dev/shm] [--keep-logs DIR]

It starts Redis (valkey) and NATS from their pip-shipped binaries (tests/servers.py) and the four
services as processes (tests/stack.py), all on 127.0.0.1 and all in one temporary folder under
``--temp-root``, and measures three things:

1. Spawn latency, on a repository of 1,000 files and on one of 20,000 files. A spawn is timed
   from sending POST /api/v1/workers to the arrival of the worker's ``worker.updated`` event
   with status ``working``. That arrival is taken in the callback of an ordered JetStream
   consumer in this process. Baseline: ``git worktree add -b bench/N <path> <commit>``, timed
   with time.perf_counter on the clone that the service uses (``<data_dir>/repos/<name>``).
   Baseline and spawn alternate pair by pair, and the order inside a pair alternates too, so
   machine noise hits both alike. Each worker is deleted before the next pair.
2. A profile of single spawns, with the workers service restarted behind a git wrapper that
   records each git call (bench/workers_profile.py).
3. 100 workers spawned at once on the 1,000-file repository, each agent printing a line a
   second for 20 s (bench/workers_crowd.py).

Every worker runs the ``command`` agent profile, set to TICKING_AGENT below.
"""

import argparse
import asyncio
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import nats
import psutil
from redis.asyncio import Redis

from bench.workers_client import WorkerEvents, WorkersBench, describe, spread
from bench.workers_crowd import crowd_lines, run_crowd
from bench.workers_profile import profile_lines, profile_spawns
from tests.gitrepos import make_repository, run_git
from tests.servers import start_servers
from tests.stack import Stack, running_stack

FILE_COUNTS = (1_000, 20_000)
FOLDERS = 10
LINES_PER_FILE = 50
WARMUP_PAIRS = 2
SPAWN_TIMEOUT_S = 60.0
CLONE_TIMEOUT_S = 300.0
# Longer than any phase of the benchmark, so that a worker is working until it is deleted.
LONG_AGENT_S = 3600
# The target: spawn-to-working at most TARGET_FACTOR times git's own time plus TARGET_EXTRA_MS.
TARGET_FACTOR = 1.3
TARGET_EXTRA_MS = 100.0

# The agent of every worker: prints a line a second for as many seconds as its task gives.
# Then it writes the wall-clock time of its exit to BENCH_EXITS_DIR/<worker name>.
TICKING_AGENT = """\
import os, sys, time
for second in range(int(sys.argv[1])):
    print(f"tick {second}", flush=True)
    time.sleep(1)
exit_file = os.path.join(os.environ["BENCH_EXITS_DIR"], os.environ["COCOPILOT_WORKER_NAME"])
with open(exit_file, "w") as file:
    file.write(repr(time.time()))
"""


def repository_name(file_count: int) -> str:
    return f"files{file_count // 1000}k"


def module_text(index: int) -> str:
    """Return a Python module of about 1 KB, different for each index."""
    lines = (f"VALUE_{line} = {index * LINES_PER_FILE + line}\n" for line in range(LINES_PER_FILE))
    return f'"""Module {index}."""\n\n' + "".join(lines)


def make_files_repository(path: Path, file_count: int) -> None:
    """Create a repository at ``path`` with ``file_count`` files in FOLDERS folders, one commit."""
    files = {
        f"src/package{index % FOLDERS}/module{index}.py": module_text(index)
        for index in range(file_count)
    }
    make_repository(path, files=files)


async def register(bench: WorkersBench, file_count: int) -> Path:
    """Create and track a repository of ``file_count`` files; return the service's clone."""
    name = repository_name(file_count)
    source = bench.stack.repos_dir / name
    await asyncio.to_thread(make_files_repository, source, file_count)
    body = {"name": name, "url": str(source)}
    response = await bench.api.post("/api/v1/repositories", json=body, timeout=CLONE_TIMEOUT_S)
    if response.status_code != 201:
        raise RuntimeError(f"POST /api/v1/repositories {name} failed: {response.text}")
    return bench.stack.data_dir / "repos" / name


@dataclass
class WorktreeBaseline:
    """``git worktree add`` run by hand on the service's clone, then removed again."""

    clone: Path
    commit: str
    folder: Path

    def time_add_s(self, number: int) -> float:
        path, branch = self.folder / str(number), f"bench/{number}"
        argv = ["git", "worktree", "add", "-b", branch, "--", str(path), self.commit]
        started = time.perf_counter()
        subprocess.run(argv, cwd=self.clone, check=True, capture_output=True)
        elapsed_s = time.perf_counter() - started

        run_git(self.clone, "worktree", "remove", "--force", "--", str(path))
        run_git(self.clone, "branch", "-D", branch)
        return elapsed_s


async def time_spawn_ms(bench: WorkersBench, repo: str, name: str) -> dict[str, float]:
    """Spawn one worker and delete it again. Return the milliseconds from sending the POST
    to three points: its response, the ``worker.created`` event and the ``working`` event."""
    started = time.perf_counter()
    response = await bench.spawn(name, repo, LONG_AGENT_S)
    responded = time.perf_counter()
    if response.status_code != 201:
        raise RuntimeError(f"spawn of {name} failed: {response.text}")
    working = await bench.events.wait(name, "working", SPAWN_TIMEOUT_S)
    created = await bench.events.wait(name, "created", SPAWN_TIMEOUT_S)

    await bench.delete(name)
    return {
        "response": (responded - started) * 1000,
        "created": (created - started) * 1000,
        "working": (working - started) * 1000,
    }


async def measure_pair(
    bench: WorkersBench, baseline: WorktreeBaseline, repo: str, number: int
) -> dict[str, float]:
    """Time one baseline and one spawn; even pairs run the baseline first, odd ones last."""
    name = f"{repo}-{number:03d}"
    if number % 2 == 0:
        git_s = await asyncio.to_thread(baseline.time_add_s, number)
        spawn_ms = await time_spawn_ms(bench, repo, name)
    else:
        spawn_ms = await time_spawn_ms(bench, repo, name)
        git_s = await asyncio.to_thread(baseline.time_add_s, number)
    return spawn_ms | {"git": git_s * 1000}


async def measure_repository(
    bench: WorkersBench, clone: Path, runs: int, folder: Path
) -> dict[str, Any]:
    """Run WARMUP_PAIRS uncounted pairs, then ``runs`` pairs; summarize the counted ones."""
    commit = run_git(clone, "rev-parse", "refs/remotes/origin/main").strip()
    baseline = WorktreeBaseline(clone, commit, folder / "baseline" / clone.name)
    samples: dict[str, list[float]] = {"git": [], "working": [], "created": [], "response": []}
    for number in range(WARMUP_PAIRS + runs):
        pair = await measure_pair(bench, baseline, clone.name, number)
        if number >= WARMUP_PAIRS:
            for key, value in pair.items():
                samples[key].append(value)
    return summarize_latency(samples)


def summarize_latency(samples: dict[str, list[float]]) -> dict[str, Any]:
    git_ms, working_ms = spread(samples["git"]), spread(samples["working"])
    target_ms = TARGET_FACTOR * git_ms["median"] + TARGET_EXTRA_MS
    pairs_within = sum(
        working <= TARGET_FACTOR * git + TARGET_EXTRA_MS
        for git, working in zip(samples["git"], samples["working"], strict=True)
    )
    return {
        "gitWorktreeAddMs": git_ms,
        "spawnToWorkingMs": working_ms,
        "spawnToResponseMs": spread(samples["response"]),
        "spawnToCreatedEventMs": spread(samples["created"]),
        "ratioOfMedians": working_ms["median"] / git_ms["median"],
        "targetMs": target_ms,
        "targetMet": working_ms["median"] <= target_ms,
        "pairsWithinTarget": pairs_within,
        "samples": samples,
    }


async def run(stack: Stack, nats_url: str, redis_url: str, options: argparse.Namespace) -> Any:
    nc = await nats.connect(nats_url)
    redis: Redis = Redis.from_url(redis_url, decode_responses=True)
    events = WorkerEvents()
    await events.subscribe(nc)
    try:
        async with httpx.AsyncClient(
            base_url=stack.base_url, headers=stack.headers, timeout=60
        ) as api:
            return await measure(WorkersBench(stack, api, events, redis), options)
    finally:
        await nc.drain()
        await redis.aclose()


async def measure(bench: WorkersBench, options: argparse.Namespace) -> dict[str, Any]:
    clones = [await register(bench, file_count) for file_count in FILE_COUNTS]
    folder = bench.stack.data_dir.parent
    latency = {
        clone.name: await measure_repository(bench, clone, options.runs, folder) for clone in clones
    }
    # The profile runs before the crowd, because removing the crowd's 100 worktrees leaves the
    # disk busy for a while. On ext4 that once made the next worktrees about three times slower.
    profile = await profile_spawns(bench, [clone.name for clone in clones], folder)
    crowd = await run_crowd(bench, clones[0].name, folder / "exits")
    return {"spawnLatency": latency, "profile": profile, "crowd": crowd}


def machine(folder: Path) -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    filesystem = subprocess.run(
        ["df", "--output=fstype", folder], capture_output=True, text=True, check=True
    )
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": cpu,
        "memoryGiB": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "git": run_git(folder, "--version").strip(),
        "benchFolder": f"{folder} ({filesystem.stdout.split()[-1]})",
        # Other work on the machine at the start; the load of the run itself adds to it later.
        "loadAverage1mAtStart": os.getloadavg()[0],
    }


def latency_lines(latency: dict[str, Any]) -> Iterator[str]:
    for repo, figures in latency.items():
        yield f"{repo}: git worktree add   {describe(figures['gitWorktreeAddMs'], 'ms')}"
        yield f"{repo}: spawn to working    {describe(figures['spawnToWorkingMs'], 'ms')}"
        yield f"{repo}: spawn to response   {describe(figures['spawnToResponseMs'], 'ms')}"
        yield f"{repo}: spawn to created    {describe(figures['spawnToCreatedEventMs'], 'ms')}"
        verdict = "met" if figures["targetMet"] else "NOT met"
        yield (
            f"{repo}: ratio of medians {figures['ratioOfMedians']:.2f}; target "
            f"{TARGET_FACTOR} x git + {TARGET_EXTRA_MS:.0f} ms = {figures['targetMs']:.1f} ms "
            f"{verdict}; pairs within target {figures['pairsWithinTarget']}/"
            f"{figures['spawnToWorkingMs']['count']:.0f}"
        )


def agent_environment(folder: Path) -> dict[str, str]:
    """Settings for the stack: the ``command`` agent runs TICKING_AGENT; JSON logs, as the
    services log by default, so the profile can read them."""
    script = folder / "ticking_agent.py"
    script.write_text(TICKING_AGENT)
    (folder / "exits").mkdir()
    return {
        "COCOPILOT_AGENT_COMMAND": json.dumps([sys.executable, str(script), "{task}"]),
        "BENCH_EXITS_DIR": str(folder / "exits"),
        "COCOPILOT_LOG_FORMAT": "json",
    }


def keep_logs(stack: Stack, destination: Path) -> None:
    """Copy the services' logs, the agents' logs and the agents' exit times."""
    shutil.copytree(stack.logs_dir, destination, dirs_exist_ok=True)
    shutil.copytree(stack.data_dir / "logs", destination / "agents", dirs_exist_ok=True)
    shutil.copytree(stack.env["BENCH_EXITS_DIR"], destination / "exits", dirs_exist_ok=True)


def parse_options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="counted pairs per repository")
    parser.add_argument(
        "--temp-root",
        type=Path,
        help="folder for the repositories, the data folder and the servers' files "
        "(default: the system's temporary folder)",
    )
    parser.add_argument(
        "--keep-logs", type=Path, help="folder to copy the services' logs to, also on failure"
    )
    return parser.parse_args()


def run_in_temporary_folder(options: argparse.Namespace) -> dict[str, Any]:
    """Start the servers and the stack in a new folder under ``--temp-root`` and measure."""
    with (
        tempfile.TemporaryDirectory(dir=options.temp_root) as name,
        start_servers(Path(name)) as servers,
    ):
        folder = Path(name)
        bench_machine = machine(folder)
        with running_stack(servers, folder, agent_environment(folder)) as stack:
            try:
                results: dict[str, Any] = asyncio.run(
                    run(stack, servers.nats_url, servers.redis_url, options)
                )
            except Exception:
                print(stack.logs(), file=sys.stderr)
                raise
            finally:
                if options.keep_logs:
                    keep_logs(stack, options.keep_logs)
    return results | {"machine": bench_machine}


def main() -> None:
    options = parse_options()
    os.environ.setdefault("COCOPILOT_TEST_SERVERS", "binaries")
    started = time.perf_counter()
    results = run_in_temporary_folder(options)
    results["elapsedS"] = time.perf_counter() - started

    print(json.dumps(results, indent=2))
    lines = [
        *latency_lines(results["spawnLatency"]),
        *profile_lines(results["profile"]),
        *crowd_lines(results["crowd"]),
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
