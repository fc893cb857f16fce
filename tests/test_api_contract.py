"""The api's contract: what it returns for good requests, and that bad ones get a 4xx in the
error format and change nothing, neither in Redis nor in the events stream."""

import asyncio
import contextlib
import json
import re
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from nats.js.errors import NotFoundError
from redis import Redis as SyncRedis

from cocopilot import keys, subjects, validation
from cocopilot.bus import ensure_events_stream
from cocopilot.errors import InvalidRequest
from tests.servers import Servers, free_port
from tests.stack import Stack, running_stack, sleeping_agent_env

SETTLE_TIMEOUT_S = 20.0
ONE_MIB = 1024 * 1024


# State


# Keys that the services renew on a timer, whatever the requests: liveness, not state.
RENEWED_KEYS = (keys.SERVICE_HEARTBEAT_PATTERN, keys.merge_queue_lease("*"))


def redis_state(redis: SyncRedis) -> dict[bytes, bytes | None]:
    """Return every ``cocopilot:`` key with its serialized value, RENEWED_KEYS left out."""
    names = sorted(key.decode() for key in redis.scan_iter(match=f"{keys.PREFIX}:*"))
    kept = [name for name in names if not any(fnmatchcase(name, skip) for skip in RENEWED_KEYS)]
    return {name.encode(): redis.dump(name) for name in kept}


async def _stream_state(nats_url: str) -> tuple[int, list[tuple[str, int, int]]]:
    """Return the stream's last sequence and each consumer's pending and unacked counts."""
    client = await nats.connect(nats_url)
    try:
        js = client.jetstream()
        stream = await js.stream_info(subjects.EVENTS_STREAM)
        consumers = await js.consumers_info(subjects.EVENTS_STREAM)
        counts = [
            (str(info.name), info.num_pending or 0, info.num_ack_pending or 0) for info in consumers
        ]
        return stream.state.last_seq, sorted(counts)
    finally:
        await client.close()


def stream_state(nats_url: str) -> tuple[int, list[tuple[str, int, int]]]:
    return asyncio.run(_stream_state(nats_url))


async def _reset_events_stream(nats_url: str) -> None:
    client = await nats.connect(nats_url)
    try:
        with contextlib.suppress(NotFoundError):
            await client.jetstream().delete_stream(subjects.EVENTS_STREAM)
        await ensure_events_stream(client)
    finally:
        await client.close()


@dataclass
class Contract:
    """A running stack with two repositories, a working worker ("Busy", in "other") and a
    webhook, shared by the table of bad requests."""

    stack: Stack
    redis: SyncRedis
    nats_url: str
    client: httpx.Client

    def wait_settled(self) -> None:
        """Wait until every event is consumed and acked and no worker is starting."""
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while True:
            _, consumers = stream_state(self.nats_url)
            busy = [name for name, pending, unacked in consumers if pending or unacked]
            workers = self.client.get("/api/v1/workers").json()
            starting = [worker["name"] for worker in workers if worker["status"] == "starting"]
            if not busy and not starting:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"not settled: consumers {busy}, starting {starting}")
            time.sleep(0.05)

    def state(self) -> tuple[dict[bytes, bytes | None], int]:
        return redis_state(self.redis), stream_state(self.nats_url)[0]


@pytest.fixture(scope="module")
def contract(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Contract]:
    redis = SyncRedis.from_url(servers.redis_url)
    redis.flushdb()
    asyncio.run(_reset_events_stream(servers.nats_url))
    folder = tmp_path_factory.mktemp("contract")
    with running_stack(servers, folder, sleeping_agent_env(folder)) as stack:
        stack.register_repository("app")
        stack.register_repository("other")
        with stack.client() as client:
            spawn = {"task": "Stay busy", "repoName": "other", "name": "Busy", "agent": "command"}
            assert client.post("/api/v1/workers", json=spawn).status_code == 201
            hook = {"url": f"http://127.0.0.1:{free_port()}/hook", "events": ["pr.merged"]}
            assert client.post("/api/v1/webhooks", json=hook).status_code == 201, "webhook"
            contract = Contract(stack, redis, servers.nats_url, client)
            contract.wait_settled()
            yield contract
    redis.close()


# The table of bad requests


@dataclass
class Bad:
    """A bad request and the error it must get."""

    id: str
    method: str
    path: str
    status: int
    message: str
    json: Any = None
    content: bytes | Iterable[bytes] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    # Most messages are checked whole; a few contain a temporary path or a list that may grow.
    exact: bool = True

    def send(self, client: httpx.Client) -> httpx.Response:
        if self.json is not None:
            return client.request(self.method, self.path, json=self.json, headers=self.headers)
        return client.request(self.method, self.path, content=self.content, headers=self.headers)


SPAWN = "/api/v1/workers"
JSON = {"Content-Type": "application/json"}
NAME_RULE = "use letters, digits, '.', '_' and '-', starting with a letter or digit"
SURROGATE_RULE = "must be valid Unicode: it contains a lone surrogate (\\ud800 to \\udfff)"


def spawn(**fields: Any) -> dict[str, Any]:
    return {"task": "Add tests", "repoName": "app", **fields}


def oversized_chunks() -> Iterator[bytes]:
    # A generator body goes out chunked, with no Content-Length to reject it by.
    for _ in range(17):
        yield b" " * (ONE_MIB // 16)


BAD_REQUESTS = [
    # The body as a whole
    Bad(
        "invalid-json",
        "POST",
        SPAWN,
        400,
        "request body is not valid JSON: Expecting property name enclosed in double quotes "
        "at character 1",
        content=b"{task: 1}",
        headers=JSON,
    ),
    Bad("body-array", "POST", SPAWN, 400, "request body must be a JSON object", json=[1, 2]),
    Bad("body-string", "POST", SPAWN, 400, "request body must be a JSON object", json="task"),
    Bad(
        "body-null",
        "POST",
        SPAWN,
        400,
        "request body must be a JSON object",
        content=b"null",
        headers=JSON,
    ),
    Bad("body-missing", "POST", SPAWN, 400, "request body is required", content=b""),
    Bad(
        "body-form-encoded",
        "POST",
        SPAWN,
        400,
        "request body must be JSON, sent with Content-Type: application/json",
        content=b"task=x&repoName=app",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    ),
    Bad(
        "body-over-1MiB",
        "POST",
        SPAWN,
        413,
        f"request body must be at most {ONE_MIB} bytes",
        json=spawn(task="x" * ONE_MIB),
    ),
    Bad(
        "body-over-1MiB-chunked",
        "POST",
        SPAWN,
        413,
        f"request body must be at most {ONE_MIB} bytes",
        content=oversized_chunks(),
        headers=JSON,
    ),
    # Spawn fields
    Bad("task-missing", "POST", SPAWN, 400, "task is required", json={"repoName": "app"}),
    Bad("repoName-missing", "POST", SPAWN, 400, "repoName is required", json={"task": "x"}),
    Bad(
        "task-not-string",
        "POST",
        SPAWN,
        400,
        "invalid task: Input should be a valid string",
        json=spawn(task=5),
    ),
    Bad(
        "task-empty",
        "POST",
        SPAWN,
        400,
        "task must not be empty or only white space",
        json=spawn(task=""),
    ),
    Bad(
        "task-blank",
        "POST",
        SPAWN,
        400,
        "task must not be empty or only white space",
        json=spawn(task=" \t\n"),
    ),
    Bad(
        "task-over-64KiB",
        "POST",
        SPAWN,
        400,
        "task must be at most 65536 bytes as UTF-8",
        json=spawn(task="é" * 32769),
    ),
    Bad(
        "task-with-NUL",
        "POST",
        SPAWN,
        400,
        "task must not contain NUL characters",
        json=spawn(task="a\x00b"),
    ),
    Bad(
        "repoName-empty", "POST", SPAWN, 400, "repoName must not be empty", json=spawn(repoName="")
    ),
    Bad(
        "repoName-not-tracked",
        "POST",
        SPAWN,
        404,
        'Repository "nope" not found',
        json=spawn(repoName="nope"),
    ),
    Bad("field-unknown", "POST", SPAWN, 400, "unknown field 'color'", json=spawn(color="red")),
    Bad(
        "field-snake-case",
        "POST",
        SPAWN,
        400,
        "repoName is required",
        json={"task": "x", "repo_name": "app"},
    ),
    Bad(
        "name-with-slash",
        "POST",
        SPAWN,
        400,
        f"invalid name 'a/b': {NAME_RULE}",
        json=spawn(name="a/b"),
    ),
    Bad(
        "name-dots-only",
        "POST",
        SPAWN,
        400,
        f"invalid name '...': {NAME_RULE}",
        json=spawn(name="..."),
    ),
    Bad(
        "name-dotdot", "POST", SPAWN, 400, f"invalid name '..': {NAME_RULE}", json=spawn(name="..")
    ),
    Bad(
        "name-dotdot-inside",
        "POST",
        SPAWN,
        400,
        "invalid name 'a..b': no '..' and no trailing '.' or '.lock'",
        json=spawn(name="a..b"),
    ),
    Bad(
        "name-leading-dash",
        "POST",
        SPAWN,
        400,
        f"invalid name '-rf': {NAME_RULE}",
        json=spawn(name="-rf"),
    ),
    Bad(
        "name-control-character",
        "POST",
        SPAWN,
        400,
        f"invalid name 'a\\x07b': {NAME_RULE}",
        json=spawn(name="a\x07b"),
    ),
    Bad(
        "name-65-characters",
        "POST",
        SPAWN,
        400,
        "name must be at most 64 characters",
        json=spawn(name="a" * 65),
    ),
    Bad(
        "name-of-built-in-agent",
        "POST",
        SPAWN,
        400,
        "name 'supervisor' is the name of a built-in agent; choose another",
        json=spawn(name="supervisor"),
    ),
    Bad(
        "name-taken-in-other-repository",
        "POST",
        SPAWN,
        409,
        'Worker "Busy" already exists',
        json=spawn(name="Busy"),
    ),
    Bad(
        "name-not-string",
        "POST",
        SPAWN,
        400,
        "invalid name: Input should be a valid string",
        json=spawn(name=["Snickers"]),
    ),
    Bad(
        "branch-dotdot",
        "POST",
        SPAWN,
        400,
        "invalid branch 'a..b': contains '..' or '//'",
        json=spawn(branch="a..b"),
    ),
    Bad(
        "branch-HEAD",
        "POST",
        SPAWN,
        400,
        "invalid branch 'HEAD': HEAD is not a branch name",
        json=spawn(branch="HEAD"),
    ),
    Bad(
        "branch-leading-dash",
        "POST",
        SPAWN,
        400,
        "invalid branch '--orphan': starts with '-'",
        json=spawn(branch="--orphan"),
    ),
    Bad(
        "branch-with-space",
        "POST",
        SPAWN,
        400,
        "invalid branch 'my branch': contains a space, a control character or one of "
        "~ ^ : ? * [ \\",
        json=spawn(branch="my branch"),
    ),
    Bad(
        "branch-lock-suffix",
        "POST",
        SPAWN,
        400,
        "invalid branch 'main.lock': a part starts with '.' or ends with '.lock'",
        json=spawn(branch="main.lock"),
    ),
    Bad(
        "branch-not-in-repository",
        "POST",
        SPAWN,
        400,
        'branch "nope" not found in repository "app"',
        json=spawn(branch="nope"),
    ),
    Bad(
        "model-with-space",
        "POST",
        SPAWN,
        400,
        "invalid model 'gpt 5': use up to 200 letters, digits and '.', '_', ':', '/', '@', "
        "'+', '-', starting with a letter or digit",
        json=spawn(model="gpt 5"),
    ),
    Bad(
        "agent-unknown",
        "POST",
        SPAWN,
        400,
        "unknown agent 'nope'; available agents:",
        json=spawn(agent="nope"),
        exact=False,
    ),
    Bad(
        "repository-spawn-untracked",
        "POST",
        "/api/v1/repositories/nope/workers",
        404,
        'Repository "nope" not found',
        json={"task": "x"},
    ),
    Bad(
        "repository-spawn-repoName-in-body",
        "POST",
        "/api/v1/repositories/app/workers",
        400,
        "unknown field 'repoName'",
        json={"task": "x", "repoName": "app"},
    ),
    # Repositories
    Bad(
        "url-leading-dash",
        "POST",
        "/api/v1/repositories",
        400,
        "invalid url '--upload-pack=touch x': starts with '-' or contains a control character",
        json={"url": "--upload-pack=touch x"},
    ),
    Bad(
        "url-scheme-ftp",
        "POST",
        "/api/v1/repositories",
        400,
        "invalid url 'ftp://127.0.0.1/app.git': use an https, http, ssh or git URL, "
        "user@host:path, or a local path",
        json={"url": "ftp://127.0.0.1/app.git"},
    ),
    Bad(
        "url-scheme-ext",
        "POST",
        "/api/v1/repositories",
        400,
        "invalid url 'ext::sh -c touch% x': use an https, http, ssh or git URL, "
        "user@host:path, or a local path",
        json={"url": "ext::sh -c touch% x"},
    ),
    Bad(
        "url-local-outside-roots",
        "POST",
        "/api/v1/repositories",
        400,
        "invalid url '/etc': a local repository must be inside one of the folders in "
        "COCOPILOT_LOCAL_REPO_ROOTS",
        json={"url": "/etc"},
        exact=False,
    ),
    Bad(
        "url-empty", "POST", "/api/v1/repositories", 400, "url must not be empty", json={"url": ""}
    ),
    Bad("url-missing", "POST", "/api/v1/repositories", 400, "url is required", json={}),
    Bad(
        "repository-name-taken",
        "POST",
        "/api/v1/repositories",
        409,
        'Repository "app" is already tracked',
        json={"url": "https://127.0.0.1/app.git", "name": "app"},
    ),
    Bad(
        "defaultBranch-dotdot",
        "POST",
        "/api/v1/repositories",
        400,
        "invalid defaultBranch 'a..b': contains '..' or '//'",
        json={"url": "https://127.0.0.1/app.git", "defaultBranch": "a..b"},
    ),
    Bad(
        "repository-unknown",
        "GET",
        "/api/v1/repositories/nope",
        404,
        'Repository "nope" not found',
    ),
    Bad(
        "repository-delete-unknown",
        "DELETE",
        "/api/v1/repositories/nope",
        404,
        'Repository "nope" not found',
    ),
    Bad(
        "repository-name-with-colon",
        "GET",
        "/api/v1/repositories/app:workers",
        400,
        f"invalid repoName 'app:workers': {NAME_RULE}",
    ),
    Bad(
        "logs-repository-name-with-colon",
        "GET",
        "/api/v1/repositories/app:workers/workers/Busy/logs",
        400,
        f"invalid repoName 'app:workers': {NAME_RULE}",
    ),
    Bad(
        "prs-repository-name-with-colon",
        "GET",
        "/api/v1/repositories/app:workers/prs",
        400,
        f"invalid repoName 'app:workers': {NAME_RULE}",
    ),
    Bad("logs-unknown-worker", "GET", "/api/v1/workers/Nope/logs", 404, 'Worker "Nope" not found'),
    # Workers
    Bad("worker-unknown", "GET", "/api/v1/workers/Nope", 404, 'Worker "Nope" not found'),
    Bad("worker-delete-unknown", "DELETE", "/api/v1/workers/Nope", 404, 'Worker "Nope" not found'),
    Bad("worker-name-encoded-slash", "GET", "/api/v1/workers/a%2Fb", 404, "Not Found"),
    Bad(
        "worker-in-other-repository",
        "GET",
        "/api/v1/repositories/app/workers/Busy",
        404,
        'Worker "Busy" not found in repository "app"',
    ),
    Bad(
        "nudge-unknown-worker",
        "POST",
        "/api/v1/repositories/app/workers/Nope/nudge",
        404,
        'Worker "Nope" not found in repository "app"',
    ),
    Bad(
        "nudge-body-not-object",
        "POST",
        "/api/v1/repositories/other/workers/Busy/nudge",
        400,
        "request body must be a JSON object",
        json=["go on"],
    ),
    Bad(
        "nudge-message-blank",
        "POST",
        "/api/v1/repositories/other/workers/Busy/nudge",
        400,
        "message must not be empty or only white space",
        json={"message": "  "},
    ),
    Bad(
        "nudge-message-control-key",
        "POST",
        "/api/v1/repositories/other/workers/Busy/nudge",
        400,
        "message must not contain control characters other than tab and newline; in the "
        "agent's terminal they would act as keys such as Ctrl-C",
        json={"message": "stop\u0003"},
    ),
    # Agents
    Bad(
        "message-untracked-repository",
        "POST",
        "/api/v1/repositories/nope/agents/supervisor/message",
        404,
        'Repository "nope" not found',
        json={"text": "hello"},
    ),
    Bad(
        "message-without-text",
        "POST",
        "/api/v1/repositories/app/agents/supervisor/message",
        400,
        "a text message needs text",
        json={"type": "text"},
    ),
    Bad(
        "message-text-and-payload",
        "POST",
        "/api/v1/repositories/app/agents/supervisor/message",
        400,
        "give text or payload, not both",
        json={"type": "note", "text": "a", "payload": {"b": 1}},
    ),
    Bad(
        "message-type-invalid",
        "POST",
        "/api/v1/repositories/app/agents/supervisor/message",
        400,
        "invalid type: String should match pattern '^[a-z][a-z0-9-]{0,31}$'",
        json={"type": "Nudge All"},
    ),
    Bad(
        "messages-limit-zero",
        "GET",
        "/api/v1/repositories/app/agents/supervisor/messages?limit=0",
        400,
        "invalid query parameter limit: Input should be greater than or equal to 1",
    ),
    Bad(
        "messages-limit-not-number",
        "GET",
        "/api/v1/repositories/app/agents/supervisor/messages?limit=ten",
        400,
        "invalid query parameter limit: Input should be a valid integer, unable to parse "
        "string as an integer",
    ),
    # Webhooks
    Bad(
        "webhook-event-unknown",
        "POST",
        "/api/v1/webhooks",
        400,
        "invalid events: unknown event 'worker.exploded'; valid events: worker.created, "
        "worker.updated, worker.completed, worker.failed, worker.removed, pr.created, "
        "pr.merged, ci.failed",
        json={"url": "http://127.0.0.1:9/hook", "events": ["worker.exploded"]},
    ),
    Bad(
        "webhook-events-empty",
        "POST",
        "/api/v1/webhooks",
        400,
        "invalid events: events must list at least one event",
        json={"url": "http://127.0.0.1:9/hook", "events": []},
    ),
    Bad(
        "webhook-url-missing",
        "POST",
        "/api/v1/webhooks",
        400,
        "url is required",
        json={"events": ["pr.merged"]},
    ),
    Bad(
        "webhook-delete-unknown",
        "DELETE",
        "/api/v1/webhooks/nope",
        404,
        'Webhook "nope" not found',
    ),
    # Configuration
    Bad(
        "config-key-unknown",
        "PATCH",
        "/api/v1/config",
        400,
        "unknown config key 'maxWorkersPerRepository'",
        json={"maxWorkersPerRepository": 5},
    ),
    Bad(
        "config-snake-case-key",
        "PATCH",
        "/api/v1/config",
        400,
        "unknown config key 'max_workers_per_repo'",
        json={"max_workers_per_repo": 5},
    ),
    Bad(
        "config-number-as-string",
        "PATCH",
        "/api/v1/config",
        400,
        "invalid config value for 'maxWorkersPerRepo': Input should be a valid integer",
        json={"maxWorkersPerRepo": "5"},
    ),
    Bad(
        "config-below-minimum",
        "PATCH",
        "/api/v1/config",
        400,
        "invalid config value for 'maxWorkersPerRepo': Input should be greater than or equal to 1",
        json={"maxWorkersPerRepo": 0},
    ),
    Bad(
        "config-null",
        "PATCH",
        "/api/v1/config",
        400,
        "invalid config value for 'maxWorkers': Input should be a valid integer",
        json={"maxWorkers": None},
    ),
    Bad(
        "config-defaultAgent-with-slash",
        "PATCH",
        "/api/v1/config",
        400,
        f"invalid defaultAgent '../demo': {NAME_RULE}",
        json={"defaultAgent": "../demo"},
    ),
    Bad(
        "config-body-array",
        "PATCH",
        "/api/v1/config",
        400,
        "request body must be a JSON object",
        json=[{"maxWorkers": 1}],
    ),
    # Lone surrogates: valid JSON escapes with no UTF-8 form
    Bad(
        "branch-lone-surrogate",
        "POST",
        SPAWN,
        400,
        f"branch {SURROGATE_RULE}",
        content=b'{"task": "x", "repoName": "app", "branch": "main\\ud800"}',
        headers=JSON,
    ),
    Bad(
        "url-lone-surrogate",
        "POST",
        "/api/v1/repositories",
        400,
        f"url {SURROGATE_RULE}",
        content=b'{"url": "https://127.0.0.1/\\udfff.git"}',
        headers=JSON,
    ),
    Bad(
        "payload-key-lone-surrogate",
        "POST",
        "/api/v1/repositories/app/agents/supervisor/message",
        400,
        f"payload {SURROGATE_RULE}",
        content=b'{"type": "nudge-all", "payload": {"\\ud800": 1}}',
        headers=JSON,
    ),
    Bad(
        "webhook-url-lone-surrogate",
        "POST",
        "/api/v1/webhooks",
        400,
        f"url {SURROGATE_RULE}",
        content=b'{"url": "http://127.0.0.1:9/\\ud800", "events": ["pr.merged"]}',
        headers=JSON,
    ),
    Bad(
        "config-key-lone-surrogate",
        "PATCH",
        "/api/v1/config",
        400,
        f"the request body {SURROGATE_RULE}",
        content=b'{"\\ud800": 1}',
        headers=JSON,
    ),
    # Methods and paths
    Bad(
        "method-put-workers",
        "PUT",
        SPAWN,
        405,
        "method PUT is not allowed on /api/v1/workers; use GET, POST",
        json=spawn(),
    ),
    Bad(
        "method-delete-config",
        "DELETE",
        "/api/v1/config",
        405,
        "method DELETE is not allowed on /api/v1/config; use GET, PATCH",
    ),
    Bad(
        "method-post-status",
        "POST",
        "/api/v1/status",
        405,
        "method POST is not allowed on /api/v1/status; use GET",
        json={},
    ),
    Bad("path-unknown", "GET", "/api/v1/robots", 404, "Not Found"),
]


@pytest.mark.parametrize("bad", BAD_REQUESTS, ids=[bad.id for bad in BAD_REQUESTS])
def test_bad_request_changes_nothing(contract: Contract, bad: Bad) -> None:
    contract.wait_settled()
    redis_before, last_event_before = contract.state()

    response = bad.send(contract.client)

    redis_after, last_event_after = contract.state()
    assert redis_before, "the stack has state, so an unchanged state means something"
    assert response.status_code == bad.status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["error"]
    assert sorted(body["error"]) == ["message", "status"]
    assert body["error"]["status"] == bad.status
    if bad.exact:
        assert body["error"]["message"] == bad.message
    else:
        assert bad.message in body["error"]["message"]
    assert redis_after == redis_before
    assert last_event_after == last_event_before


def test_bad_request_table_is_large() -> None:
    assert len(BAD_REQUESTS) >= 40
    assert len({bad.id for bad in BAD_REQUESTS}) == len(BAD_REQUESTS)


def test_wrong_method_lists_allowed(contract: Contract) -> None:
    response = contract.client.put("/api/v1/config", json={})

    assert response.status_code == 405
    assert response.headers["allow"] == "GET, PATCH"


def test_head_is_not_offered(contract: Contract) -> None:
    # The routes serve no HEAD, so an Allow header that listed it sent clients into a 405.
    response = contract.client.head("/api/v1/status")

    assert response.status_code == 405
    assert response.headers["allow"] == "GET"


# Good requests


def test_spawn_returns_worker(contract: Contract) -> None:
    body = {"task": "Add unit tests", "repoName": "app", "branch": "main", "name": "Snickers"}

    response = contract.client.post("/api/v1/workers", json=body | {"agent": "command"})

    assert response.status_code == 201, response.text
    worker = response.json()
    assert {key: worker[key] for key in body} == body | {"branch": "work/Snickers"}
    assert worker["status"] == "starting"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", worker["createdAt"])
    assert contract.client.get("/api/v1/workers/Snickers").json()["repoName"] == "app"


def test_openapi_documents_errors(contract: Contract) -> None:
    document = contract.client.get("/openapi.json").json()
    operations = [
        (f"{method.upper()} {path}", operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
    ]

    assert "HTTPValidationError" not in document["components"]["schemas"]
    for label, operation in operations:
        responses = operation["responses"]
        assert "422" not in responses, label
        errors = {status: entry for status, entry in responses.items() if status >= "400"}
        for status, entry in errors.items():
            if label != "GET /healthz":
                schema = entry["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (label, status)
        if "requestBody" in operation:
            assert {"400", "413"} <= set(responses), label
        if label.split(" ")[1].startswith("/api/v1"):
            assert "401" in responses, label


def test_openapi_bodies_have_examples(contract: Contract) -> None:
    document = contract.client.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if "requestBody" not in operation:
                continue
            schema = operation["requestBody"]["content"]["application/json"]["schema"]
            # An optional body is "anyOf": [{"$ref": ...}, {"type": "null"}].
            for choice in [schema, *schema.get("anyOf", [])]:
                if "$ref" in choice:
                    schema = schemas[choice["$ref"].rsplit("/", 1)[1]]
            assert schema.get("examples"), f"{method.upper()} {path}"


def test_docs_page_served(contract: Contract) -> None:
    response = contract.client.get("/docs")

    assert response.status_code == 200
    assert "/openapi.json" in response.text


# Configuration


def test_config_patch_merges_and_applies(contract: Contract) -> None:
    contract.stack.register_repository("limited")
    client = contract.client
    body = {"task": "Stay busy", "repoName": "limited", "agent": "command"}
    try:
        first = client.post("/api/v1/workers", json=body | {"name": "First"})
        patched = client.patch("/api/v1/config", json={"maxWorkersPerRepo": 1})
        second = client.post("/api/v1/workers", json=body | {"name": "Second"})
        stored = json.loads(contract.redis.get(keys.CONFIG) or "{}")
        read_back = client.get("/api/v1/config").json()
        merged = client.patch("/api/v1/config", json={"maxWorkers": 50})
    finally:
        client.patch("/api/v1/config", json={"maxWorkersPerRepo": 10, "maxWorkers": 0})

    assert first.status_code == 201, first.text
    assert patched.status_code == 200, patched.text
    assert patched.json()["maxWorkersPerRepo"] == 1
    assert patched.json()["defaultAgent"] == "demo"
    assert stored == patched.json()
    assert read_back == patched.json()
    assert second.status_code == 409
    assert second.json()["error"]["message"] == (
        'Repository "limited" already has 1 active workers (maxWorkersPerRepo); wait for one '
        "to finish or stop one"
    )
    assert merged.json()["maxWorkersPerRepo"] == 1
    assert merged.json()["maxWorkers"] == 50


# Names checked against git


def git_accepts_branch(name: str, cwd: Path) -> bool:
    # Outside any repository (GIT_CEILING_DIRECTORIES stops the search), so git applies only
    # its rules and does not expand "@" or "@{-1}" from a reflog.
    result = subprocess.run(
        ["git", "check-ref-format", "--branch", name],
        cwd=cwd,
        capture_output=True,
        env={"PATH": "/usr/bin:/bin:/usr/local/bin", "GIT_CEILING_DIRECTORIES": str(cwd)},
        check=False,
    )
    return result.returncode == 0


def python_accepts_branch(name: str) -> bool:
    try:
        validation.check_branch(name)
    except InvalidRequest:
        return False
    return True


BRANCH_NAMES = [
    "main",
    "feature/login",
    "release-1.2",
    "fix_bug",
    "a/b/c",
    "fé",
    "@",
    "a@b",
    "x/@",
    "a]b",
    "a{b}",
    "a;b",
    "a'b",
    'a"b',
    "a|b",
    "a$b",
    "a%b",
    "a.lock.b",
    "lock",
    "refs/heads/main",
    "x/HEAD",
    "head",
    "a\u2028b",
    "HEAD",
    "-x",
    "--orphan",
    "@{-1}",
    "a@{b",
    "a..b",
    "..",
    ".",
    ".x",
    "a/.b",
    "x.",
    "a/.",
    "x/",
    "/x",
    "a//b",
    "a.lock",
    "a.lock/b",
    "a/b.lock",
    ".lock",
    "a b",
    "a\tb",
    "a\x7fb",
    "a~b",
    "a^b",
    "a:b",
    "a?b",
    "a*b",
    "a[b",
    "a\\b",
    "",
]


@pytest.mark.parametrize("name", BRANCH_NAMES, ids=[repr(name) for name in BRANCH_NAMES])
def test_branch_check_matches_git(name: str, tmp_path: Path) -> None:
    expected = git_accepts_branch(name, tmp_path)

    assert python_accepts_branch(name) == expected
    assert bool(re.fullmatch(validation.BRANCH_PATTERN, name)) == expected


def test_branch_length_limit_is_ours() -> None:
    # git has no limit; ours keeps a name within what file systems take.
    assert python_accepts_branch("a" * validation.MAX_BRANCH_LENGTH)
    assert not python_accepts_branch("a" * (validation.MAX_BRANCH_LENGTH + 1))
    assert not re.fullmatch(validation.BRANCH_PATTERN, "a" * (validation.MAX_BRANCH_LENGTH + 1))


NAMES = ["Snickers", "kit-kat", "a.b", "a_b", "9lives", "a" * 64, "x.lockx"]
NOT_NAMES = ["", "a/b", "..", "...", "a..b", "-x", ".x", "x.", "a.lock", "a b", "a:b", "a" * 65]


@pytest.mark.parametrize("name", NAMES + NOT_NAMES)
def test_name_pattern_matches_check(name: str, tmp_path: Path) -> None:
    try:
        validation.check_name(name, "name")
        accepted = True
    except InvalidRequest:
        accepted = False

    assert accepted == (name in NAMES)
    assert bool(re.fullmatch(validation.NAME_PATTERN, name)) == accepted
    if accepted:
        assert git_accepts_branch(f"work/{name}", tmp_path)


@pytest.mark.parametrize("text", ["x", " x ", "\u3000a", "", " ", "\t\n", "\u3000\ufeff", "a\x00"])
def test_text_pattern_matches_check(text: str) -> None:
    try:
        validation.check_text(text, "task")
        accepted = True
    except InvalidRequest:
        accepted = False

    assert bool(re.fullmatch(validation.TEXT_PATTERN, text)) == accepted
