"""Benchmark of webhook delivery: publish-to-first-attempt latency and maximum delivery rate.

    .venv/bin/python -m bench.webhooks_bench [--rounds 3] [--seconds 10] [--burst 10000]

It starts its own Redis (valkey) and NATS binaries, the receiver (bench/webhooks_receiver.py)
and the webhooks service (``python -m services.webhooks.main``) as separate processes, all on
127.0.0.1, and sends traffic nowhere else.

- Latency: events published at 200 per second for ``--seconds``. For each event, the time from
  just before its publish to the arrival of its first attempt at the receiver (same clock).
  Baseline: plain httpx POSTs to the same receiver at the same rate, from send to arrival.
- Rate: ``--burst`` events published while the service is stopped; the service then starts,
  and the rate is (deliveries - 1) / (last arrival - first arrival). Measured with one replica
  and with two, at the default limit of 10 attempts in flight per webhook.
- Client baselines: ``--burst`` POSTs with 10 in flight from this process, through a plain
  httpx client and through the service's Sender (address check, pinned httpcore connection),
  with the CPU time that each costs this process per request.

Each measurement runs ``--rounds`` times; the report gives the median and the spread.
"""

import argparse
import asyncio
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx
import nats
from nats.aio.client import Client as NATS
from nats.js.errors import NotFoundError
from redis.asyncio import Redis

from cocopilot import keys, subjects
from cocopilot.bus import ensure_events_stream, publish_event
from cocopilot.events import Event, EventType
from cocopilot.models import Webhook
from cocopilot.timeutil import now_iso
from services.webhooks.addresses import AddressPolicy, system_resolver
from services.webhooks.sender import Sender
from services.webhooks.signing import generate_secret
from tests.servers import start_servers

ROOT = Path(__file__).resolve().parents[1]
LATENCY_RATE_PER_S = 200
ENDPOINT_CONCURRENCY = 10  # the service's default per-webhook limit


@contextmanager
def receiver_process(results_path: Path) -> Iterator[str]:
    """Run the receiver; yield its URL; on exit stop it so that it writes its results."""
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "webhooks_receiver.py"), str(results_path)],
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None
    port = int(process.stdout.readline())
    try:
        yield f"http://127.0.0.1:{port}/hook"
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)


def read_arrivals(results_path: Path) -> dict[int, int]:
    """Return the first arrival time (ns) of each event number, and the data sent with it."""
    first: dict[int, int] = {}
    for line in results_path.read_text().splitlines():
        record = json.loads(line)
        number = json.loads(record["body"])["data"]["number"]
        first.setdefault(number, record["arrivedNs"])
    return first


def service_environment(redis_url: str, nats_url: str, health_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "COCOPILOT_REDIS_URL": redis_url,
        "COCOPILOT_NATS_URL": nats_url,
        "COCOPILOT_HEALTH_DIR": str(health_dir),
        "COCOPILOT_LOG_LEVEL": "WARNING",
        "COCOPILOT_WEBHOOK_ALLOWED_NETWORKS": '["127.0.0.0/8"]',
    }


@contextmanager
def service_processes(environment: dict[str, str], replicas: int) -> Iterator[None]:
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "services.webhooks.main"],
            cwd=ROOT,
            env={**environment, "COCOPILOT_INSTANCE_ID": f"bench-{number}"},
        )
        for number in range(replicas)
    ]
    try:
        yield
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(30)


async def reset_state(redis: Redis, nc: NATS) -> None:
    await redis.flushdb()
    js = nc.jetstream()
    with suppress(NotFoundError):
        await js.delete_stream(subjects.EVENTS_STREAM)
    await ensure_events_stream(nc)


async def register(redis: Redis, url: str) -> None:
    """Write a registration straight to Redis, so events can be queued before the service runs."""
    webhook = Webhook(
        id=str(uuid.uuid4()),
        url=url,
        events=[EventType.WORKER_COMPLETED],
        created_at=now_iso(),
        secret=generate_secret(),
    )
    await redis.hset(keys.WEBHOOKS, webhook.id, webhook.to_json())


async def publish_at_rate(nc: NATS, count: int, rate_per_s: float) -> dict[int, int]:
    """Publish ``count`` events on a fixed schedule; return each one's publish time (ns)."""
    published: dict[int, int] = {}
    started = time.monotonic()
    for number in range(count):
        delay_s = started + number / rate_per_s - time.monotonic()
        if delay_s > 0:
            await asyncio.sleep(delay_s)
        published[number] = time.time_ns()
        await publish_event(nc, Event(type=EventType.WORKER_COMPLETED, data={"number": number}))
    return published


def percentiles_ms(samples_ns: list[int]) -> dict[str, float]:
    ordered = sorted(samples_ns)
    return {
        "p50": ordered[len(ordered) // 2] / 1e6,
        "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] / 1e6,
        "count": len(ordered),
    }


async def latency_round(context: dict[str, Any], seconds: float, tmp: Path) -> dict[str, float]:
    redis, nc = context["redis"], context["nc"]
    await reset_state(redis, nc)
    results = tmp / f"latency-{uuid.uuid4().hex}.jsonl"
    with receiver_process(results) as url:
        await register(redis, url)
        with service_processes(context["environment"], replicas=1):
            await asyncio.sleep(2)  # the service connects and creates its consumer
            published = await publish_at_rate(nc, int(seconds * LATENCY_RATE_PER_S), 200)
            await asyncio.sleep(2)
    arrivals = read_arrivals(results)
    missing = len(published) - len(arrivals)
    latencies = [arrivals[n] - published[n] for n in published if n in arrivals]
    return {**percentiles_ms(latencies), "missing": missing}


async def baseline_latency_round(seconds: float, tmp: Path) -> dict[str, float]:
    results = tmp / f"baseline-latency-{uuid.uuid4().hex}.jsonl"
    sent: dict[int, int] = {}
    with receiver_process(results) as url:
        async with httpx.AsyncClient() as client:
            started = time.monotonic()
            for number in range(int(seconds * LATENCY_RATE_PER_S)):
                delay_s = started + number / LATENCY_RATE_PER_S - time.monotonic()
                if delay_s > 0:
                    await asyncio.sleep(delay_s)
                sent[number] = time.time_ns()
                await client.post(url, json={"data": {"number": number}})
    arrivals = read_arrivals(results)
    return percentiles_ms([arrivals[n] - sent[n] for n in sent if n in arrivals])


async def rate_round(
    context: dict[str, Any], burst: int, replicas: int, tmp: Path
) -> dict[str, float]:
    redis, nc = context["redis"], context["nc"]
    await reset_state(redis, nc)
    results = tmp / f"rate-{uuid.uuid4().hex}.jsonl"
    with receiver_process(results) as url:
        await register(redis, url)
        await asyncio.gather(
            *(
                publish_event(nc, Event(type=EventType.WORKER_COMPLETED, data={"number": n}))
                for n in range(burst)
            )
        )
        with service_processes(context["environment"], replicas):
            await wait_until_delivered(redis, burst, timeout_s=burst / 100 + 30)
    arrivals = sorted(read_arrivals(results).values())
    span_s = (arrivals[-1] - arrivals[0]) / 1e9
    return {"rate_per_s": (len(arrivals) - 1) / span_s, "delivered": len(arrivals)}


async def wait_until_delivered(redis: Redis, count: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        succeeded = int(await redis.hget(keys.WEBHOOK_DELIVERY_OUTCOMES, "succeeded") or 0)
        if succeeded >= count:
            return
        await asyncio.sleep(0.2)
    print(f"warning: not all {count} deliveries succeeded within {timeout_s:.0f} s")


async def client_rate_round(kind: str, burst: int, tmp: Path) -> dict[str, float]:
    """POST ``burst`` requests with ENDPOINT_CONCURRENCY in flight, through a plain httpx client
    or through the service's Sender. Return the rate and this process's CPU per request."""
    results = tmp / f"client-{kind}-{uuid.uuid4().hex}.jsonl"
    with receiver_process(results) as url:
        post = await client_post(kind, url)
        numbers = list(range(burst))
        started = resource.getrusage(resource.RUSAGE_SELF)

        async def worker() -> None:
            while numbers:
                await post(numbers.pop())

        await asyncio.gather(*(worker() for _ in range(ENDPOINT_CONCURRENCY)))
        ended = resource.getrusage(resource.RUSAGE_SELF)
    cpu_s = (ended.ru_utime - started.ru_utime) + (ended.ru_stime - started.ru_stime)
    arrivals = sorted(read_arrivals(results).values())
    rate = (len(arrivals) - 1) / ((arrivals[-1] - arrivals[0]) / 1e9)
    return {"rate_per_s": rate, "cpu_us_per_request": cpu_s / burst * 1e6}


async def client_post(kind: str, url: str) -> Callable[[int], Awaitable[None]]:
    headers = {"content-type": "application/json", "webhook-id": "msg_bench"}
    if kind == "httpx":
        client = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=ENDPOINT_CONCURRENCY), trust_env=False
        )

        async def post_httpx(number: int) -> None:
            body = json.dumps({"data": {"number": number}}).encode()
            async with client.stream("POST", url, headers=headers, content=body) as response:
                await response.aread()

        return post_httpx
    sender = Sender(AddressPolicy.from_settings(["127.0.0.0/8"]), system_resolver, 15, 5)

    async def post_sender(number: int) -> None:
        body = json.dumps({"data": {"number": number}}).encode()
        await sender.send("bench", url, headers, body)

    return post_sender


def summary(values: list[float]) -> str:
    return f"median {statistics.median(values):.1f} (min {min(values):.1f}, max {max(values):.1f})"


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        with start_servers(tmp) as servers:
            redis = Redis.from_url(servers.redis_url, decode_responses=True)
            nc = await nats.connect(servers.nats_url)
            context = {
                "redis": redis,
                "nc": nc,
                "environment": service_environment(
                    servers.redis_url, servers.nats_url, tmp / "health"
                ),
            }
            report = await measure(context, args, tmp)
            await nc.drain()
            await redis.aclose()
    print(json.dumps(report, indent=2))


async def measure(context: dict[str, Any], args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    rounds = range(args.rounds)
    latency = [await latency_round(context, args.seconds, tmp) for _ in rounds]
    baseline_latency = [await baseline_latency_round(args.seconds, tmp) for _ in rounds]
    rate_1 = [await rate_round(context, args.burst, 1, tmp) for _ in rounds]
    rate_2 = [await rate_round(context, args.burst, 2, tmp) for _ in rounds]
    httpx_client = [await client_rate_round("httpx", args.burst, tmp) for _ in rounds]
    sender_client = [await client_rate_round("sender", args.burst, tmp) for _ in rounds]
    report = {
        "latency_p50_ms": summary([r["p50"] for r in latency]),
        "latency_p99_ms": summary([r["p99"] for r in latency]),
        "latency_missing": [r["missing"] for r in latency],
        "baseline_latency_p50_ms": summary([r["p50"] for r in baseline_latency]),
        "baseline_latency_p99_ms": summary([r["p99"] for r in baseline_latency]),
        "rate_1_replica_per_s": summary([r["rate_per_s"] for r in rate_1]),
        "rate_2_replicas_per_s": summary([r["rate_per_s"] for r in rate_2]),
        "delivered_per_round": [r["delivered"] for r in rate_1 + rate_2],
        "httpx_client_rate_per_s": summary([r["rate_per_s"] for r in httpx_client]),
        "httpx_client_cpu_us_per_request": summary([r["cpu_us_per_request"] for r in httpx_client]),
        "sender_rate_per_s": summary([r["rate_per_s"] for r in sender_client]),
        "sender_cpu_us_per_request": summary([r["cpu_us_per_request"] for r in sender_client]),
        "rounds": args.rounds,
    }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="repetitions of each measurement")
    parser.add_argument("--seconds", type=float, default=10, help="length of a latency round")
    parser.add_argument("--burst", type=int, default=10000, help="events of a rate round")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
