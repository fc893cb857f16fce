"""``GET /metrics``: Prometheus metrics of the whole system, from Redis and the api process.

Workers by status are read from the worker records at scrape time. Event counts come from the
metrics service's aggregates, and webhook delivery outcomes from the hash that the webhooks
service increments. Like every ``/api/v1`` route, it needs the bearer token when
COCOPILOT_API_TOKEN is set; Prometheus sends it with ``authorization`` in the scrape config.
"""

from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from redis.exceptions import RedisError

from cocopilot import keys, store
from cocopilot.errors import ServiceUnavailable
from cocopilot.events import EventType
from cocopilot.models import WorkerStatus
from services.api.errors import error_responses
from services.api.security import require_token
from services.api.state import ApiState, get_state

router = APIRouter(tags=["monitoring"])

State = Annotated[ApiState, Depends(get_state)]

# Not registered anywhere: collected on each scrape, next to the app's own registry.
_process = ProcessCollector(registry=None)


class _Snapshot(Collector):
    """Metric families read before the scrape, since collectors cannot await Redis."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


@router.get(
    "/metrics",
    summary="Prometheus metrics: workers, events, webhook deliveries, api latency",
    response_class=Response,
    dependencies=[Depends(require_token)],
    responses={
        200: {"content": {"text/plain": {}}, "description": "Prometheus text format"},
        **error_responses(401, 503),
    },
)
async def prometheus_metrics(request: Request, state: State) -> Response:
    try:
        families = await read_families(state)
    except (RedisError, OSError) as exc:
        raise ServiceUnavailable(f"Redis is not reachable: {exc}") from exc
    app_registry: CollectorRegistry = request.app.state.prometheus_registry
    families += list(app_registry.collect()) + list(_process.collect())

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(families))
    encode, content_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encode(registry), headers={"Content-Type": content_type})


async def read_families(state: ApiState) -> list[Metric]:
    workers = await store.list_workers(state.redis)
    event_counts = await read_hash(state, keys.METRICS_EVENT_COUNTS)
    outcomes = await read_hash(state, keys.WEBHOOK_DELIVERY_OUTCOMES)
    return [
        workers_family(Counter(str(worker.status) for worker in workers)),
        events_family(event_counts),
        webhook_deliveries_family(outcomes),
    ]


async def read_hash(state: ApiState, key: str) -> dict[str, str]:
    return {str(field): str(value) for field, value in (await state.redis.hgetall(key)).items()}


def workers_family(by_status: Counter[str]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(
        "cocopilot_workers", "Workers that exist now, by status", labels=["status"]
    )
    for status in WorkerStatus:
        family.add_metric([str(status)], by_status.get(str(status), 0))
    return family


def events_family(counts: dict[str, str]) -> CounterMetricFamily:
    family = CounterMetricFamily(
        "cocopilot_events",
        "Events applied by the metrics service, by type, since its aggregates began",
        labels=["type"],
    )
    names = sorted({str(event_type) for event_type in EventType} | set(counts))
    for name in names:
        family.add_metric([name], int(counts.get(name, 0)))
    return family


def webhook_deliveries_family(outcomes: dict[str, str]) -> CounterMetricFamily:
    family = CounterMetricFamily(
        "cocopilot_webhook_deliveries",
        "Finished webhook delivery attempts, by outcome, as counted by the webhooks service",
        labels=["outcome"],
    )
    for outcome in sorted(outcomes):
        family.add_metric([outcome], int(outcomes[outcome]))
    return family
