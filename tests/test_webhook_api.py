"""The webhook routes of the api, with the webhooks service running in this process."""

from collections.abc import AsyncIterator
from ipaddress import ip_address

import httpx
import pytest
from nats.aio.client import Client as NATS
from redis.asyncio import Redis

from cocopilot import keys
from services.api.app import create_app
from services.webhooks.addresses import IPAddress, Resolver, parse_ip_literal
from tests.servers import Servers
from tests.waiting import wait_until
from tests.webhook_receiver import Receiver, Reply, always
from tests.webhook_service import fast_settings, publish, running_replica

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def example_resolver() -> Resolver:
    """Resolve the example hosts of these tests without DNS.

    The registration check of hooks.example.com sees a public address; every later lookup
    (an attempt) gets 127.0.0.2, where nothing listens, so no test ever connects beyond this
    machine. internal.example.com is private, and IP literals stay as they are.
    """
    looked_up: set[str] = set()

    async def resolve(host: str, port: int) -> list[IPAddress]:
        literal = parse_ip_literal(host)
        if literal is not None:
            return [literal]
        if host == "internal.example.com":
            return [ip_address("10.1.2.3")]
        first_lookup = host not in looked_up
        looked_up.add(host)
        return [ip_address("93.184.215.14" if first_lookup else "127.0.0.2")]

    return resolve


@pytest.fixture
async def api(servers: Servers, redis: Redis, nc: NATS) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(fast_settings(servers))
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        running_replica(servers, redis, example_resolver()),
        httpx.AsyncClient(transport=transport, base_url="http://api") as client,
    ):
        yield client


async def test_create_returns_view_and_secret(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/api/v1/webhooks",
        json={"url": "https://hooks.example.com/in", "events": ["worker.completed"]},
    )

    body = response.json()
    assert response.status_code == 201
    assert set(body) == {"id", "url", "events", "createdAt", "secret"}
    assert body["url"] == "https://hooks.example.com/in"
    assert body["events"] == ["worker.completed"]
    assert body["secret"].startswith("whsec_")


async def test_create_keeps_given_secret(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/api/v1/webhooks",
        json={"url": "https://hooks.example.com/in", "events": ["pr.merged"], "secret": SECRET},
    )

    assert response.json()["secret"] == SECRET


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"url": "ftp://hooks.example.com", "events": ["pr.merged"]}, "http or https"),
        ({"url": "https://internal.example.com/", "events": ["pr.merged"]}, "private address"),
        ({"url": "http://169.254.169.254/latest", "events": ["pr.merged"]}, "metadata"),
        ({"url": "http://[::ffff:10.0.0.1]/", "events": ["pr.merged"]}, "private address"),
        ({"url": "https://hooks.example.com", "events": []}, "at least one event"),
        ({"url": "https://hooks.example.com", "events": ["ci.passed"]}, "unknown event"),
        ({"events": ["pr.merged"]}, "url is required"),
        (
            {"url": "https://hooks.example.com", "events": ["pr.merged"], "secret": "hunter2"},
            "invalid secret",
        ),
    ],
)
async def test_create_rejects_invalid_request(
    api: httpx.AsyncClient, body: dict[str, object], message: str
) -> None:
    response = await api.post("/api/v1/webhooks", json=body)

    error = response.json()["error"]
    assert response.status_code == 400
    assert error["status"] == 400
    assert message in error["message"]


async def test_list_hides_secrets(api: httpx.AsyncClient) -> None:
    created = await api.post(
        "/api/v1/webhooks", json={"url": "https://hooks.example.com/a", "events": ["pr.merged"]}
    )

    listed = (await api.get("/api/v1/webhooks")).json()

    assert listed == [
        {
            "id": created.json()["id"],
            "url": "https://hooks.example.com/a",
            "events": ["pr.merged"],
            "createdAt": created.json()["createdAt"],
            "status": "active",
            "disabledAt": None,
            "disabledReason": None,
        }
    ]


async def test_registration_survives_in_redis(api: httpx.AsyncClient, redis: Redis) -> None:
    created = await api.post(
        "/api/v1/webhooks", json={"url": "https://hooks.example.com/a", "events": ["pr.merged"]}
    )

    assert await redis.hexists(keys.WEBHOOKS, created.json()["id"])


async def test_delete_removes_webhook(api: httpx.AsyncClient) -> None:
    created = await api.post(
        "/api/v1/webhooks", json={"url": "https://hooks.example.com/a", "events": ["pr.merged"]}
    )
    webhook_id = created.json()["id"]

    deleted = await api.delete(f"/api/v1/webhooks/{webhook_id}")
    again = await api.delete(f"/api/v1/webhooks/{webhook_id}")

    assert deleted.status_code == 204
    assert again.status_code == 404
    assert again.json()["error"]["message"] == f'Webhook "{webhook_id}" not found'
    assert (await api.get("/api/v1/webhooks")).json() == []


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/webhooks/nope/deliveries"),
        ("GET", "/api/v1/webhooks/nope/deliveries/msg_1"),
        ("POST", "/api/v1/webhooks/nope/deliveries/msg_1/redeliver"),
        ("POST", "/api/v1/webhooks/nope/test"),
        ("POST", "/api/v1/webhooks/nope/enable"),
        ("DELETE", "/api/v1/webhooks/nope"),
        ("DELETE", "/api/v1/webhooks/..%2F..%2Fetc"),
    ],
)
async def test_unknown_webhook_is_not_found(api: httpx.AsyncClient, method: str, path: str) -> None:
    response = await api.request(method, path)

    assert response.status_code == 404
    assert response.json()["error"]["status"] == 404


async def test_log_test_and_redeliver(api: httpx.AsyncClient, redis: Redis, nc: NATS) -> None:
    async with Receiver(always(Reply(200, body=b"ok"))) as receiver:
        created = await api.post(
            "/api/v1/webhooks", json={"url": receiver.url(), "events": ["worker.completed"]}
        )
        webhook_id = created.json()["id"]
        deliveries_path = f"/api/v1/webhooks/{webhook_id}/deliveries"
        event = await publish(nc, name="Twix")
        await wait_until(lambda: _succeeded(api, deliveries_path, 1))

        tested = await api.post(f"/api/v1/webhooks/{webhook_id}/test")
        await wait_until(lambda: _succeeded(api, deliveries_path, 2))
        test_delivery, event_delivery = (await api.get(deliveries_path)).json()

        redelivered = await api.post(f"{deliveries_path}/{event_delivery['id']}/redeliver")
        await wait_until(lambda: _count(receiver, 3))
        await wait_until(lambda: _succeeded(api, deliveries_path, 2))
        one = (await api.get(f"{deliveries_path}/{event_delivery['id']}")).json()

    assert tested.status_code == 202
    assert tested.json()["eventType"] == "webhook.test"
    assert test_delivery["payload"]["data"] == {"webhookId": webhook_id}
    assert event_delivery["eventId"] == event.id
    assert event_delivery["attempts"][0]["statusCode"] == 200
    assert event_delivery["attempts"][0]["responseBody"] == "ok"
    assert redelivered.status_code == 202
    assert redelivered.json()["status"] == "pending"
    assert len(one["attempts"]) == 2
    assert receiver.requests[2].headers["webhook-id"] == event_delivery["id"]


async def test_gone_webhook_shows_disabled_and_enables(
    api: httpx.AsyncClient, redis: Redis, nc: NATS
) -> None:
    async with Receiver(always(Reply(410))) as receiver:
        created = await api.post(
            "/api/v1/webhooks", json={"url": receiver.url(), "events": ["worker.completed"]}
        )
        webhook_id = created.json()["id"]
        await publish(nc, name="Twix")
        await wait_until(lambda: redis.hexists(keys.WEBHOOKS_DISABLED, webhook_id))

        listed = (await api.get("/api/v1/webhooks")).json()
        test_while_disabled = await api.post(f"/api/v1/webhooks/{webhook_id}/test")
        enabled = await api.post(f"/api/v1/webhooks/{webhook_id}/enable")

    assert listed[0]["status"] == "disabled"
    assert "410 Gone" in listed[0]["disabledReason"]
    assert test_while_disabled.status_code == 409
    assert enabled.status_code == 200
    assert enabled.json()["status"] == "active"


async def test_deliveries_limit_is_checked(api: httpx.AsyncClient) -> None:
    created = await api.post(
        "/api/v1/webhooks", json={"url": "https://hooks.example.com/a", "events": ["pr.merged"]}
    )

    response = await api.get(f"/api/v1/webhooks/{created.json()['id']}/deliveries?limit=0")

    assert response.status_code == 400
    assert "limit" in response.json()["error"]["message"]


async def test_openapi_documents_delivery_routes(api: httpx.AsyncClient) -> None:
    paths = (await api.get("/openapi.json")).json()["paths"]

    redeliver = paths["/api/v1/webhooks/{id}/deliveries/{deliveryId}/redeliver"]["post"]
    assert set(redeliver["responses"]) >= {"202", "404", "409", "503", "504"}
    assert "DeliveryView" in str(redeliver["responses"]["202"])
    assert "/api/v1/webhooks/{id}/test" in paths


async def _succeeded(api: httpx.AsyncClient, path: str, expected: int) -> bool:
    found = (await api.get(path)).json()
    return len(found) == expected and all(item["status"] == "succeeded" for item in found)


async def _count(receiver: Receiver, expected: int) -> bool:
    return len(receiver.requests) >= expected
