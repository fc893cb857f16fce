"""One HTTP attempt of a delivery, made only to an address that the address policy checked.

Each attempt resolves the host once, checks every address, and connects to a checked address
while the request keeps the URL's Host header and TLS server name (the ``sni_hostname`` request
extension), so certificates are still verified against the host name. Redirects are not
followed and no proxy is used.

Requests go through httpcore (the transport under httpx) on connections that this module keeps
per webhook and per checked address, so a connection opened for one host name never carries
another's requests. httpx's own client and pool cost about 0.69 ms of CPU per request against
0.32 ms for this sender (bench/webhooks_bench.py, docs/benchmarks.md), which is why it is not
used.
"""

import asyncio
import base64
import email.utils
import ssl
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpcore
import httpx

from cocopilot.webhook_deliveries import DeliveryAttempt, ms_to_iso
from services.webhooks.addresses import (
    AddressPolicy,
    BlockedAddress,
    IPAddress,
    Resolver,
    resolve_checked,
)

MAX_RESPONSE_BYTES = 16 * 1024
RETRY_AFTER_STATUSES = frozenset({429, 503})
MAX_ENDPOINTS = 1000  # webhooks whose connections are kept, least recently used dropped first
KEEPALIVE_S = 30.0  # an idle connection is closed after this long
HTTP_ERRORS = (
    httpcore.TimeoutException,
    httpcore.NetworkError,
    httpcore.ProtocolError,
    httpcore.UnsupportedProtocol,
)


@dataclass(frozen=True)
class AttemptResult:
    attempted_at_ms: int
    latency_ms: float
    status_code: int | None = None
    error: str | None = None
    response_body: str | None = None
    response_truncated: bool = False
    address: str | None = None
    retry_after_s: float | None = None  # from a 429 or 503 response's Retry-After

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    def to_json(self) -> str:
        return DeliveryAttempt(
            attempted_at=ms_to_iso(self.attempted_at_ms),
            status_code=self.status_code,
            latency_ms=round(self.latency_ms, 1),
            error=self.error,
            response_body=self.response_body,
            response_truncated=self.response_truncated,
            address=self.address,
        ).to_json()


@dataclass(frozen=True)
class _Response:
    status_code: int
    headers: dict[bytes, bytes]  # names in lower case
    body: bytes
    truncated: bool
    address: IPAddress


class AttemptError(Exception):
    """An attempt that ended before any response, with a message for the delivery log."""


@dataclass
class Endpoint:
    """A webhook's parsed URL and its idle keep-alive connections, by checked address."""

    url: str
    target: httpx.URL
    idle: dict[IPAddress, list[httpcore.AsyncHTTPConnection]] = field(default_factory=dict)

    @property
    def host(self) -> str:
        return self.target.raw_host.decode("ascii")

    @property
    def port(self) -> int:
        return self.target.port or (443 if self.target.scheme == "https" else 80)

    def take_idle(self, address: IPAddress) -> httpcore.AsyncHTTPConnection | None:
        connections = self.idle.get(address, [])
        while connections:
            connection = connections.pop()
            if not connection.has_expired():
                return connection
        return None

    def keep(self, address: IPAddress, connection: httpcore.AsyncHTTPConnection) -> None:
        self.idle.setdefault(address, []).append(connection)

    async def aclose(self) -> None:
        for connections in self.idle.values():
            for connection in connections:
                await connection.aclose()
        self.idle.clear()


class Sender:
    def __init__(
        self,
        policy: AddressPolicy,
        resolver: Resolver,
        timeout_s: float,
        connect_timeout_s: float,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.policy = policy
        self.resolver = resolver
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.ssl_context = ssl_context or httpx.create_ssl_context()
        self._endpoints: OrderedDict[str, Endpoint] = OrderedDict()

    async def send(
        self, webhook_id: str, url: str, headers: dict[str, str], body: bytes
    ) -> AttemptResult:
        """POST ``body`` to ``url``; every failure becomes a result, never an exception."""
        attempted_at_ms = time.time_ns() // 1_000_000
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout_s):
                response = await self._post(webhook_id, url, headers, body)
        except AttemptError as exc:
            return _failed(attempted_at_ms, started, str(exc))
        except TimeoutError:
            return _failed(attempted_at_ms, started, f"timed out after {self.timeout_s:g} s")
        except HTTP_ERRORS as exc:
            return _failed(attempted_at_ms, started, describe_http_error(exc))
        return _responded(attempted_at_ms, started, response)

    async def _post(
        self, webhook_id: str, url: str, headers: dict[str, str], body: bytes
    ) -> _Response:
        endpoint = await self._endpoint(webhook_id, url)
        addresses = await self._resolve(endpoint)
        error: Exception | None = None
        for address in addresses:
            try:
                return await self._post_to(endpoint, address, headers, body)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc  # try the host's next address
        assert error is not None  # resolve_checked returns at least one address
        raise error

    async def _post_to(
        self, endpoint: Endpoint, address: IPAddress, headers: dict[str, str], body: bytes
    ) -> _Response:
        connection = endpoint.take_idle(address) or self._connect(endpoint, address)
        request = self._pinned_request(endpoint, address, headers, body)
        try:
            response = await connection.handle_async_request(request)
            try:
                content, truncated = await read_limited(response)
            finally:
                await response.aclose()
        except BaseException:
            await connection.aclose()
            raise
        if connection.is_available():
            endpoint.keep(address, connection)
        else:
            await connection.aclose()
        headers_found = {name.lower(): value for name, value in response.headers}
        return _Response(response.status, headers_found, content, truncated, address)

    def _connect(self, endpoint: Endpoint, address: IPAddress) -> httpcore.AsyncHTTPConnection:
        origin = httpcore.Origin(endpoint.target.raw_scheme, str(address).encode(), endpoint.port)
        return httpcore.AsyncHTTPConnection(
            origin, ssl_context=self.ssl_context, keepalive_expiry=KEEPALIVE_S
        )

    def _pinned_request(
        self, endpoint: Endpoint, address: IPAddress, headers: dict[str, str], body: bytes
    ) -> httpcore.Request:
        """Build a request to ``address`` that names the URL's host to the server."""
        target = endpoint.target
        all_headers = [(name.encode(), value.encode()) for name, value in headers.items()]
        all_headers += [
            (b"host", target.netloc),  # host[:port] as in the URL, without user info
            (b"content-length", str(len(body)).encode()),
        ]
        if target.userinfo:
            all_headers.append((b"authorization", basic_auth(target)))
        extensions: dict[str, object] = {
            "timeout": {
                "connect": self.connect_timeout_s,
                "read": self.timeout_s,
                "write": self.timeout_s,
                "pool": self.timeout_s,
            }
        }
        if target.scheme == "https":
            extensions["sni_hostname"] = endpoint.host
        url = httpcore.URL(
            scheme=target.raw_scheme,
            host=str(address).encode(),
            port=endpoint.port,
            target=target.raw_path,
        )
        return httpcore.Request(
            b"POST", url, headers=all_headers, content=body, extensions=extensions
        )

    async def _resolve(self, endpoint: Endpoint) -> list[IPAddress]:
        host = endpoint.host
        try:
            return await resolve_checked(
                self.resolver, self.policy, host, endpoint.port, self.connect_timeout_s
            )
        except BlockedAddress as exc:
            raise AttemptError(f"blocked: {host} resolves to {exc}") from exc
        except TimeoutError as exc:
            raise AttemptError(
                f"DNS lookup of {host} timed out after {self.connect_timeout_s:g} s"
            ) from exc
        except OSError as exc:
            raise AttemptError(f"DNS lookup of {host} failed: {exc}") from exc

    async def _endpoint(self, webhook_id: str, url: str) -> Endpoint:
        endpoint = self._endpoints.get(webhook_id)
        if endpoint is not None and endpoint.url == url:
            self._endpoints.move_to_end(webhook_id)
            return endpoint
        if endpoint is not None:
            await endpoint.aclose()
        endpoint = Endpoint(url, httpx.URL(url))
        self._endpoints[webhook_id] = endpoint
        if len(self._endpoints) > MAX_ENDPOINTS:
            _, oldest = self._endpoints.popitem(last=False)
            await oldest.aclose()
        return endpoint

    async def aclose(self) -> None:
        endpoints = list(self._endpoints.values())
        self._endpoints.clear()
        for endpoint in endpoints:
            await endpoint.aclose()


def basic_auth(target: httpx.URL) -> bytes:
    """Return the Authorization header value for the user and password written in a URL."""
    credentials = f"{target.username}:{target.password}".encode()
    return b"Basic " + base64.b64encode(credentials)


async def read_limited(response: httpcore.Response) -> tuple[bytes, bool]:
    """Read at most MAX_RESPONSE_BYTES of the body; return it and whether more was left."""
    content = bytearray()
    async for chunk in response.aiter_stream():
        content += chunk
        if len(content) > MAX_RESPONSE_BYTES:
            return bytes(content[:MAX_RESPONSE_BYTES]), True
    return bytes(content), False


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Return the delay in seconds that a Retry-After header requests (as seconds or as an HTTP
    date), or None when the value is invalid."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max((moment - now).total_seconds(), 0.0)


def describe_http_error(exc: Exception) -> str:
    if isinstance(exc, httpcore.ConnectTimeout):
        return "connect timed out"
    if isinstance(exc, httpcore.TimeoutException):
        return "timed out waiting for the response"
    if isinstance(exc, httpcore.ConnectError):
        return f"connection failed: {exc or 'refused'}"
    return f"request failed: {type(exc).__name__}: {exc}"


def _elapsed_ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def _failed(attempted_at_ms: int, started: float, error: str) -> AttemptResult:
    return AttemptResult(attempted_at_ms, _elapsed_ms(started), error=error)


def _responded(attempted_at_ms: int, started: float, response: _Response) -> AttemptResult:
    status = response.status_code
    retry_after_s = None
    if status in RETRY_AFTER_STATUSES:
        retry_after = response.headers.get(b"retry-after", b"").decode("latin-1")
        retry_after_s = parse_retry_after(retry_after, datetime.now(UTC))
    return AttemptResult(
        attempted_at_ms,
        _elapsed_ms(started),
        status_code=status,
        error=describe_status(status, response.headers),
        response_body=response.body.decode("utf-8", errors="replace"),
        response_truncated=response.truncated,
        address=str(response.address),
        retry_after_s=retry_after_s,
    )


def describe_status(status: int, headers: dict[bytes, bytes]) -> str | None:
    """Return why a response counts as a failure, or None for a 2xx."""
    if 200 <= status < 300:
        return None
    if 300 <= status < 400:
        location = headers.get(b"location", b"no Location header").decode("latin-1")
        return (
            f"redirect {status} to {location} not followed: webhooks are sent only to the "
            "registered URL, so register the new URL instead"
        )
    if status == 410:
        return "410 Gone: the endpoint asked to stop, so the webhook is disabled"
    return f"HTTP {status}: only 2xx counts as delivered"
