"""Request latency histograms of the api, served by ``GET /metrics``."""

import re
import time

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Seconds; finer than prometheus_client's default at the low end, where most api requests land.
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# Other methods share one label, so a client cannot add label values at will.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def install_request_metrics(app: FastAPI) -> CollectorRegistry:
    """Give ``app`` a registry in ``app.state.prometheus_registry`` and time every request."""
    registry = CollectorRegistry(auto_describe=True)
    histogram = Histogram(
        "cocopilot_api_request_duration_seconds",
        "Time from receiving an HTTP request to sending the end of its response",
        ["method", "route", "status"],
        registry=registry,
        buckets=LATENCY_BUCKETS_S,
    )
    app.state.prometheus_registry = registry
    app.add_middleware(RequestLatency, histogram=histogram)
    return registry


class RequestLatency:
    """Observe each HTTP request's duration by method, route template and response status.

    The route label is the path template (``/api/v1/workers/{name}``), or ``unmatched`` when no
    route matched, so the label values stay a fixed set.
    """

    def __init__(self, app: ASGIApp, histogram: Histogram) -> None:
        self.app = app
        self.histogram = histogram

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started_s = time.perf_counter()
        # An exception that escapes the app becomes a 500 in the outer error middleware.
        status = 500

        async def send_recording_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_recording_status)
        finally:
            labels = (method_label(scope["method"]), route_label(scope), str(status))
            self.histogram.labels(*labels).observe(time.perf_counter() - started_s)


def method_label(method: str) -> str:
    return method if method in KNOWN_METHODS else "other"


def route_label(scope: Scope) -> str:
    """Return the path template of the matched route, prefix included, or ``unmatched``."""
    # The router stores the matched route in the scope, which the middleware shares.
    route = scope.get("route")
    template = getattr(route, "path", None)
    if not isinstance(template, str):
        return "unmatched"
    return _included_prefix(scope["path"], getattr(route, "path_regex", None)) + template


def _included_prefix(path: str, route_regex: re.Pattern[str] | None) -> str:
    """Return the prefix of the router that contains the route, from the request path.

    FastAPI 0.165 keeps an included router's routes under their own path (``/workers/{name}``),
    so the prefix (``/api/v1``) is the head of the path before the part the route matches. The
    api's prefixes are fixed text, so the label never takes a value from the request.
    """
    if route_regex is None:
        return ""
    for index, character in enumerate(path):
        if character == "/" and route_regex.fullmatch(path[index:]):
            return path[:index]
    return ""
