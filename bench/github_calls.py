"""Benchmark of the github forge: GitHub API calls in one hour with 50 open pull requests.

    .venv/bin/python -m bench.github_calls [--pulls 50] [--seeds 3]

It starts Redis (valkey, for the forge's configuration) from tests/servers.py and the fake
GitHub server (tests/fake_github.py) on 127.0.0.1, and sends traffic nowhere else. Time is
simulated: the forge gets a clock whose sleeps end when the benchmark moves the clock forward,
which it does once every task is asleep. One hour takes a minute or two of real time.

The hour, the same for the forge and the baseline, with settings at their defaults (poll
interval 60 s, checks grace 60 s, ciTimeout 30 min):

- At 0 s, ``--pulls`` pull requests are open, each with a queued check run ``build`` and a
  pending commit status ``ci/lint`` on its head.
- Each ``build`` starts between 30 s and 3 min and completes between 5 and 25 min, and one in
  ten fails. Each ``ci/lint`` succeeds between 2 and 20 min.
- People merge a fifth of the pull requests and close one in twenty-five, at random times
  between 10 and 60 min.
- The forge does what the workers service does: one ``run_checks`` per pull request from 0 s,
  and the merge queue's pass once a second, calling ``current_stage`` for every pull request
  still open.

Baseline: a poller without conditional requests and without the list call, on the same poll
interval. Every 60 s it reads each open pull request with GET /pulls/{number}, and the check
runs and combined status of each one whose checks are not final yet.

Each seed gives the fake a different hour; the report gives the median and the spread.
"""

import argparse
import asyncio
import heapq
import itertools
import platform
import random
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr
from redis.asyncio import Redis

from cocopilot.models import PrStage, PullRequest, Repository
from cocopilot.settings import Settings
from cocopilot.timeutil import now_iso
from services.workers.forges.github import GitHubForge
from tests.fake_github import FakeGitHub, FakePull, make_origin, serving
from tests.gitrepos import run_git
from tests.servers import start_servers

TOKEN = "ghp_benchmarkTokenForTheFakeServerOnly"  # noqa: S105 (the fake accepts only this)
SLUG = "octo/app"
HOUR_S = 3600.0
QUEUE_PASS_S = 1.0  # the merge queue's pass, QUEUE_INTERVAL_S in services/workers/pulls.py
TARGET_CALLS_PER_HOUR = 300


class VirtualClock:
    """Simulated time for the forge: ``sleep`` waits until ``run_until`` reaches its end."""

    def __init__(self) -> None:
        self.time_s = time.time()
        self.start_s = self.time_s
        self.sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self.order = itertools.count()
        self.alive = 0
        self.sleeping = 0
        self.tasks: list[asyncio.Task[Any]] = []
        self.failures: list[BaseException] = []

    def now(self) -> float:
        return self.time_s

    @property
    def elapsed_s(self) -> float:
        return self.time_s - self.start_s

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self.sleepers, (self.time_s + max(seconds, 0.0), next(self.order), future))
        self.sleeping += 1
        await future

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> "asyncio.Task[Any]":
        """Run a task whose sleeps the clock waits for before it moves on."""
        self.alive += 1
        task = asyncio.create_task(coroutine)
        task.add_done_callback(self._ended)
        self.tasks.append(task)
        return task

    def _ended(self, task: "asyncio.Task[Any]") -> None:
        self.alive -= 1
        if not task.cancelled() and task.exception() is not None:
            self.failures.append(task.exception())  # type: ignore[arg-type]

    async def stop(self) -> None:
        """Cancel the tasks still asleep at the end of the simulated time."""
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def run_until(self, end_s: float) -> None:
        """Move time forward, sleeper by sleeper, until ``end_s`` seconds have passed."""
        while True:
            # A task that is not asleep is sending a request or running git. Nothing signals
            # when it is done, so this loop yields and looks again: at once for a while (most
            # steps take no I/O), then every half millisecond.
            for turn in itertools.count():
                if self.sleeping >= self.alive:
                    break
                await asyncio.sleep(0 if turn < 100 else 0.0005)
            if self.failures:
                raise RuntimeError("a benchmark task failed") from self.failures[0]
            if not self.sleepers or self.sleepers[0][0] - self.start_s > end_s:
                return
            self.time_s = self.sleepers[0][0]
            while self.sleepers and self.sleepers[0][0] <= self.time_s:
                _, _, future = heapq.heappop(self.sleepers)
                self.sleeping -= 1
                future.set_result(None)


@dataclass
class Hour:
    """The changes made on the fake during the hour, as (seconds, action) in time order."""

    events: list[tuple[float, Callable[[], None]]] = field(default_factory=list)


def plan_hour(fake: FakeGitHub, heads: dict[int, str], seed: int) -> Hour:
    rng = random.Random(seed)
    hour = Hour()
    for head in heads.values():
        fake.set_check_run(head, "build", "queued", None)
        fake.set_status(head, "ci/lint", "pending")
        conclusion = "failure" if rng.random() < 0.1 else "success"
        started, done = rng.uniform(30, 180), rng.uniform(300, 1500)
        lint = rng.uniform(120, 1200)
        hour.events += [
            (started, partial(fake.set_check_run, head, "build", "in_progress", None)),
            (done, partial(fake.set_check_run, head, "build", "completed", conclusion)),
            (lint, partial(fake.set_status, head, "ci/lint", "success")),
        ]
    people = rng.sample(sorted(heads), len(heads) // 5 + len(heads) // 25)
    for index, number in enumerate(people):
        act = fake.merge_by_person if index < len(heads) // 5 else fake.close_by_person
        hour.events.append((rng.uniform(600, 3600), partial(act, SLUG, number)))
    hour.events.sort(key=lambda event: event[0])
    return hour


async def play(clock: VirtualClock, hour: Hour) -> None:
    for at_s, action in hour.events:
        await clock.sleep(at_s - clock.elapsed_s)
        action()


# Setup


def open_pulls(fake: FakeGitHub, origin: Path, clone: Path, count: int) -> dict[int, str]:
    """Push ``count`` branches with a commit each and open their pull requests on the fake;
    return the head commit of each pull request number."""
    heads: dict[int, str] = {}
    for number in range(1, count + 1):
        branch = f"work/P{number}"
        run_git(clone, "checkout", "--quiet", "-B", branch, "main")
        (clone / f"P{number}.md").write_text(f"note {number}\n")
        run_git(clone, "add", "--all")
        run_git(clone, "commit", "--quiet", "-m", f"Note {number}")
        heads[number] = run_git(clone, "rev-parse", "HEAD").strip()
        fake.pulls[SLUG][number] = FakePull(number, f"Note {number}", "", branch, "main")
    run_git(clone, "checkout", "--quiet", "--detach")
    run_git(clone, "push", "--quiet", "origin", "refs/heads/work/*:refs/heads/work/*")
    return heads


def pull_record(number: int, head: str) -> PullRequest:
    now = now_iso()
    return PullRequest(
        number=number,
        repo_name="app",
        worker=f"P{number}",
        title=f"Note {number}",
        url=f"https://github.com/{SLUG}/pull/{number}",
        branch=f"work/P{number}",
        base_branch="main",
        head_commit=head,
        stage=PrStage.CI_RUNNING,
        created_at=now,
        updated_at=now,
    )


# The two pollers


async def forge_hour(
    redis: Redis,
    fake: FakeGitHub,
    clock: VirtualClock,
    repository: Repository,
    heads: dict[int, str],
) -> None:
    settings = Settings().model_copy(
        update={"github_api_url": fake.base_url, "github_token": SecretStr(TOKEN)}
    )
    forge = GitHubForge(redis, settings, clock)
    pulls = [pull_record(number, head) for number, head in heads.items()]
    for pr in pulls:
        clock.spawn(forge.run_checks(repository, pr))
    clock.spawn(merge_queue_passes(clock, forge, repository, pulls))
    await clock.run_until(HOUR_S)
    await forge.api.close()


async def merge_queue_passes(
    clock: VirtualClock, forge: GitHubForge, repository: Repository, pulls: list[PullRequest]
) -> None:
    open_pulls = list(pulls)
    while clock.elapsed_s < HOUR_S:
        open_pulls = [pr for pr in open_pulls if await forge.current_stage(repository, pr) is None]
        await clock.sleep(QUEUE_PASS_S)


async def baseline_hour(fake: FakeGitHub, clock: VirtualClock, heads: dict[int, str]) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=fake.base_url, headers=headers) as client:
        clock.spawn(naive_poller(client, clock, heads))
        await clock.run_until(HOUR_S)


async def naive_poller(
    client: httpx.AsyncClient, clock: VirtualClock, heads: dict[int, str]
) -> None:
    open_numbers, pending = set(heads), set(heads)
    while clock.elapsed_s < HOUR_S:
        for number in sorted(open_numbers):
            pull = (await client.get(f"/repos/{SLUG}/pulls/{number}")).json()
            if pull["state"] != "open":
                open_numbers.discard(number)
        for number in sorted(pending):
            if await naive_checks_final(client, heads[number]):
                pending.discard(number)
        await clock.sleep(Settings().github_poll_interval_s)


async def naive_checks_final(client: httpx.AsyncClient, head: str) -> bool:
    runs = (await client.get(f"/repos/{SLUG}/commits/{head}/check-runs")).json()
    status = (await client.get(f"/repos/{SLUG}/commits/{head}/status")).json()
    runs_done = all(run["status"] == "completed" for run in runs["check_runs"])
    return runs_done and status["state"] != "pending"


# Runs


@dataclass(frozen=True)
class Count:
    counted: int  # responses other than 304, which count against the rate limit
    total: int
    wall_s: float


@dataclass(frozen=True)
class Setup:
    fake: FakeGitHub
    repository: Repository
    heads: dict[int, str]


def prepare(folder: Path, count: int) -> Setup:
    """Make the origin, the forge's clone and ``count`` open pull requests on a new fake."""
    origin = make_origin(folder / "origin.git")
    clone = folder / "clone"
    subprocess.run(["git", "clone", "--quiet", str(origin), str(clone)], check=True)
    fake = FakeGitHub(TOKEN, {SLUG: origin}, rate_limit=10**9)
    heads = open_pulls(fake, origin, clone, count)
    repository = Repository(
        name="app",
        url=str(origin),
        path=str(clone),
        default_branch="main",
        forge="github",
        github_repository=SLUG,
        created_at=now_iso(),
    )
    return Setup(fake, repository, heads)


async def measure(redis: Redis, folder: Path, seed: int, count: int, poller: str) -> Count:
    setup = await asyncio.to_thread(prepare, folder, count)
    with serving(setup.fake):
        clock = VirtualClock()
        clock.spawn(play(clock, plan_hour(setup.fake, setup.heads, seed)))
        started = time.perf_counter()
        try:
            if poller == "forge":
                await forge_hour(redis, setup.fake, clock, setup.repository, setup.heads)
            else:
                await baseline_hour(setup.fake, clock, setup.heads)
        finally:
            await clock.stop()
        wall_s = time.perf_counter() - started
    total = len(setup.fake.calls)
    return Count(total - setup.fake.count(status=304), total, wall_s)


async def main_async(count: int, seeds: int) -> None:
    results: dict[str, list[Count]] = {"forge": [], "baseline": []}
    with tempfile.TemporaryDirectory() as tmp, start_servers(Path(tmp)) as servers:
        redis: Redis = Redis.from_url(servers.redis_url, decode_responses=True)
        for seed in range(1, seeds + 1):
            for poller, counts in results.items():
                folder = Path(tmp) / f"{poller}-{seed}"
                counts.append(await measure(redis, folder, seed, count, poller))
                print(f"seed {seed} {poller}: {counts[-1]}", flush=True)
        await redis.aclose()
    report(results, count, seeds)


def describe(values: list[float]) -> str:
    median = statistics.median(values)
    return f"median {median:,.1f} (min {min(values):,.1f}, max {max(values):,.1f})"


def machine() -> str:
    cores = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    lines = Path("/proc/cpuinfo").read_text().splitlines()
    models = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return f"{cores} cores, {models[0] if models else platform.processor()}"


def report(results: dict[str, list[Count]], count: int, seeds: int) -> None:
    print(f"\nmachine: {machine()}")
    print(f"{count} open pull requests, one simulated hour each, {seeds} seeds")
    for poller, counts in results.items():
        print(f"{poller}: counted calls (not 304) {describe([c.counted for c in counts])}")
        print(f"{poller}: all calls, 304 included {describe([c.total for c in counts])}")
        print(f"{poller}: real time for the hour {describe([c.wall_s for c in counts])} s")
    pairs = zip(results["forge"], results["baseline"], strict=True)
    print(f"baseline / forge, counted calls: {describe([b.counted / f.counted for f, b in pairs])}")
    worst = max(c.counted for c in results["forge"])
    verdict = "met" if worst < TARGET_CALLS_PER_HOUR else "missed"
    print(f"target, under {TARGET_CALLS_PER_HOUR} counted calls an hour: {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pulls", type=int, default=50, help="open pull requests")
    parser.add_argument("--seeds", type=int, default=3, help="simulated hours, each its own")
    arguments = parser.parse_args()
    asyncio.run(main_async(arguments.pulls, arguments.seeds))


if __name__ == "__main__":
    main()
