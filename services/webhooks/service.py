"""The webhooks service: registrations, signing, delivery, retries and the delivery log.

Three parts run in each replica: command handlers (shared with other replicas through a queue
group), the event consumer that turns events into deliveries, and the dispatcher that claims due
deliveries and sends them. All delivery state lives in Redis, so replicas share the work and a
restart loses nothing.
"""

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field

from cocopilot import bus, subjects
from cocopilot.service import ServiceContext
from cocopilot.settings import Settings
from services.webhooks.addresses import AddressPolicy, Resolver, system_resolver
from services.webhooks.commands import WebhookCommands
from services.webhooks.dispatcher import Dispatcher, DispatchLimits
from services.webhooks.fanout import EventFanout
from services.webhooks.queue import BreakerSettings, DeliveryQueue
from services.webhooks.retries import RetryPolicy
from services.webhooks.sender import Sender

log = logging.getLogger(__name__)

# Extra time a claim lasts past the attempt timeout, for recording the attempt in Redis.
LEASE_MARGIN_S = 10.0
# At stop, attempts in flight get this long to finish; the rest are attempted again after
# their lease ends.
STOP_GRACE_S = 5.0


def dispatch_limits(settings: Settings) -> DispatchLimits:
    return DispatchLimits(
        max_concurrency=settings.webhook_max_concurrency,
        endpoint_concurrency=settings.webhook_endpoint_concurrency,
        lease_ms=int((settings.webhook_timeout_s + LEASE_MARGIN_S) * 1000),
        poll_interval_s=settings.webhook_poll_interval_s,
    )


def breaker_settings(settings: Settings) -> BreakerSettings:
    return BreakerSettings(
        failures=settings.webhook_breaker_failures,
        pause_ms=int(settings.webhook_breaker_pause_s * 1000),
        pause_max_ms=int(settings.webhook_breaker_pause_max_s * 1000),
    )


@dataclass
class WebhooksService:
    context: ServiceContext
    resolver: Resolver = system_resolver
    ssl_context: ssl.SSLContext | None = None  # None: httpx's default, with certifi's CA bundle
    # The event consumer's task, then the dispatcher's.
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        settings = self.context.settings
        policy = AddressPolicy.from_settings(settings.webhook_allowed_networks)
        retries = RetryPolicy.from_settings(settings)
        self.queue = DeliveryQueue(
            self.context.redis, settings.webhook_delivery_retention_s, breaker_settings(settings)
        )
        self.sender = Sender(
            policy,
            self.resolver,
            settings.webhook_timeout_s,
            settings.webhook_connect_timeout_s,
            self.ssl_context,
        )
        self.dispatcher = Dispatcher(self.queue, self.sender, retries, dispatch_limits(settings))
        self.fanout = EventFanout(
            self.context.nats,
            self.context.redis,
            self.queue,
            retries.max_attempts,
            settings.webhook_event_ack_wait_s,
            on_scheduled=self.dispatcher.wake,
        )
        self.commands = WebhookCommands(
            self.context.redis,
            self.queue,
            self.resolver,
            policy,
            settings.webhook_connect_timeout_s,
        )

    async def start(self) -> None:
        await self.fanout.subscribe()
        await self._serve_commands()
        stopping = self.context.stopping
        self.tasks = [
            asyncio.create_task(self.fanout.run(stopping), name="webhooks-fanout"),
            asyncio.create_task(self.dispatcher.run(stopping), name="webhooks-dispatcher"),
        ]
        for task in self.tasks:
            task.add_done_callback(_stop_on_crash(self.context))

    async def _serve_commands(self) -> None:
        handlers = {
            subjects.CREATE_WEBHOOK: self.commands.create,
            subjects.DELETE_WEBHOOK: self.commands.delete,
            subjects.ENABLE_WEBHOOK: self.commands.enable,
            subjects.REDELIVER_WEBHOOK: self.commands.redeliver,
            subjects.TEST_WEBHOOK: self.commands.test,
        }
        for subject, handler in handlers.items():
            await bus.serve_command(
                self.context.nats, subject, handler, queue=subjects.WEBHOOKS_QUEUE
            )
        # The subscriptions reach the server with this flush, so commands sent once start()
        # returned find a listener.
        await self.context.nats.flush()

    async def stop(self) -> None:
        self.context.stopping.set()
        self.dispatcher.wake()
        # A batch of events cut short here was not acked, so JetStream hands it out again and
        # the deliveries that were already written are not written twice.
        self.tasks[0].cancel()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*self.tasks, return_exceptions=True), STOP_GRACE_S
            )
        await self.dispatcher.drain(STOP_GRACE_S)
        await self.sender.aclose()


def _stop_on_crash(context: ServiceContext) -> Callable[[asyncio.Task[None]], None]:
    """Stop the service when a loop ends with an error, so the container restarts it."""

    def check(task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        log.error(
            "webhooks loop failed; stopping the service",
            exc_info=task.exception(),
            extra={"task": task.get_name()},
        )
        context.stopping.set()

    return check


# The service that start() made for each running context, for stop().
_services: dict[int, WebhooksService] = {}


async def start(context: ServiceContext) -> None:
    service = WebhooksService(context)
    _services[id(context)] = service
    await service.start()


async def stop(context: ServiceContext) -> None:
    service = _services.pop(id(context), None)
    if service is not None:
        await service.stop()
