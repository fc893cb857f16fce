"""Benchmark of the metrics service: read latency by history size, and ingest rate.

Runs two stacks side by side, each with its own Redis, NATS, metrics service and api process:
one contains 1,000 past events, the other 100,000. Each stack's events are published while its
metrics service is stopped; the service then applies the backlog, which gives the ingest rate.
Then GET /api/v1/metrics, GET /api/v1/events and, as a baseline that reads no metrics,
GET /healthz are timed on both stacks in alternation, request by request, so both see the same
load from the rest of the machine. Every request goes over HTTP on 127.0.0.1, one at a time.

Run: ``.venv/bin/python -m bench.metrics_bench`` (``--rounds`` and ``--requests`` set the sample
sizes).
"""

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import nats
from nats.aio.client import Client as NATS
from redis.asyncio import Redis

from cocopilot import bus, keys
from cocopilot.events import Event
from cocopilot.timeutil import utc_now
from tests.metrics_events import ci_result, completed, created, pr_created, pr_merged
from tests.servers import Servers, free_port, start_servers, wait_for_port

ROOT = Path(__file__).resolve().parents[1]
SMALL_HISTORY = 1_000
LARGE_HISTORY = 100_000
PUBLISH_CONCURRENCY = 200
BACKLOG_TIMEOUT_S = 600.0
REPOSITORIES = [f"repo-{n}" for n in range(10)]
MODELS = ["claude-sonnet-4-5", "gpt-5", "gemini-2.5-pro", "o3", "qwen3-coder"]
ROUTES = {
    "metrics": "/api/v1/metrics",
    "metrics?repoName": "/api/v1/metrics?repoName=repo-3",
    "events": "/api/v1/events?limit=50",
    "healthz (baseline)": "/healthz",
}


def synthetic_events(count: int, seed: int) -> list[Event]:
    """Return ``count`` events of whole worker lives (five events each) over the last 30 days."""
    chooser = random.Random(seed)
    now = utc_now()
    events: list[Event] = []
    for index in range(count // 5):
        name = f"W{seed}x{index}"
        repo = chooser.choice(REPOSITORIES)
        # A third of the workers finished in the last 24 hours, the rest over 30 days.
        window_s = 24 * 3600 if index % 3 == 0 else 30 * 24 * 3600
        opened = now - timedelta(seconds=chooser.uniform(3600, window_s))
        merged = opened + timedelta(minutes=chooser.uniform(5, 600))
        events += [
            created(name, opened, repo, model=chooser.choice(MODELS)),
            pr_created(name, index, opened, repo),
            completed(name, opened + timedelta(minutes=3), repo),
            ci_result(chooser.random() < 0.8, name, index, merged, repo),
            pr_merged(name, index, opened, min(merged, now), repo),
        ]
    return events


async def publish(nc: NATS, events: list[Event]) -> float:
    """Publish ``events`` to the stream; return the seconds it took."""
    started = time.perf_counter()
    for start in range(0, len(events), PUBLISH_CONCURRENCY):
        chunk = events[start : start + PUBLISH_CONCURRENCY]
        await asyncio.gather(*(bus.publish_event(nc, each) for each in chunk))
    return time.perf_counter() - started


async def events_applied(redis: Redis) -> int:
    return sum(int(count) for count in await redis.hvals(keys.METRICS_EVENT_COUNTS))


async def time_backlog(redis: Redis, expected: int) -> dict[str, float]:
    """Wait until ``expected`` events are applied; return the rate from the first applied one."""
    deadline = time.monotonic() + BACKLOG_TIMEOUT_S
    first_seen: tuple[float, int] | None = None
    before = await events_applied(redis)
    while time.monotonic() < deadline:
        applied = await events_applied(redis)
        if first_seen is None and applied > before:
            first_seen = (time.perf_counter(), applied)
        if applied >= expected and first_seen is not None:
            elapsed_s = time.perf_counter() - first_seen[0]
            counted = applied - first_seen[1]
            return {"events": counted, "seconds": elapsed_s, "eventsPerSecond": counted / elapsed_s}
        await asyncio.sleep(0.01)
    raise TimeoutError(f"backlog of {expected} events not applied in {BACKLOG_TIMEOUT_S} s")


def percentile_ms(samples_s: list[float], percent: int) -> float:
    return statistics.quantiles(samples_s, n=100, method="inclusive")[percent - 1] * 1000


def timed_get(client: httpx.Client, path: str) -> float:
    started = time.perf_counter()
    client.get(path).raise_for_status()
    return time.perf_counter() - started


def measure_route(
    clients: dict[str, httpx.Client], path: str, rounds: int, requests: int
) -> dict[str, dict[str, Any]]:
    """Time ``path`` on every stack in alternation; return p50 and p99 medians and ranges."""
    for client in clients.values():
        for _ in range(20):  # warm-up: connections and the first command subscriptions
            timed_get(client, path)
    percentiles: dict[str, dict[str, list[float]]] = {
        label: {"p50": [], "p99": []} for label in clients
    }
    order = list(clients)
    for _ in range(rounds):
        durations_s: dict[str, list[float]] = {label: [] for label in clients}
        for request in range(requests):
            for label in order if request % 2 == 0 else reversed(order):
                durations_s[label].append(timed_get(clients[label], path))
        for label, samples in durations_s.items():
            percentiles[label]["p50"].append(percentile_ms(samples, 50))
            percentiles[label]["p99"].append(percentile_ms(samples, 99))
    return {label: summary(values) for label, values in percentiles.items()}


def summary(percentiles: dict[str, list[float]]) -> dict[str, Any]:
    p50s, p99s = percentiles["p50"], percentiles["p99"]
    return {
        "p50MedianMs": statistics.median(p50s),
        "p50RangeMs": [min(p50s), max(p50s)],
        "p99MedianMs": statistics.median(p99s),
        "p99RangeMs": [min(p99s), max(p99s)],
    }


class Processes:
    """The api and the metrics service as processes, as compose runs them."""

    def __init__(self, servers: Servers, logs_dir: Path) -> None:
        self.port = free_port()
        self.env = {
            **os.environ,
            "COCOPILOT_REDIS_URL": servers.redis_url,
            "COCOPILOT_NATS_URL": servers.nats_url,
            "COCOPILOT_PORT": str(self.port),
            "COCOPILOT_HOST": "127.0.0.1",
            "COCOPILOT_INSTANCE_ID": "bench",
            "COCOPILOT_HEALTH_DIR": str(logs_dir / "health"),
            "COCOPILOT_LOG_LEVEL": "WARNING",
        }
        self.logs_dir = logs_dir
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, service: str) -> None:
        with (self.logs_dir / f"{service}.log").open("ab") as log_file:
            self.running[service] = subprocess.Popen(
                [sys.executable, "-m", f"services.{service}.main"],
                cwd=ROOT,
                env=self.env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )

    def stop(self, service: str) -> None:
        process = self.running.pop(service)
        process.terminate()
        process.wait(30)

    def stop_all(self) -> None:
        for service in list(self.running):
            self.stop(service)


def measure_all(base_urls: dict[str, str], rounds: int, requests: int) -> dict[str, Any]:
    clients = {label: httpx.Client(base_url=url, timeout=10) for label, url in base_urls.items()}
    try:
        return {
            name: measure_route(clients, path, rounds, requests) for name, path in ROUTES.items()
        }
    finally:
        for client in clients.values():
            client.close()


async def fill(servers: Servers, processes: Processes, count: int, seed: int) -> dict[str, Any]:
    """Publish ``count`` events with the metrics service stopped, then time their ingest."""
    nc = await nats.connect(servers.nats_url)
    redis: Redis = Redis.from_url(servers.redis_url, decode_responses=True)
    try:
        await bus.ensure_events_stream(nc)
        publish_s = await publish(nc, synthetic_events(count, seed))
        processes.start("metrics")
        return {"publishSeconds": publish_s, "ingest": await time_backlog(redis, count)}
    finally:
        await nc.drain()
        await redis.aclose()


async def run(stacks: dict[str, Servers], folder: Path, rounds: int, requests: int) -> Any:
    running = {label: Processes(servers, folder / label) for label, servers in stacks.items()}
    results: dict[str, Any] = {}
    try:
        for seed, (label, processes) in enumerate(running.items()):
            processes.start("api")
            wait_for_port(processes.port)
            results[label] = await fill(stacks[label], processes, int(label), seed)
        base_urls = {label: f"http://127.0.0.1:{p.port}" for label, p in running.items()}
        routes = await asyncio.to_thread(measure_all, base_urls, rounds, requests)
    finally:
        for processes in running.values():
            processes.stop_all()
    return {"histories": results, "routes": routes}


def machine() -> dict[str, Any]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {"nproc": os.cpu_count(), "cpu": model, "python": platform.python_version()}


def report_lines(results: dict[str, Any]) -> Iterator[str]:
    for label, history in results["histories"].items():
        yield f"history {label}: ingest {history['ingest']['eventsPerSecond']:.0f} events/s"
    for name, by_history in results["routes"].items():
        for label, figures in by_history.items():
            yield (
                f"{name:20} {label:>7}: p50 {figures['p50MedianMs']:.2f} ms "
                f"({figures['p50RangeMs'][0]:.2f}-{figures['p50RangeMs'][1]:.2f}), "
                f"p99 {figures['p99MedianMs']:.2f} ms "
                f"({figures['p99RangeMs'][0]:.2f}-{figures['p99RangeMs'][1]:.2f})"
            )
        small, large = by_history[str(SMALL_HISTORY)], by_history[str(LARGE_HISTORY)]
        p50_ratio = large["p50MedianMs"] / small["p50MedianMs"]
        p99_ratio = large["p99MedianMs"] / small["p99MedianMs"]
        yield f"{name:20} ratio 100,000 / 1,000: p50 {p50_ratio:.2f}, p99 {p99_ratio:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds per route and history")
    parser.add_argument("--requests", type=int, default=500, help="requests per round")
    options = parser.parse_args()
    os.environ.setdefault("COCOPILOT_TEST_SERVERS", "binaries")
    with tempfile.TemporaryDirectory() as name, contextlib.ExitStack() as servers:
        folder = Path(name)
        stacks = {}
        for history in (SMALL_HISTORY, LARGE_HISTORY):
            (folder / str(history)).mkdir()
            stacks[str(history)] = servers.enter_context(start_servers(folder / str(history)))
        results = asyncio.run(run(stacks, folder, options.rounds, options.requests))
    print(json.dumps({"machine": machine(), "results": results}, indent=2))
    for line in report_lines(results):
        print(line)


if __name__ == "__main__":
    main()
