"""The address policy decides on addresses alone: nothing here opens a connection."""

from ipaddress import ip_address

import pytest

from cocopilot.errors import InvalidRequest
from services.webhooks.addresses import (
    AddressPolicy,
    BlockedAddress,
    IPAddress,
    check_webhook_url,
    parse_webhook_url,
    system_resolver,
)

BLOCKED = [
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "private"),  # "this network"
    ("127.0.0.1", "loopback"),
    ("127.255.0.9", "loopback"),
    ("10.0.0.1", "private"),
    ("172.16.5.4", "private"),
    ("172.31.255.255", "private"),
    ("192.168.1.1", "private"),
    ("169.254.1.1", "link-local"),
    ("169.254.169.254", "metadata"),
    ("169.254.170.2", "metadata"),
    ("100.100.100.200", "metadata"),
    ("168.63.129.16", "metadata"),
    ("192.0.0.192", "metadata"),
    ("100.64.0.1", "CGNAT"),
    ("100.127.255.254", "CGNAT"),
    ("192.0.0.8", "reserved"),
    ("192.0.2.1", "private"),  # documentation
    ("198.18.0.1", "private"),  # benchmarking
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "reserved"),
    ("::", "unspecified"),
    ("::1", "loopback"),
    ("fe80::1", "link-local"),
    ("fc00::1", "private"),
    ("fd12:3456::1", "private"),
    ("fd00:ec2::254", "metadata"),
    ("ff02::1", "multicast"),
    ("2001:db8::1", "private"),  # documentation
    ("::127.0.0.1", "reserved"),  # IPv4-compatible, deprecated
    ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:10.1.2.3", "private"),
    ("::ffff:169.254.169.254", "metadata"),
    ("64:ff9b::7f00:1", "loopback"),  # NAT64 of 127.0.0.1
    ("64:ff9b::a9fe:a9fe", "metadata"),  # NAT64 of 169.254.169.254
    ("64:ff9b::a00:1", "private"),  # NAT64 of 10.0.0.1
    ("64:ff9b:1::a00:1", "reserved"),  # local-use NAT64 prefix
    ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
    ("2002:a9fe:a9fe::1", "metadata"),  # 6to4 of 169.254.169.254
    ("2002:c0a8:101::", "private"),  # 6to4 of 192.168.1.1
    ("2001:0:4136:e378:8000:63bf:80ff:fffe", "loopback"),  # Teredo, client 127.0.0.1
    ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "private"),  # Teredo, client 10.0.0.1
]

ALLOWED = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.215.14",
    "100.63.255.255",  # just below the CGNAT range
    "100.128.0.0",  # just above it
    "172.32.0.1",  # just above 172.16.0.0/12
    "2606:4700:4700::1111",
    "2a00:1450:4001:80b::200e",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",  # NAT64 of 8.8.8.8
    "2002:808:808::1",  # 6to4 of 8.8.8.8
]


@pytest.mark.parametrize(("address", "kind"), BLOCKED)
def test_policy_blocks_address(address: str, kind: str) -> None:
    reason = AddressPolicy().blocked_reason(ip_address(address))

    assert reason is not None
    assert kind in reason


@pytest.mark.parametrize("address", ALLOWED)
def test_policy_allows_public_address(address: str) -> None:
    assert AddressPolicy().blocked_reason(ip_address(address)) is None


def test_allowed_networks_open_loopback() -> None:
    policy = AddressPolicy.from_settings(["127.0.0.0/8", "fd00::/8"])

    assert policy.blocked_reason(ip_address("127.0.0.1")) is None
    assert policy.blocked_reason(ip_address("::ffff:127.0.0.1")) is None
    assert policy.blocked_reason(ip_address("fd00::5")) is None
    assert policy.blocked_reason(ip_address("10.0.0.1")) is not None
    assert policy.blocked_reason(ip_address("::1")) is not None


def test_allowed_networks_rejects_invalid_entry() -> None:
    with pytest.raises(ValueError, match="COCOPILOT_WEBHOOK_ALLOWED_NETWORKS"):
        AddressPolicy.from_settings(["not-a-network"])


def test_check_rejects_any_blocked_address() -> None:
    with pytest.raises(BlockedAddress, match=r"10\.0\.0\.1 is a private address"):
        AddressPolicy().check([ip_address("8.8.8.8"), ip_address("10.0.0.1")])


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("", "must not be empty"),
        ("ftp://example.com/hook", "http or https"),
        ("file:///etc/passwd", "http or https"),
        ("gopher://example.com", "http or https"),
        ("https:///hook", "host is missing"),
        ("https://example.com:99999/", "Port out of range"),
        ("https://example.com:0/", "port 0"),
        ("https://exa mple.com/", "space or a control character"),
        ("https://example.com/\r\nX-Injected: 1", "space or a control character"),
        ("https://example.com/" + "a" * 2048, "at most 2048"),
    ],
)
def test_url_form_is_checked(url: str, problem: str) -> None:
    with pytest.raises(InvalidRequest, match=problem):
        parse_webhook_url(url)


@pytest.mark.parametrize(
    "host",
    ["127.1", "0x7f.1", "2130706433", "017700000001", "[::1]", "[::ffff:7f00:1]", "localhost"],
)
async def test_url_with_loopback_spelling_is_rejected(host: str) -> None:
    # getaddrinfo turns these spellings into addresses without asking a DNS server.
    with pytest.raises(InvalidRequest, match="loopback"):
        await check_webhook_url(f"http://{host}/hook", system_resolver, AddressPolicy(), 5)


async def test_url_resolving_to_any_private_address_is_rejected() -> None:
    async def resolver(host: str, port: int) -> list[IPAddress]:
        return [ip_address("93.184.215.14"), ip_address("192.168.0.10")]

    with pytest.raises(InvalidRequest, match=r"192\.168\.0\.10 is a private address"):
        await check_webhook_url("https://hooks.example.com/x", resolver, AddressPolicy(), 5)


async def test_url_with_unresolvable_host_is_rejected() -> None:
    async def resolver(host: str, port: int) -> list[IPAddress]:
        raise OSError("Name or service not known")

    with pytest.raises(InvalidRequest, match="could not be resolved"):
        await check_webhook_url("https://nowhere.example/x", resolver, AddressPolicy(), 5)


async def test_url_with_public_address_passes() -> None:
    async def resolver(host: str, port: int) -> list[IPAddress]:
        assert (host, port) == ("hooks.example.com", 443)
        return [ip_address("93.184.215.14"), ip_address("2606:2800:21f:cb07:6820:80da:af6b:8b2c")]

    await check_webhook_url("https://hooks.example.com/x", resolver, AddressPolicy(), 5)
