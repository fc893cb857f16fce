"""Delivery end to end: real Redis and NATS, the service in this process, receivers on
127.0.0.1."""

import json
from ipaddress import ip_address

from nats.aio.client import Client as NATS
from redis.asyncio import Redis
from standardwebhooks import Webhook as StandardWebhook

from cocopilot import keys, subjects
from cocopilot.events import EventType
from services.webhooks.addresses import IPAddress
from services.webhooks.fanout import DURABLE_NAME
from tests.servers import Servers
from tests.waiting import wait_until
from tests.webhook_receiver import ReceivedRequest, Receiver, Reply, always
from tests.webhook_service import deliveries, publish, register, running_replica


def failing_first(failures: int, status: int = 500) -> "Receiver":
    def respond(request: ReceivedRequest, number: int) -> Reply:
        return Reply(status) if number < failures else Reply(204)

    return Receiver(respond)


async def test_delivery_is_signed_standard_webhook(
    servers: Servers, redis: Redis, nc: NATS
) -> None:
    async with Receiver() as receiver, running_replica(servers, redis):
        webhook = await register(nc, receiver.url())
        event = await publish(nc, name="Twix", status="completed")

        await wait_until(lambda: _count(receiver, 1))

    request = receiver.requests[0]
    payload = StandardWebhook(webhook["secret"]).verify(request.body, request.headers)
    assert payload == {"type": "worker.completed", "timestamp": event.time, "data": event.data}
    assert request.method == "POST"
    assert request.target == "/hook"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["webhook-id"].startswith("msg_")
    assert request.headers["user-agent"].startswith("CoCoPilot-Webhooks/")


async def test_delivery_log_records_success(servers: Servers, redis: Redis, nc: NATS) -> None:
    reply = Reply(200, [("content-type", "text/plain")], b"thanks")
    async with Receiver(always(reply)) as receiver, running_replica(servers, redis):
        webhook = await register(nc, receiver.url())
        event = await publish(nc, name="Twix")
        await wait_until(lambda: _delivery_status(redis, webhook["id"], "succeeded"))

    [delivery] = await deliveries(redis, webhook["id"])
    [attempt] = delivery.attempts
    assert delivery.id == receiver.requests[0].headers["webhook-id"]
    assert delivery.event_id == event.id
    assert delivery.event_type == "worker.completed"
    assert delivery.payload["data"] == {"name": "Twix"}
    assert delivery.next_attempt_at is None
    assert attempt.status_code == 200
    assert attempt.response_body == "thanks"
    assert attempt.error is None
    assert attempt.address == "127.0.0.1"
    assert attempt.latency_ms > 0


async def test_failing_twice_gets_three_attempts(servers: Servers, redis: Redis, nc: NATS) -> None:
    async with failing_first(2) as receiver, running_replica(servers, redis):
        webhook = await register(nc, receiver.url())
        await publish(nc, name="Twix")
        await wait_until(lambda: _delivery_status(redis, webhook["id"], "succeeded"))

    [delivery] = await deliveries(redis, webhook["id"])
    webhook_ids = {request.headers["webhook-id"] for request in receiver.requests}
    gaps_s = [
        later.received_at - earlier.received_at
        for earlier, later in zip(receiver.requests, receiver.requests[1:], strict=False)
    ]
    assert len(receiver.requests) == 3
    assert webhook_ids == {delivery.id}
    assert [attempt.status_code for attempt in delivery.attempts] == [500, 500, 204]
    assert min(gaps_s) >= 0.19  # the configured retry delay is 0.2 s


async def test_delivery_fails_after_last_retry(servers: Servers, redis: Redis, nc: NATS) -> None:
    async with Receiver(always(Reply(500))) as receiver, running_replica(servers, redis):
        webhook = await register(nc, receiver.url())
        await publish(nc, name="Twix")
        await wait_until(lambda: _delivery_status(redis, webhook["id"], "failed"))

    [delivery] = await deliveries(redis, webhook["id"])
    assert len(receiver.requests) == 4  # the first attempt and three retries
    assert delivery.attempt_count == 4
    assert delivery.attempts[-1].error == "HTTP 500: only 2xx counts as delivered"


async def test_redirect_target_never_contacted(servers: Servers, redis: Redis, nc: NATS) -> None:
    async with Receiver() as target:
        redirect = Reply(302, [("location", target.url("/elsewhere"))])
        async with Receiver(always(redirect)) as receiver, running_replica(servers, redis):
            webhook = await register(nc, receiver.url())
            await publish(nc, name="Twix")
            await wait_until(lambda: _delivery_status(redis, webhook["id"], "failed"))

    [delivery] = await deliveries(redis, webhook["id"])
    assert len(receiver.requests) == 4
    assert target.connections == 0
    assert delivery.attempts[0].status_code == 302
    assert "not followed" in (delivery.attempts[0].error or "")


async def test_gone_disables_webhook(servers: Servers, redis: Redis, nc: NATS) -> None:
    async with (
        Receiver(always(Reply(410))) as gone,
        Receiver() as control,
        running_replica(servers, redis),
    ):
        webhook = await register(nc, gone.url())
        await publish(nc, name="Twix")
        await wait_until(lambda: redis.hexists(keys.WEBHOOKS_DISABLED, webhook["id"]))
        # Events go out in order, so once the control webhook has the second event, the
        # disabled webhook has been passed over for it.
        await register(nc, control.url())
        await publish(nc, name="KitKat")
        await wait_until(lambda: _count(control, 1))

    [delivery] = await deliveries(redis, webhook["id"])
    assert len(gone.requests) == 1
    assert delivery.status == "failed"
    assert "410 Gone" in (delivery.attempts[0].error or "")


async def test_retry_after_delays_next_attempt(servers: Servers, redis: Redis, nc: NATS) -> None:
    def respond(request: ReceivedRequest, number: int) -> Reply:
        return Reply(429, [("retry-after", "1")]) if number == 0 else Reply(204)

    async with Receiver(respond) as receiver, running_replica(servers, redis):
        webhook = await register(nc, receiver.url())
        await publish(nc, name="Twix")
        await wait_until(lambda: _delivery_status(redis, webhook["id"], "succeeded"))

    first, second = receiver.requests
    assert second.received_at - first.received_at >= 0.95


async def test_rebinding_host_is_not_connected(servers: Servers, redis: Redis, nc: NATS) -> None:
    answers: list[str] = []

    async def rebinding_resolver(host: str, port: int) -> list[IPAddress]:
        # Public for the check at registration, loopback for every attempt after it.
        answers.append("93.184.215.14" if not answers else "127.0.0.1")
        return [ip_address(answers[-1])]

    async with (
        Receiver() as receiver,
        running_replica(servers, redis, rebinding_resolver, webhook_allowed_networks=[]),
    ):
        webhook = await register(nc, f"http://hooks.example.com:{receiver.port}/hook")
        await publish(nc, name="Twix")
        await wait_until(lambda: _delivery_status(redis, webhook["id"], "failed"))

    [delivery] = await deliveries(redis, webhook["id"])
    assert receiver.connections == 0
    assert answers.count("93.184.215.14") == 1
    assert delivery.attempts[0].status_code is None
    assert "127.0.0.1 is a loopback address" in (delivery.attempts[0].error or "")


async def test_slow_endpoint_does_not_delay_others(
    servers: Servers, redis: Redis, nc: NATS
) -> None:
    async with (
        Receiver(always(Reply(204, delay_s=1.5))) as slow,
        Receiver() as fast,
        running_replica(servers, redis, webhook_endpoint_concurrency=2, webhook_timeout_s=5),
    ):
        await register(nc, slow.url())
        await register(nc, fast.url())
        for number in range(20):
            await publish(nc, number=number)

        await wait_until(lambda: _count(fast, 20), timeout_s=1.5)
        slow_seen = len(slow.requests)

    assert (
        slow_seen <= 2
    )  # its concurrency limit: the first two requests, still waiting for their responses


async def test_breaker_pauses_failing_endpoint(servers: Servers, redis: Redis, nc: NATS) -> None:
    async with (
        Receiver(always(Reply(503))) as receiver,
        running_replica(
            servers,
            redis,
            webhook_breaker_failures=3,
            webhook_retry_delays_s=[0.05] * 10,
            webhook_endpoint_concurrency=1,
        ),
    ):
        webhook = await register(nc, receiver.url())
        for number in range(3):
            await publish(nc, number=number)
        await wait_until(lambda: _count(receiver, 4), timeout_s=5)
        breaker = await redis.hgetall(keys.webhook_breaker(webhook["id"]))

    gaps_s = [
        later.received_at - earlier.received_at
        for earlier, later in zip(receiver.requests, receiver.requests[1:], strict=False)
    ]
    assert max(gaps_s[:2]) < 0.5
    assert gaps_s[2] >= 0.95  # the breaker's 1 s pause before the probe
    assert int(breaker["failures"]) >= 3


async def test_internal_events_are_not_delivered(servers: Servers, redis: Redis, nc: NATS) -> None:
    async with Receiver() as receiver, running_replica(servers, redis):
        await register(nc, receiver.url(), events=("worker.created", "worker.completed"))
        await publish(nc, EventType.CI_PASSED, worker="Twix")
        await publish(nc, EventType.WORKER_CREATED, name="Twix")
        await publish(nc, EventType.WORKER_FAILED, name="Twix")
        await publish(nc, EventType.WORKER_COMPLETED, name="Twix")
        await wait_until(lambda: _count(receiver, 2))
        # A third unsubscribed event, then a subscribed one as a barrier.
        await publish(nc, EventType.PR_MERGED, worker="Twix")
        await publish(nc, EventType.WORKER_CREATED, name="KitKat")
        await wait_until(lambda: _count(receiver, 3))

    types = sorted(json.loads(request.body)["type"] for request in receiver.requests)
    assert types == ["worker.completed", "worker.created", "worker.created"]


async def test_replicas_deliver_each_event_once(servers: Servers, redis: Redis, nc: NATS) -> None:
    async with (
        Receiver() as receiver,
        running_replica(servers, redis),
        running_replica(servers, redis),
    ):
        await register(nc, receiver.url())
        for number in range(60):
            await publish(nc, number=number)
        await wait_until(lambda: _count(receiver, 60))
        # Another event as a barrier, so a duplicate would have arrived by its end.
        await publish(nc, number=60)
        await wait_until(lambda: _count(receiver, 61))

    numbers = sorted(json.loads(request.body)["data"]["number"] for request in receiver.requests)
    webhook_ids = {request.headers["webhook-id"] for request in receiver.requests}
    assert numbers == list(range(61))
    assert len(webhook_ids) == 61


async def test_response_body_is_cut_at_16_kib(servers: Servers, redis: Redis, nc: NATS) -> None:
    reply = Reply(200, body=b"x" * 20000)
    async with Receiver(always(reply)) as receiver, running_replica(servers, redis):
        webhook = await register(nc, receiver.url())
        await publish(nc, name="Twix")
        await wait_until(lambda: _delivery_status(redis, webhook["id"], "succeeded"))

    [delivery] = await deliveries(redis, webhook["id"])
    assert delivery.attempts[0].response_body == "x" * 16384
    assert delivery.attempts[0].response_truncated


async def test_slow_response_times_out(servers: Servers, redis: Redis, nc: NATS) -> None:
    async with (
        Receiver(always(Reply(204, delay_s=3))) as receiver,
        running_replica(servers, redis, webhook_timeout_s=0.5, webhook_retry_delays_s=[0.1]),
    ):
        webhook = await register(nc, receiver.url())
        await publish(nc, name="Twix")
        await wait_until(lambda: _delivery_status(redis, webhook["id"], "failed"), timeout_s=5)

    [delivery] = await deliveries(redis, webhook["id"])
    assert [attempt.error for attempt in delivery.attempts] == ["timed out after 0.5 s"] * 2
    assert all(attempt.latency_ms < 1000 for attempt in delivery.attempts)


async def test_redelivery_keeps_webhook_id(servers: Servers, redis: Redis, nc: NATS) -> None:
    async with Receiver() as receiver, running_replica(servers, redis) as service:
        webhook = await register(nc, receiver.url())
        await publish(nc, name="Twix")
        await wait_until(lambda: _delivery_status(redis, webhook["id"], "succeeded"))
        [delivery] = await deliveries(redis, webhook["id"])

        await service.commands.redeliver({"id": webhook["id"], "deliveryId": delivery.id})
        await wait_until(lambda: _count(receiver, 2))
        await wait_until(lambda: _delivery_status(redis, webhook["id"], "succeeded"))

    [redelivered] = await deliveries(redis, webhook["id"])
    first, second = receiver.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == delivery.id
    assert first.body == second.body
    assert len(redelivered.attempts) == 2


async def test_deleted_webhook_gets_nothing(servers: Servers, redis: Redis, nc: NATS) -> None:
    async with (
        Receiver() as removed,
        Receiver() as control,
        running_replica(servers, redis) as service,
    ):
        webhook = await register(nc, removed.url())
        await service.commands.delete({"id": webhook["id"]})
        await register(nc, control.url())
        await publish(nc, name="Twix")
        await wait_until(lambda: _count(control, 1))

    assert removed.connections == 0
    assert not await redis.hexists(keys.WEBHOOKS, webhook["id"])


async def _count(receiver: Receiver, expected: int) -> bool:
    return len(receiver.requests) >= expected


async def _delivery_status(redis: Redis, webhook_id: str, status: str) -> bool:
    found = await deliveries(redis, webhook_id)
    return bool(found) and all(delivery.status == status for delivery in found)


async def test_consumer_settings_update_on_start(servers: Servers, redis: Redis, nc: NATS) -> None:
    async with running_replica(servers, redis, webhook_event_ack_wait_s=30):
        pass
    async with running_replica(servers, redis, webhook_event_ack_wait_s=5):
        info = await nc.jetstream().consumer_info(subjects.EVENTS_STREAM, DURABLE_NAME)

    assert info.config.ack_wait == 5


async def test_delivery_records_expire(servers: Servers, redis: Redis, nc: NATS) -> None:
    async with (
        Receiver() as receiver,
        running_replica(servers, redis, webhook_delivery_retention_s=1),
    ):
        webhook = await register(nc, receiver.url())
        await publish(nc, name="Twix")
        [delivery] = await wait_until(lambda: deliveries(redis, webhook["id"]))

        await wait_until(lambda: _expired(redis, delivery.id), timeout_s=5)


async def _expired(redis: Redis, delivery_id: str) -> bool:
    return not await redis.exists(
        keys.webhook_delivery(delivery_id), keys.webhook_delivery_attempts(delivery_id)
    )
