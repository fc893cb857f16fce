"""The address policy: which hosts a webhook URL may reach.

A callback URL must not reach loopback, private, link-local, shared (CGNAT), multicast, reserved
or cloud metadata addresses, whether written as IPv4 or carried inside IPv6 (IPv4-mapped, NAT64
64:ff9b::/96, 6to4 2002::/16, Teredo 2001::/32). The host is resolved once per attempt, every
address it resolves to is checked, and the connection goes to a checked address (see
``sender``), so a DNS answer that changes between the check and the connection is never used.

Networks that the operator lists in COCOPILOT_WEBHOOK_ALLOWED_NETWORKS are allowed whatever
their kind.
"""

import asyncio
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from urllib.parse import SplitResult, urlsplit

from cocopilot.errors import InvalidRequest

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network
# Resolves a host name and port to its addresses, in the order to try them.
Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]

MAX_URL_LENGTH = 2048

# Addresses that cloud providers serve instance metadata or host services on. Most are also
# link-local or private; the ones that are not (Azure's 168.63.129.16) are listed for that reason.
METADATA_ADDRESSES = frozenset(
    ip_address(text)
    for text in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean
        "169.254.170.2",  # AWS ECS task metadata
        "fd00:ec2::254",  # AWS over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "168.63.129.16",  # Azure host services (WireServer)
        "192.0.0.192",  # Oracle Cloud
    )
)

SHARED_NETWORK = ip_network("100.64.0.0/10")  # RFC 6598 shared address space (CGNAT)
# RFC 6890 IETF protocol assignments: special-purpose, but Python counts most of it as global.
PROTOCOL_ASSIGNMENTS = ip_network("192.0.0.0/24")
NAT64_PREFIX = ip_network("64:ff9b::/96")  # RFC 6052 well-known prefix


class BlockedAddress(Exception):
    """A host resolved to an address that the policy blocks."""


@dataclass(frozen=True)
class AddressPolicy:
    allowed_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_settings(cls, networks: Iterable[str]) -> "AddressPolicy":
        try:
            parsed = tuple(ip_network(text, strict=False) for text in networks)
        except ValueError as exc:
            raise ValueError(f"invalid COCOPILOT_WEBHOOK_ALLOWED_NETWORKS entry: {exc}") from exc
        return cls(parsed)

    def is_allowed_network(self, address: IPAddress) -> bool:
        return any(address in network for network in self.allowed_networks)

    def blocked_reason(self, address: IPAddress) -> str | None:
        """Return why ``address`` must not be reached, or None when it may be."""
        if self.is_allowed_network(address):
            return None
        if isinstance(address, IPv6Address):
            embedded = embedded_ipv4(address)
            if embedded:
                return self._embedded_reason(address, embedded)
        return address_kind_reason(address)

    def _embedded_reason(self, address: IPv6Address, embedded: list[IPv4Address]) -> str | None:
        for inner in embedded:
            reason = self.blocked_reason(inner)
            if reason is not None:
                return f"{address} carries {inner}, which is {reason}"
        if address.ipv4_mapped is not None or address in NAT64_PREFIX:
            # The connection ends at the embedded IPv4 address, which passed.
            return None
        return address_kind_reason(address)

    def check(self, addresses: Iterable[IPAddress]) -> None:
        """Raise BlockedAddress unless every one of ``addresses`` may be reached."""
        for address in addresses:
            reason = self.blocked_reason(address)
            if reason is not None:
                raise BlockedAddress(f"{address} is {reason}")


def embedded_ipv4(address: IPv6Address) -> list[IPv4Address]:
    """Return the IPv4 addresses that an IPv6 address carries and would reach."""
    if address.ipv4_mapped is not None:
        return [address.ipv4_mapped]
    if address in NAT64_PREFIX:
        return [IPv4Address(int(address) & 0xFFFFFFFF)]
    if address.sixtofour is not None:
        return [address.sixtofour]
    if address.teredo is not None:
        server, client = address.teredo
        return [client, server]
    return []


def address_kind_reason(address: IPAddress) -> str | None:
    """Return the kind of a blocked address (such as "a loopback address"), or None."""
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address in SHARED_NETWORK:
        return "a shared (CGNAT) address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_reserved or address in PROTOCOL_ASSIGNMENTS:
        return "a reserved address"
    if address.is_private:
        return "a private address"
    if not address.is_global:
        return "not a globally routable address"
    return None


def parse_webhook_url(url: str) -> SplitResult:
    """Check the form of a callback URL: http or https, a host, no spaces or control characters."""
    if not url:
        raise InvalidRequest("url must not be empty")
    if len(url) > MAX_URL_LENGTH:
        raise InvalidRequest(f"url must be at most {MAX_URL_LENGTH} characters")
    if any(ch.isspace() or ord(ch) < 0x20 or ch == "\x7f" for ch in url):
        raise InvalidRequest("invalid url: it contains a space or a control character")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidRequest(f"invalid url {url!r}: {exc}") from exc
    if parts.scheme not in ("http", "https"):
        raise InvalidRequest(f"invalid url {url!r}: use an http or https URL")
    if not parts.hostname:
        raise InvalidRequest(f"invalid url {url!r}: the host is missing")
    if port == 0:
        raise InvalidRequest(f"invalid url {url!r}: port 0 cannot be reached")
    return parts


def url_port(parts: SplitResult) -> int:
    return parts.port or (443 if parts.scheme == "https" else 80)


async def system_resolver(host: str, port: int) -> list[IPAddress]:
    """Resolve ``host`` with the system resolver (getaddrinfo), keeping its order."""
    literal = parse_ip_literal(host)
    if literal is not None:
        return [literal]
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = ip_address(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


def parse_ip_literal(host: str) -> IPAddress | None:
    try:
        return ip_address(host.strip("[]"))
    except ValueError:
        return None


async def resolve_checked(
    resolver: Resolver, policy: AddressPolicy, host: str, port: int, timeout_s: float
) -> list[IPAddress]:
    """Resolve ``host`` once and check every address it has.

    Raises BlockedAddress when any address is blocked, and OSError (socket.gaierror) or
    TimeoutError when the host cannot be resolved.
    """
    async with asyncio.timeout(timeout_s):
        addresses = await resolver(host, port)
    if not addresses:
        raise socket.gaierror(f"{host} has no addresses")
    policy.check(addresses)
    return addresses


async def check_webhook_url(
    url: str, resolver: Resolver, policy: AddressPolicy, timeout_s: float
) -> None:
    """Raise InvalidRequest unless ``url`` is a well-formed URL whose host may be reached."""
    parts = parse_webhook_url(url)
    host = parts.hostname or ""
    try:
        await resolve_checked(resolver, policy, host, url_port(parts), timeout_s)
    except BlockedAddress as exc:
        raise InvalidRequest(
            f"invalid url: host {host} resolves to {exc}; webhooks may only reach public "
            "addresses unless COCOPILOT_WEBHOOK_ALLOWED_NETWORKS allows the network"
        ) from exc
    except (OSError, TimeoutError) as exc:
        raise InvalidRequest(
            f"invalid url: host {host} could not be resolved ({exc or 'timed out'}); "
            "check the host name"
        ) from exc
