"""100 workers at once on one repository, with the workers service's CPU and memory sampled.

All spawns are sent together (one POST each, all in flight at once). Each agent prints a line a
second for CROWD_AGENT_S seconds, then writes the wall-clock time of its exit, so the time from
an agent's exit to its ``worker.completed`` event can be measured per worker.
"""

import asyncio
import contextlib
import json
import math
import statistics
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from bench.workers_client import (
    DeleteFailed,
    WorkerFailed,
    WorkersBench,
    describe,
    perf_from_wall,
    spread,
)

CROWD_SIZE = 100
CROWD_AGENT_S = 20
SAMPLE_INTERVAL_S = 0.5
WORKING_TIMEOUT_S = 60.0
# Past the agents' own run time, for the service to notice their exits.
COMPLETED_TIMEOUT_S = 60.0
MIB = 2**20


class ProcessSampler:
    """CPU (percent of one core, so up to 100 x cores) and RSS of one process, sampled every
    SAMPLE_INTERVAL_S; psutil measures each CPU sample over the time since the one before."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.cpu_percent: list[float] = []
        self.rss_bytes: list[int] = []

    async def run(self) -> None:
        self.process.cpu_percent(None)
        while True:
            await asyncio.sleep(SAMPLE_INTERVAL_S)
            self.cpu_percent.append(self.process.cpu_percent(None))
            self.rss_bytes.append(self.process.memory_info().rss)

    def summary(self) -> dict[str, float]:
        return {
            "samples": len(self.cpu_percent),
            "cpuPercentMedian": statistics.median(self.cpu_percent),
            "cpuPercentPeak": max(self.cpu_percent),
            "rssMiBMedian": statistics.median(self.rss_bytes) / MIB,
            "rssMiBPeak": max(self.rss_bytes) / MIB,
        }


@dataclass
class CrowdSpawns:
    accepted: list[str]
    errors: dict[str, str]
    started: float
    responded: float


async def spawn_all(bench: WorkersBench, repo: str, names: list[str]) -> CrowdSpawns:
    """Send every spawn at once; return which were accepted (201) and the others' errors."""
    started = time.perf_counter()
    responses = await asyncio.gather(
        *(bench.spawn(name, repo, CROWD_AGENT_S) for name in names), return_exceptions=True
    )
    spawns = CrowdSpawns([], {}, started, time.perf_counter())
    for name, response in zip(names, responses, strict=True):
        if isinstance(response, BaseException):
            spawns.errors[name] = repr(response)
        elif response.status_code != 201:
            spawns.errors[name] = f"{response.status_code} {response.text}"
        else:
            spawns.accepted.append(name)
    return spawns


async def wait_for_step(
    bench: WorkersBench, names: list[str], step: str, deadline: float
) -> tuple[dict[str, float], dict[str, str]]:
    """Wait until ``deadline`` (time.monotonic) for each worker to reach ``step``; return the
    arrival times, and the reasons of those that failed or timed out instead."""
    arrivals, problems = {}, {}
    for name in names:
        try:
            timeout_s = max(deadline - time.monotonic(), 0.1)
            arrivals[name] = await bench.events.wait(name, step, timeout_s)
        except WorkerFailed as exc:
            problems[name] = exc.error
        except AssertionError:  # raised by wait_until on its timeout
            problems[name] = f"no {step} event in time"
    return arrivals, problems


async def wait_until_working(
    bench: WorkersBench, repo: str, names: list[str], spawns: CrowdSpawns
) -> tuple[dict[str, float], dict[str, str], list[str]]:
    """Wait for the accepted workers to be working, then for the workers that the service
    created although their spawn returned an error. Return arrivals, problems and late names."""
    deadline = time.monotonic() + WORKING_TIMEOUT_S
    working, problems = await wait_for_step(bench, spawns.accepted, "working", deadline)
    late = sorted(set(names) & set(await bench.list_names(repo)) - set(spawns.accepted))
    late_working, late_problems = await wait_for_step(bench, late, "working", deadline)
    return working | late_working, problems | late_problems, late


def agent_exits(exits_dir: Path, names: list[str]) -> list[float]:
    """Return each agent's exit time on this process's perf_counter scale."""
    return [perf_from_wall(float((exits_dir / name).read_text())) for name in names]


async def run_crowd(bench: WorkersBench, repo: str, exits_dir: Path) -> dict[str, Any]:
    await bench.set_config({"maxWorkersPerRepo": CROWD_SIZE})
    names = [f"Crowd{number:03d}" for number in range(CROWD_SIZE)]
    sampler = ProcessSampler(bench.stack.processes["workers"].pid)
    workers_log = bench.stack.logs_dir / "workers.log"
    log_offset = workers_log.stat().st_size
    before = {"rss": sampler.process.memory_info().rss, "redis": await bench.redis_used_memory()}
    sampling = asyncio.create_task(sampler.run())
    try:
        spawns = await spawn_all(bench, repo, names)
        working, problems, late = await wait_until_working(bench, repo, names, spawns)
        redis_working = await bench.redis_used_memory()
        deadline = time.monotonic() + CROWD_AGENT_S + COMPLETED_TIMEOUT_S
        completed, not_completed = await wait_for_step(bench, list(working), "completed", deadline)
    finally:
        sampling.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampling
    redis_after = await bench.redis_used_memory()
    exits = agent_exits(exits_dir, list(completed))

    delete_errors = await delete_all(bench, repo, names)
    return {
        "workers": CROWD_SIZE,
        "agentSeconds": CROWD_AGENT_S,
        "repository": repo,
        "spawnsAccepted": len(spawns.accepted),
        "spawnErrors": len(spawns.errors),
        "spawnErrorExamples": sorted(set(spawns.errors.values()))[:3],
        "createdDespiteSpawnError": len(late),
        "notWorking": problems,
        "notCompleted": not_completed,
        "allResponsesS": spawns.responded - spawns.started,
        "workingCount": len(working),
        "allWorkingS": max(working.values(), default=math.nan) - spawns.started,
        "workingAfterPostS": spread([at - spawns.started for at in working.values()]),
        "completedCount": len(completed),
        "exitToCompletedMs": spread(
            [(done - exit) * 1000 for done, exit in zip(completed.values(), exits, strict=True)]
        ),
        "lastExitToAllCompletedS": max(completed.values(), default=math.nan)
        - max(exits, default=0),
        "firstExitToAllCompletedS": max(completed.values(), default=math.nan)
        - min(exits, default=0),
        "deleteErrors": delete_errors,
        "workersLogProblems": log_problems(workers_log, log_offset),
        "workersService": sampler.summary() | {"rssMiBBefore": before["rss"] / MIB},
        "redisUsedMemoryMiB": {
            "before": before["redis"] / MIB,
            "allWorking": redis_working / MIB,
            "afterCompleted": redis_after / MIB,
        },
    }


async def delete_all(bench: WorkersBench, repo: str, names: list[str]) -> list[str]:
    """Delete every crowd worker one by one; return the errors of those that failed."""
    errors = []
    for name in sorted(set(names) & set(await bench.list_names(repo))):
        try:
            await bench.delete(name)
        except DeleteFailed as exc:
            errors.append(str(exc))
    return errors


def log_problems(log_path: Path, offset: int) -> dict[str, int]:
    """Count the WARNING and ERROR lines of a JSON log past ``offset`` (bytes), by message and
    error."""
    counts: Counter[str] = Counter()
    with log_path.open("rb") as log_file:
        log_file.seek(offset)
        for line in log_file.read().decode(errors="replace").splitlines():
            entry = json.loads(line) if line.startswith("{") else {}
            if entry.get("level") in ("WARNING", "ERROR"):
                error = (
                    str(entry.get("error", "")).splitlines()[0][:100] if "error" in entry else ""
                )
                counts[f"{entry['level']} {entry['message']}: {error}"] += 1
    return dict(counts)


def crowd_lines(crowd: dict[str, Any]) -> Iterator[str]:
    service, redis = crowd["workersService"], crowd["redisUsedMemoryMiB"]
    yield (
        f"crowd: {crowd['spawnsAccepted']}/{crowd['workers']} spawns accepted (201), all responses "
        f"in {crowd['allResponsesS']:.2f} s; {crowd['spawnErrors']} errors "
        f"{crowd['spawnErrorExamples']}, of which "
        f"{crowd['createdDespiteSpawnError']} created anyway"
    )
    yield (
        f"crowd: {crowd['workingCount']} working, the last {crowd['allWorkingS']:.2f} s after the "
        f"first POST; {crowd['completedCount']} completed; not working: {crowd['notWorking']}; "
        f"not completed: {crowd['notCompleted']}"
    )
    yield f"crowd: working after POST {describe(crowd['workingAfterPostS'], 's')}"
    yield f"crowd: agent exit to completed {describe(crowd['exitToCompletedMs'], 'ms')}"
    yield (
        f"crowd: all completed {crowd['lastExitToAllCompletedS']:.2f} s after the last agent "
        f"exit, {crowd['firstExitToAllCompletedS']:.2f} s after the first"
    )
    yield (
        f"crowd: workers service CPU median {service['cpuPercentMedian']:.0f} %, peak "
        f"{service['cpuPercentPeak']:.0f} % of one core; RSS before {service['rssMiBBefore']:.0f} "
        f"MiB, median {service['rssMiBMedian']:.0f} MiB, peak {service['rssMiBPeak']:.0f} MiB "
        f"({service['samples']:.0f} samples)"
    )
    yield f"crowd: workers service warnings and errors: {crowd['workersLogProblems']}"
    yield f"crowd: failed deletes: {crowd['deleteErrors']}"
    yield (
        f"crowd: Redis used_memory {redis['before']:.2f} MiB before, {redis['allWorking']:.2f} "
        f"MiB with all working, {redis['afterCompleted']:.2f} MiB after all completed"
    )
