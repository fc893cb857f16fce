"""The sender against receivers on 127.0.0.1: pinned addresses, Host, TLS server names."""

import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from ipaddress import ip_address
from pathlib import Path

import pytest

from services.webhooks.addresses import AddressPolicy, IPAddress, Resolver
from services.webhooks.sender import AttemptResult, Sender
from tests.webhook_receiver import Receiver

LOOPBACK_ONLY = AddressPolicy.from_settings(["127.0.0.0/8"])
HEADERS = {"content-type": "application/json", "webhook-id": "msg_1"}


def resolving_to(*addresses: str) -> Resolver:
    """A resolver that answers every host with ``addresses``, in order, without DNS."""

    async def resolve(host: str, port: int) -> list[IPAddress]:
        return [ip_address(address) for address in addresses]

    return resolve


@dataclass
class Certificate:
    cert_path: Path
    key_path: Path
    server_names: list[str | None]  # the TLS server name of each handshake

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_path, self.key_path)
        context.sni_callback = self._record_server_name
        return context

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert_path))

    def _record_server_name(
        self, connection: ssl.SSLObject, name: str | None, context: ssl.SSLContext
    ) -> None:
        self.server_names.append(name)


@pytest.fixture
def hooks_test_certificate(tmp_path: Path) -> Iterator[Certificate]:
    """A self-signed certificate for the name hooks.test only."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=hooks.test", "-addext", "subjectAltName=DNS:hooks.test",
            "-keyout", str(key_path), "-out", str(cert_path),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    yield Certificate(cert_path, key_path, [])


@pytest.fixture
async def sender_factory() -> AsyncIterator[list[Sender]]:
    senders: list[Sender] = []
    yield senders
    for sender in senders:
        await sender.aclose()


def new_sender(
    senders: list[Sender], resolver: Resolver, ssl_context: ssl.SSLContext | None = None
) -> Sender:
    sender = Sender(LOOPBACK_ONLY, resolver, 2.0, 1.0, ssl_context)
    senders.append(sender)
    return sender


async def test_tls_names_host_while_pinned(
    hooks_test_certificate: Certificate, sender_factory: list[Sender]
) -> None:
    certificate = hooks_test_certificate
    sender = new_sender(sender_factory, resolving_to("127.0.0.1"), certificate.client_context())

    async with Receiver(tls=certificate.server_context()) as receiver:
        result = await sender.send("wh", receiver.url(host="hooks.test"), HEADERS, b"{}")

    assert result.status_code == 204
    assert result.address == "127.0.0.1"
    assert certificate.server_names == ["hooks.test"]
    assert receiver.requests[0].headers["host"] == f"hooks.test:{receiver.port}"


async def test_tls_certificate_checked_against_host(
    hooks_test_certificate: Certificate, sender_factory: list[Sender]
) -> None:
    certificate = hooks_test_certificate
    sender = new_sender(sender_factory, resolving_to("127.0.0.1"), certificate.client_context())

    async with Receiver(tls=certificate.server_context()) as receiver:
        result = await sender.send("wh", receiver.url(host="other.test"), HEADERS, b"{}")

    assert result.status_code is None
    assert "certificate" in (result.error or "").lower()
    assert receiver.requests == []


async def test_next_address_tried_after_refusal(sender_factory: list[Sender]) -> None:
    # The receiver listens on 127.0.0.1 only, so 127.0.0.3 refuses the connection.
    sender = new_sender(sender_factory, resolving_to("127.0.0.3", "127.0.0.1"))

    async with Receiver() as receiver:
        result = await sender.send("wh", receiver.url(host="hooks.test"), HEADERS, b"{}")

    assert result.status_code == 204
    assert result.address == "127.0.0.1"


async def test_any_blocked_address_stops_attempt(sender_factory: list[Sender]) -> None:
    sender = new_sender(sender_factory, resolving_to("127.0.0.1", "10.0.0.1"))

    async with Receiver() as receiver:
        result = await sender.send("wh", receiver.url(host="hooks.test"), HEADERS, b"{}")

    assert result.error == "blocked: hooks.test resolves to 10.0.0.1 is a private address"
    assert receiver.connections == 0


async def test_request_carries_headers_and_body(sender_factory: list[Sender]) -> None:
    sender = new_sender(sender_factory, resolving_to("127.0.0.1"))

    async with Receiver() as receiver:
        url = receiver.url("/in?source=cocopilot").replace("://", "://bot:s%3Acret@")
        await sender.send("wh", url, HEADERS, b'{"type":"pr.merged"}')

    request = receiver.requests[0]
    assert request.target == "/in?source=cocopilot"
    assert request.body == b'{"type":"pr.merged"}'
    assert request.headers["webhook-id"] == "msg_1"
    assert request.headers["content-length"] == "20"
    assert request.headers["host"] == f"127.0.0.1:{receiver.port}"
    assert request.headers["authorization"] == "Basic Ym90OnM6Y3JldA=="  # bot:s:cret


async def test_connection_is_kept_alive(sender_factory: list[Sender]) -> None:
    sender = new_sender(sender_factory, resolving_to("127.0.0.1"))

    async with Receiver() as receiver:
        results: list[AttemptResult] = [
            await sender.send("wh", receiver.url(), HEADERS, b"{}") for _ in range(3)
        ]

    assert [result.status_code for result in results] == [204, 204, 204]
    assert receiver.connections == 1


async def test_refused_connection_is_reported(sender_factory: list[Sender]) -> None:
    sender = new_sender(sender_factory, resolving_to("127.0.0.1"))
    async with Receiver() as receiver:
        port = receiver.port  # closed when the block ends, so nothing listens on it after

    result = await sender.send("wh", f"http://127.0.0.1:{port}/hook", HEADERS, b"{}")

    assert result.status_code is None
    assert (result.error or "").startswith("connection failed")
