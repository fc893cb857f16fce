"""The bearer token: with COCOPILOT_API_TOKEN set, every /api/v1 route needs it."""

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from redis import Redis as SyncRedis

from services.api import security
from tests.servers import Servers
from tests.stack import Stack, make_stack, running_stack, stop_all

TOKEN = "s3cret-token-for-tests"
MISSING = "missing Authorization header: send 'Authorization: Bearer <token>'"
WRONG_SCHEME = "the Authorization header must use the Bearer scheme: 'Bearer <token>'"
INVALID = "invalid API token"


@pytest.fixture(scope="module")
def stack(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    SyncRedis.from_url(servers.redis_url).flushdb()
    folder = tmp_path_factory.mktemp("auth")
    with running_stack(servers, folder, {"COCOPILOT_API_TOKEN": TOKEN}) as running:
        yield running


@pytest.fixture(scope="module")
def operations(stack: Stack) -> list[tuple[str, str]]:
    """Return every /api/v1 operation of the OpenAPI document as (method, concrete path)."""
    document = httpx.get(f"{stack.base_url}/openapi.json").json()
    found = []
    for template, item in document["paths"].items():
        if template.startswith("/api/v1"):
            path = re.sub(r"\{[^}]+\}", "x", template)
            found += [(method.upper(), path) for method in item]
    return found


def assert_unauthorized(response: httpx.Response, message: str) -> None:
    assert response.status_code == 401, response.text
    assert response.json() == {"error": {"status": 401, "message": message}}
    assert response.headers["www-authenticate"] == "Bearer"


def test_every_route_needs_token(stack: Stack, operations: list[tuple[str, str]]) -> None:
    assert len(operations) >= 20
    with httpx.Client(base_url=stack.base_url) as client:
        for method, path in operations:
            response = client.request(method, path, json={})
            assert response.status_code == 401, f"{method} {path}: {response.status_code}"
            assert response.json()["error"]["message"] == MISSING, f"{method} {path}"


@pytest.mark.parametrize(
    ("authorization", "message"),
    [
        (f"Bearer {TOKEN}x", INVALID),
        (f"Bearer {TOKEN[:-1]}", INVALID),
        ("Bearer", INVALID),
        (f"Basic {TOKEN}", WRONG_SCHEME),
        (TOKEN, WRONG_SCHEME),
        (f"Token {TOKEN}", WRONG_SCHEME),
    ],
    ids=[
        "token-longer",
        "token-shorter",
        "token-empty",
        "scheme-basic",
        "no-scheme",
        "scheme-token",
    ],
)
def test_wrong_credentials_rejected(stack: Stack, authorization: str, message: str) -> None:
    response = httpx.get(
        f"{stack.base_url}/api/v1/workers", headers={"Authorization": authorization}
    )

    assert_unauthorized(response, message)


def test_missing_header_rejected(stack: Stack) -> None:
    assert_unauthorized(httpx.get(f"{stack.base_url}/api/v1/status"), MISSING)


def test_token_checked_before_body(stack: Stack) -> None:
    # A caller without the token learns nothing: not that its JSON is invalid, not that a
    # path does not exist, not that its body is too large.
    invalid_json = httpx.post(
        f"{stack.base_url}/api/v1/workers",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    unknown_path = httpx.get(f"{stack.base_url}/api/v1/no-such-thing")
    oversized = httpx.post(f"{stack.base_url}/api/v1/workers", content=b" " * (2 * 1024 * 1024))

    assert_unauthorized(invalid_json, MISSING)
    assert_unauthorized(unknown_path, MISSING)
    assert_unauthorized(oversized, MISSING)


def test_right_token_accepted(stack: Stack) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    response = httpx.get(f"{stack.base_url}/api/v1/workers", headers=headers)
    lower_case_scheme = httpx.get(
        f"{stack.base_url}/api/v1/config", headers={"Authorization": f"bearer {TOKEN}"}
    )

    assert response.status_code == 200, response.text
    assert response.json() == []
    assert lower_case_scheme.status_code == 200


def test_metrics_scrape_needs_token(stack: Stack) -> None:
    # Outside /api/v1, so the route's own dependency checks the token, with the same messages.
    missing = httpx.get(f"{stack.base_url}/metrics")
    wrong = httpx.get(f"{stack.base_url}/metrics", headers={"Authorization": "Bearer nope"})
    right = httpx.get(f"{stack.base_url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})

    assert_unauthorized(missing, MISSING)
    assert_unauthorized(wrong, INVALID)
    assert right.status_code == 200


def test_health_stays_open(stack: Stack) -> None:
    response = httpx.get(f"{stack.base_url}/healthz")

    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_openapi_declares_bearer(stack: Stack) -> None:
    document = httpx.get(f"{stack.base_url}/openapi.json").json()

    assert document["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert document["paths"]["/api/v1/workers"]["get"]["security"] == [{"HTTPBearer": []}]
    assert "security" not in document["paths"]["/healthz"]["get"]


def test_token_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[bytes, bytes]] = []
    original = security.hmac.compare_digest

    def recording_compare(given: bytes, expected: bytes) -> bool:
        compared.append((given, expected))
        return original(given, expected)

    monkeypatch.setattr(security.hmac, "compare_digest", recording_compare)

    problem = security.token_problem(b"Bearer guess", TOKEN.encode())

    assert problem == INVALID
    assert compared == [(b"guess", TOKEN.encode())]


@pytest.mark.parametrize(
    ("host", "token", "warns"),
    [("0.0.0.0", None, True), ("0.0.0.0", TOKEN, False), ("127.0.0.1", None, False)],
    ids=["all-interfaces-no-token", "all-interfaces-token", "loopback-no-token"],
)
def test_open_api_warns_at_start(
    servers: Servers, tmp_path: Path, host: str, token: str | None, warns: bool
) -> None:
    # The api alone. With 0.0.0.0 it binds every interface for the length of the test, and the
    # test sends its requests to 127.0.0.1 only.
    stack = make_stack(servers, tmp_path, {"COCOPILOT_HOST": host})
    stack.env.pop("COCOPILOT_API_TOKEN", None)
    if token:
        stack.env["COCOPILOT_API_TOKEN"] = token
    stack.start("api")
    try:
        stack.wait_api()
    finally:
        stop_all(stack)
    log = (stack.logs_dir / "api.log").read_text()

    assert "api started" in log
    warning = "COCOPILOT_API_TOKEN is not set and the api listens beyond loopback"
    assert (warning in log) == warns
    if warns:
        assert f"host={host}" in log
