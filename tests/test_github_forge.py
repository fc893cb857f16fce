"""The github forge against a fake GitHub server (tests/fake_github.py) on 127.0.0.1, with a
bare repository on disk as the clone's origin, so pushes need no network."""

import asyncio
import logging
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from nats.aio.client import Client as NATS
from pydantic import SecretStr
from redis.asyncio import Redis

from cocopilot import keys
from cocopilot.config import GlobalConfig
from cocopilot.errors import InvalidRequest
from cocopilot.models import PrStage, PullRequest, Repository, Worker, WorkerStatus
from cocopilot.settings import Settings
from cocopilot.timeutil import now_iso
from services.workers.forges.base import ForgeError, HeadChanged, MergeConflict
from services.workers.forges.github import (
    GitHubForge,
    RateLimited,
    SystemClock,
    choose_forge,
    github_repository_from_url,
)
from tests.fake_github import FakeGitHub, make_origin, serving
from tests.gitrepos import run_git
from tests.servers import Servers
from tests.stack import running_stack
from tests.waiting import wait_until

TOKEN = "ghp_fakeTokenForTheTestsOnly0123456789"
SLUG = "octo/app"
FILES = {"README.md": "# App\n", "shared.txt": "start\n"}


class RecordingClock(SystemClock):
    """Real time plus the sleeps asked for, which return at once and are recorded."""

    def __init__(self) -> None:
        self.offset_s = 0.0
        self.sleeps: list[float] = []

    def now(self) -> float:
        return time.time() + self.offset_s

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.offset_s += seconds
        await asyncio.sleep(0)


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    return make_origin(tmp_path / "origin.git", files=FILES)


@pytest.fixture
def fake(origin: Path) -> Iterator[FakeGitHub]:
    fake = FakeGitHub(TOKEN, {SLUG: origin})
    with serving(fake):
        yield fake


@pytest.fixture
def clone(origin: Path, tmp_path: Path) -> Path:
    path = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(origin), str(path)], check=True)
    return path


@pytest.fixture
def repository(origin: Path, clone: Path) -> Repository:
    return Repository(
        name="app",
        url=str(origin),
        path=str(clone),
        default_branch="main",
        forge="github",
        github_repository=SLUG,
        pr_labels=["cocopilot", "automated"],
        created_at=now_iso(),
    )


@pytest.fixture
async def forge(redis: Redis, fake: FakeGitHub) -> AsyncIterator[GitHubForge]:
    forge = make_forge(redis, fake)
    yield forge
    await forge.api.close()


def make_forge(
    redis: Redis, fake: FakeGitHub, clock: SystemClock | None = None, **settings: Any
) -> GitHubForge:
    defaults = {
        "github_api_url": fake.base_url,
        "github_token": SecretStr(TOKEN),
        "github_poll_interval_s": 0.05,
        "github_checks_grace_s": 0.0,
        "github_mutation_interval_s": 0.0,
    }
    return GitHubForge(redis, Settings().model_copy(update=defaults | settings), clock)


def commit(repo: Path, branch: str, start: str, files: dict[str, str], message: str) -> str:
    """Commit ``files`` on ``branch`` (made from ``start``) in a clone; return the commit."""
    run_git(repo, "checkout", "--quiet", "-B", branch, start)
    for name, text in files.items():
        (repo / name).write_text(text)
    run_git(repo, "add", "--all")
    run_git(repo, "commit", "--quiet", "-m", message)
    run_git(repo, "checkout", "--quiet", "--detach")
    return run_git(repo, "rev-parse", branch).strip()


def person_pushes(origin: Path, tmp_path: Path, branch: str, files: dict[str, str]) -> str:
    """Push a commit to ``branch`` of the origin from another clone, as a person would."""
    other = tmp_path / f"person-{time.monotonic_ns()}"
    subprocess.run(["git", "clone", "--quiet", str(origin), str(other)], check=True)
    head = commit(other, branch, f"origin/{branch}", files, f"Change {branch}")
    run_git(other, "push", "--quiet", "origin", f"{branch}:{branch}")
    return head


def make_worker(name: str = "Noter") -> Worker:
    return Worker(
        name=name,
        task=f"Add a note by {name}",
        branch=f"work/{name}",
        status=WorkerStatus.COMPLETED,
        repo_name="app",
        base_branch="main",
        agent="demo",
        created_at=now_iso(),
        updated_at=now_iso(),
        instance_id="test",
        worktree="/nonexistent",
    )


async def open_pull(
    forge: GitHubForge,
    repository: Repository,
    name: str = "Noter",
    files: dict[str, str] | None = None,
) -> PullRequest:
    """Commit on the worker's branch in the clone and open its pull request."""
    worker = make_worker(name)
    clone = Path(repository.path)
    head = commit(clone, worker.branch, "main", files or {f"{name}.md": name}, f"Note by {name}")
    opened = await forge.open_pull_request(repository, worker, worker.task, "body")
    now = now_iso()
    return PullRequest(
        number=opened.number,
        repo_name="app",
        worker=name,
        title=worker.task,
        url=opened.url,
        branch=worker.branch,
        base_branch="main",
        head_commit=head,
        stage=PrStage.OPEN,
        created_at=now,
        updated_at=now,
    )


async def set_ci_timeout(redis: Redis, seconds: int) -> None:
    await redis.set(keys.CONFIG, GlobalConfig.model_validate({"ciTimeout": seconds}).to_json())


# Opening


async def test_open_pushes_and_labels(
    forge: GitHubForge, fake: FakeGitHub, repository: Repository, origin: Path
) -> None:
    pr = await open_pull(forge, repository)

    pull = fake.pulls[SLUG][pr.number]
    assert pr.url == f"https://github.com/{SLUG}/pull/{pr.number}"
    assert run_git(origin, "rev-parse", "work/Noter").strip() == pr.head_commit
    assert (pull.head_ref, pull.base_ref) == ("work/Noter", "main")
    assert pull.title == "Add a note by Noter"
    assert pull.labels == ["cocopilot", "automated"]
    assert {call.authorization for call in fake.calls} == {f"Bearer {TOKEN}"}


async def test_open_twice_finds_existing(
    forge: GitHubForge, fake: FakeGitHub, repository: Repository
) -> None:
    first = await open_pull(forge, repository)
    again = await forge.open_pull_request(repository, make_worker(), "Again", "body")

    assert again.number == first.number
    assert len(fake.pulls[SLUG]) == 1
    assert fake.count(status=422, path="/pulls", method="POST") == 1


# Checks


async def test_checks_map_runs_and_statuses(
    forge: GitHubForge, fake: FakeGitHub, repository: Repository
) -> None:
    pr = await open_pull(forge, repository)
    fake.set_check_run(pr.head_commit, "build")
    fake.set_check_run(pr.head_commit, "docs", conclusion="skipped")
    output = {"title": "2 tests failed", "summary": "test_login failed"}
    fake.set_check_run(pr.head_commit, "tests", conclusion="timed_out", output=output)
    fake.set_status(pr.head_commit, "ci/lint", "error", "lint crashed")

    checks = {check.name: check for check in await forge.run_checks(repository, pr)}

    assert {name: check.conclusion for name, check in checks.items()} == {
        "build": "success",
        "docs": "success",
        "tests": "failure",
        "ci/lint": "failure",
    }
    assert "test_login failed" in (checks["tests"].excerpt or "")
    assert "lint crashed" in (checks["ci/lint"].excerpt or "")


async def test_pending_checks_wait(
    forge: GitHubForge, fake: FakeGitHub, repository: Repository
) -> None:
    pr = await open_pull(forge, repository)
    fake.set_check_run(pr.head_commit, "build", "in_progress", None)
    fake.set_status(pr.head_commit, "ci/external", "pending")

    running = asyncio.create_task(forge.run_checks(repository, pr))
    await wait_until(lambda: fake.count(status=304, path="/check-runs") >= 2)
    fake.set_check_run(pr.head_commit, "build")
    fake.set_status(pr.head_commit, "ci/external", "success")
    checks = await asyncio.wait_for(running, 10)

    assert [(check.name, check.conclusion) for check in checks] == [
        ("build", "success"),
        ("ci/external", "success"),
    ]


async def test_no_checks_is_empty(
    forge: GitHubForge, fake: FakeGitHub, repository: Repository
) -> None:
    pr = await open_pull(forge, repository)

    assert await forge.run_checks(repository, pr) == []


async def test_checks_in_grace_time_count(
    redis: Redis, fake: FakeGitHub, repository: Repository
) -> None:
    forge = make_forge(redis, fake, github_checks_grace_s=30.0)
    pr = await open_pull(forge, repository)

    running = asyncio.create_task(forge.run_checks(repository, pr))
    await wait_until(lambda: fake.count(path="/check-runs") >= 2)
    fake.set_check_run(pr.head_commit, "build", conclusion="failure")
    checks = await asyncio.wait_for(running, 10)
    await forge.api.close()

    assert [(check.name, check.conclusion) for check in checks] == [("build", "failure")]


async def test_pending_past_ci_timeout_fails(
    redis: Redis, fake: FakeGitHub, repository: Repository
) -> None:
    await set_ci_timeout(redis, 60)
    clock = RecordingClock()
    forge = make_forge(redis, fake, clock, github_poll_interval_s=10.0)
    pr = await open_pull(forge, repository)
    fake.set_check_run(pr.head_commit, "build", "queued", None)
    fake.set_check_run(pr.head_commit, "lint")

    checks = await forge.run_checks(repository, pr)
    await forge.api.close()

    assert [(check.name, check.conclusion) for check in checks] == [
        ("build", "failure"),
        ("lint", "success"),
    ]
    assert "ciTimeout" in (checks[0].excerpt or "")
    assert sum(clock.sleeps) == pytest.approx(60.0)


async def test_polls_are_conditional(
    forge: GitHubForge, fake: FakeGitHub, repository: Repository
) -> None:
    pr = await open_pull(forge, repository)
    fake.set_check_run(pr.head_commit, "build")

    first = await forge.read_checks(SLUG, pr.head_commit)
    second = await forge.read_checks(SLUG, pr.head_commit)

    assert first == second
    assert fake.count(status=200, path="/commits/") == 2
    assert fake.count(status=304, path="/commits/") == 2


async def test_fixup_head_is_pushed(
    forge: GitHubForge, fake: FakeGitHub, repository: Repository, origin: Path
) -> None:
    pr = await open_pull(forge, repository)
    clone = Path(repository.path)
    fixed = commit(clone, "work/Fixer", pr.head_commit, {"fix.md": "fixed"}, "Fix")
    run_git(clone, "update-ref", "refs/heads/work/Noter", fixed)

    await forge.run_checks(repository, pr.model_copy(update={"head_commit": fixed}))

    assert run_git(origin, "rev-parse", "work/Noter").strip() == fixed


# Merges and closes made by people


async def test_stage_from_one_list_call(
    redis: Redis, fake: FakeGitHub, repository: Repository
) -> None:
    forge = make_forge(redis, fake, github_poll_interval_s=0.3)
    prs = [await open_pull(forge, repository, name) for name in ("Ann", "Bob", "Cid")]
    fake.merge_by_person(SLUG, prs[0].number)
    fake.close_by_person(SLUG, prs[1].number)

    stages = [await forge.current_stage(repository, pr) for pr in prs]
    list_calls = fake.count(path=f"/repos/{SLUG}/pulls", method="GET")
    await asyncio.sleep(0.35)
    again = [await forge.current_stage(repository, pr) for pr in prs]
    await forge.api.close()

    assert stages == [PrStage.MERGED, PrStage.CLOSED, None]
    assert again == stages
    assert list_calls == 1
    assert fake.count(status=304, path=f"/repos/{SLUG}/pulls", method="GET") == 1
    assert fake.count(path=f"/repos/{SLUG}/pulls/", method="GET") == 0


# Branch updates


async def test_update_branch_merges_base(
    forge: GitHubForge, fake: FakeGitHub, repository: Repository, origin: Path, tmp_path: Path
) -> None:
    pr = await open_pull(forge, repository)
    base = person_pushes(origin, tmp_path, "main", {"other.md": "other"})

    head = await forge.update_branch(repository, pr)

    parents = run_git(origin, "rev-list", "--parents", "-n", "1", head).split()[1:]
    assert parents == [pr.head_commit, base]
    assert run_git(Path(repository.path), "rev-parse", "work/Noter").strip() == head
    assert await forge.base_commit(repository, pr) == base


async def test_update_branch_conflict(
    forge: GitHubForge, fake: FakeGitHub, repository: Repository, origin: Path, tmp_path: Path
) -> None:
    pr = await open_pull(forge, repository, files={"shared.txt": "from the worker\n"})
    person_pushes(origin, tmp_path, "main", {"shared.txt": "from a person\n"})

    with pytest.raises(MergeConflict) as raised:
        await forge.update_branch(repository, pr)

    assert raised.value.paths == ["shared.txt"]
    assert "merge conflict between base and head" in raised.value.message


async def test_update_branch_head_moved(
    forge: GitHubForge, fake: FakeGitHub, repository: Repository, origin: Path, tmp_path: Path
) -> None:
    pr = await open_pull(forge, repository)
    person_pushes(origin, tmp_path, "main", {"other.md": "other"})
    person_pushes(origin, tmp_path, "work/Noter", {"late.md": "late"})

    with pytest.raises(HeadChanged):
        await forge.update_branch(repository, pr)


# Merging


async def test_merge_squashes_at_head(
    forge: GitHubForge, fake: FakeGitHub, repository: Repository, origin: Path
) -> None:
    pr = await open_pull(forge, repository)

    merged = await forge.merge(repository, pr, "squash")

    assert run_git(origin, "rev-parse", "main").strip() == merged
    assert run_git(origin, "log", "-1", "--format=%s", "main").strip() == f"{pr.title} (#1)"
    assert len(run_git(origin, "rev-list", "--parents", "-n", "1", merged).split()) == 2
    assert run_git(Path(repository.path), "rev-parse", "main").strip() == merged
    assert fake.pulls[SLUG][pr.number].merged


async def test_merge_head_moved(
    forge: GitHubForge, fake: FakeGitHub, repository: Repository, origin: Path, tmp_path: Path
) -> None:
    pr = await open_pull(forge, repository)
    person_pushes(origin, tmp_path, "work/Noter", {"late.md": "late"})

    with pytest.raises(HeadChanged):
        await forge.merge(repository, pr, "squash")

    assert fake.count(status=409, path="/merge") == 1


async def test_merge_conflict(
    forge: GitHubForge, fake: FakeGitHub, repository: Repository, origin: Path, tmp_path: Path
) -> None:
    pr = await open_pull(forge, repository, files={"shared.txt": "from the worker\n"})
    person_pushes(origin, tmp_path, "main", {"shared.txt": "from a person\n"})

    with pytest.raises(MergeConflict) as raised:
        await forge.merge(repository, pr, "squash")

    assert raised.value.paths == ["shared.txt"]
    assert fake.count(status=405, path="/merge") == 1


async def test_merge_behind_base(
    forge: GitHubForge, fake: FakeGitHub, repository: Repository, origin: Path, tmp_path: Path
) -> None:
    fake.require_up_to_date = True
    pr = await open_pull(forge, repository)
    base = person_pushes(origin, tmp_path, "main", {"other.md": "other"})

    with pytest.raises(HeadChanged):
        await forge.merge(repository, pr, "squash")

    assert await forge.base_commit(repository, pr) == base


async def test_blocked_merge_waits(redis: Redis, fake: FakeGitHub, repository: Repository) -> None:
    forge = make_forge(redis, fake, github_poll_interval_s=30.0)
    pr = await open_pull(forge, repository)
    fake.blocked[(SLUG, pr.number)] = "blocked"

    errors = []
    for _ in range(2):
        with pytest.raises(ForgeError) as raised:
            await forge.merge(repository, pr, "squash")
        errors.append(raised.value)
    await forge.api.close()

    assert not isinstance(errors[0], MergeConflict | HeadChanged)
    assert "405" in errors[0].message
    assert "mergeable_state blocked" in errors[0].message
    assert errors[1].message == errors[0].message
    assert fake.count(path="/merge") == 1


# Rate limits


async def test_rate_limit_waits_for_reset(
    redis: Redis, fake: FakeGitHub, repository: Repository
) -> None:
    clock = RecordingClock()
    forge = make_forge(redis, fake, clock)
    pr = await open_pull(forge, repository)
    reset = int(clock.now()) + 120
    headers = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)}
    fake.answer_next(403, "API rate limit exceeded for user ID 1.", headers)

    checks = await forge.read_checks(SLUG, pr.head_commit)
    await forge.api.close()

    assert checks == []
    assert clock.sleeps == [pytest.approx(120, abs=2)]
    assert fake.count(status=403) == 1


async def test_retry_after_is_honoured(
    redis: Redis, fake: FakeGitHub, repository: Repository
) -> None:
    clock = RecordingClock()
    forge = make_forge(redis, fake, clock)
    pr = await open_pull(forge, repository)
    fake.answer_next(429, "Too many requests", {"retry-after": "30"})

    await forge.read_checks(SLUG, pr.head_commit)
    await forge.api.close()

    assert clock.sleeps == [pytest.approx(30.0, abs=1)]


async def test_secondary_limit_backs_off(
    redis: Redis, fake: FakeGitHub, repository: Repository
) -> None:
    clock = RecordingClock()
    forge = make_forge(redis, fake, clock)
    pr = await open_pull(forge, repository)
    message = "You have exceeded a secondary rate limit. Please wait a few minutes."
    fake.answer_next(403, message, count=2)

    await forge.read_checks(SLUG, pr.head_commit)
    await forge.api.close()

    assert clock.sleeps == [pytest.approx(60.0, abs=1), pytest.approx(120.0, abs=1)]


async def test_rate_limited_polls_send_nothing(
    redis: Redis, fake: FakeGitHub, repository: Repository
) -> None:
    forge = make_forge(redis, fake)
    pr = await open_pull(forge, repository)
    reset = int(time.time()) + 600
    headers = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)}
    fake.answer_next(403, "API rate limit exceeded for user ID 1.", headers)

    with pytest.raises(RateLimited):
        await forge.merge(repository, pr, "squash")
    calls = len(fake.calls)
    stage = await forge.current_stage(repository, pr)
    with pytest.raises(RateLimited):
        await forge.update_branch(repository, pr)
    await forge.api.close()

    assert stage is None
    assert len(fake.calls) == calls


# Errors


async def test_errors_carry_status_and_message(
    redis: Redis, fake: FakeGitHub, repository: Repository, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    forge = make_forge(redis, fake)
    pr = await open_pull(forge, repository)
    unknown = repository.model_copy(update={"github_repository": "octo/missing"})
    wrong_token = make_forge(redis, fake, github_token=SecretStr("ghp_wrong"))

    with pytest.raises(ForgeError) as missing:
        await forge.run_checks(unknown, pr)
    fake.answer_next(502, "Server Error")
    with pytest.raises(ForgeError) as failed:
        await forge.merge(repository, pr, "squash")
    with pytest.raises(ForgeError) as refused:
        await wrong_token.read_checks(SLUG, pr.head_commit)
    await forge.api.close()
    await wrong_token.api.close()

    assert "404" in missing.value.message
    assert "Not Found" in missing.value.message
    assert "502" in failed.value.message
    assert "Bad credentials" in refused.value.message
    for error in (missing.value, failed.value, refused.value):
        assert TOKEN not in error.message
    assert TOKEN not in caplog.text


async def test_api_url_must_be_https(redis: Redis, fake: FakeGitHub) -> None:
    forge = make_forge(redis, fake, github_api_url="http://api.example.com")

    with pytest.raises(ForgeError) as raised:
        await forge.read_checks(SLUG, "0" * 40)

    assert "use https" in raised.value.message


async def test_no_token_is_an_error(redis: Redis, fake: FakeGitHub) -> None:
    forge = make_forge(redis, fake, github_token=None)

    with pytest.raises(ForgeError) as raised:
        await forge.read_checks(SLUG, "0" * 40)

    assert "COCOPILOT_GITHUB_TOKEN" in raised.value.message
    assert fake.calls == []


# Registration and settings


@pytest.mark.parametrize(
    ("url", "slug"),
    [
        ("https://github.com/octo/my-app.git", "octo/my-app"),
        ("https://github.com/octo/my-app", "octo/my-app"),
        ("git@github.com:octo/my.app.git", "octo/my.app"),
        ("ssh://git@github.com/octo/my-app.git", "octo/my-app"),
        ("https://gitlab.com/octo/my-app.git", None),
        ("https://github.com/octo/my-app/tree/main", None),
        ("/repos/my-app", None),
    ],
)
def test_slug_from_url(url: str, slug: str | None) -> None:
    assert github_repository_from_url(url) == slug


def test_forge_default_follows_url_and_token() -> None:
    url = "https://github.com/octo/my-app.git"

    assert choose_forge(None, url, None, has_token=True) == ("github", "octo/my-app")
    assert choose_forge(None, url, None, has_token=False) == ("local", None)
    assert choose_forge(None, "/repos/app", None, has_token=True) == ("local", None)
    assert choose_forge("github", "/repos/app", "octo/app", True) == ("github", "octo/app")


@pytest.mark.parametrize(
    ("url", "slug", "has_token", "message"),
    [
        ("https://github.com/octo/app", None, False, "needs a GitHub token"),
        ("/repos/app", None, True, "githubRepository is required"),
    ],
)
def test_github_forge_needs_token_and_slug(
    url: str, slug: str | None, has_token: bool, message: str
) -> None:
    with pytest.raises(InvalidRequest) as raised:
        choose_forge("github", url, slug, has_token)

    assert message in raised.value.message


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"GH_TOKEN": "from-gh"}, "from-gh"),
        ({"GITHUB_TOKEN": "from-github"}, "from-github"),
        ({"COCOPILOT_GITHUB_TOKEN": "own", "GH_TOKEN": "from-gh"}, "own"),
    ],
)
def test_token_setting_falls_back(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str
) -> None:
    for name in ("COCOPILOT_GITHUB_TOKEN", "GH_TOKEN", "GITHUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    token = Settings().github_token

    assert token is not None
    assert token.get_secret_value() == expected
    assert expected not in repr(Settings())


# The flow end to end


async def test_flow_merges_through_github(
    servers: Servers, redis: Redis, nc: NATS, tmp_path: Path
) -> None:
    origin = make_origin(tmp_path / "repos" / "app.git", files=FILES)
    fake = FakeGitHub(TOKEN, {SLUG: origin})
    fake.checks_on_open = ["build"]
    with serving(fake) as api_url:
        env = {
            "COCOPILOT_GITHUB_TOKEN": TOKEN,
            "COCOPILOT_GITHUB_API_URL": api_url,
            "COCOPILOT_GITHUB_POLL_INTERVAL_S": "0.2",
            "COCOPILOT_GITHUB_CHECKS_GRACE_S": "0",
            "COCOPILOT_GITHUB_MUTATION_INTERVAL_S": "0",
        }
        with running_stack(servers, tmp_path, env) as stack:
            async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as api:
                await run_flow(api, fake)
                pulls = await pulls_in_stage(api, "merged")
                worker = (await api.get("/api/v1/workers/Noter")).json()
                types = await wait_until(lambda: event_types_with(api, "pr.merged"))
            logs = stack.logs()

    assert pulls[0]["url"] == f"https://github.com/{SLUG}/pull/1"
    assert [(check["name"], check["conclusion"]) for check in pulls[0]["checks"]] == [
        ("build", "success")
    ]
    assert worker["status"] == "merged"
    assert run_git(origin, "log", "-1", "--format=%s", "main").strip() == "Add a note (#1)"
    assert run_git(origin, "show", "main:cocopilot-demo/Noter.md").startswith("# Task for Noter")
    assert fake.pulls[SLUG][1].labels == ["cocopilot"]
    assert types.index("pr.created") < types.index("ci.passed") < types.index("pr.merged")
    assert TOKEN not in logs


async def test_shepherd_follows_reviews_and_close(
    servers: Servers, redis: Redis, nc: NATS, tmp_path: Path
) -> None:
    origin = make_origin(tmp_path / "repos" / "app.git", files=FILES)
    fake = FakeGitHub(TOKEN, {SLUG: origin})
    with serving(fake) as api_url:
        env = {
            "COCOPILOT_GITHUB_TOKEN": TOKEN,
            "COCOPILOT_GITHUB_API_URL": api_url,
            "COCOPILOT_GITHUB_POLL_INTERVAL_S": "0.2",
            "COCOPILOT_GITHUB_CHECKS_GRACE_S": "0",
        }
        with running_stack(servers, tmp_path, env) as stack:
            async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as api:
                body = {"name": "app", "url": str(origin), "githubRepository": SLUG}
                body |= {"forge": "github", "mergeMode": "manual"}
                assert (await api.post("/api/v1/repositories", json=body)).status_code == 201
                worker = {"task": "Add a note", "repoName": "app", "name": "Noter"}
                assert (await api.post("/api/v1/workers", json=worker)).status_code == 201
                await pulls_in_stage(api, "ready")
                fake.review_by_person(SLUG, 1, "alice", "CHANGES_REQUESTED")
                fake.review_by_person(SLUG, 1, "alice", "APPROVED")
                reviewed = await wait_until(lambda: reviews_of(api, {"alice": "APPROVED"}), 40)
                types = await wait_until(lambda: event_types_with(api, "pr.reviewed"), 20)
                fake.close_by_person(SLUG, 1)
                pulls = await pulls_in_stage(api, "closed")

    assert reviewed[0]["stage"] == "ready"
    assert "pr.reviewed" in types
    assert pulls[0]["number"] == 1
    assert not fake.pulls[SLUG][1].merged
    assert run_git(origin, "log", "--format=%s", "main").strip() == "Initial commit"


async def reviews_of(
    api: httpx.AsyncClient, expected: dict[str, str]
) -> list[dict[str, Any]] | None:
    pulls: list[dict[str, Any]] = (await api.get("/api/v1/repositories/app/prs")).json()
    return pulls if pulls and pulls[0]["reviews"] == expected else None


async def pulls_in_stage(api: httpx.AsyncClient, stage: str) -> list[dict[str, Any]]:
    async def in_stage() -> list[dict[str, Any]] | None:
        pulls: list[dict[str, Any]] = (await api.get("/api/v1/repositories/app/prs")).json()
        return pulls if pulls and pulls[0]["stage"] == stage else None

    return await wait_until(in_stage, timeout_s=40)


async def run_flow(api: httpx.AsyncClient, fake: FakeGitHub) -> None:
    """Track the repository, run a worker, and pass its check once the flow polls it."""
    body = {
        "name": "app",
        "url": str(fake.repositories[SLUG]),
        "forge": "github",
        "githubRepository": SLUG,
        "prLabels": ["cocopilot"],
    }
    response = await api.post("/api/v1/repositories", json=body)
    assert response.status_code == 201, response.text
    assert response.json()["forge"] == "github"
    worker = {"task": "Add a note", "repoName": "app", "name": "Noter", "agent": "demo"}
    assert (await api.post("/api/v1/workers", json=worker)).status_code == 201

    pull = await wait_until(lambda: fake.pull_by_head(SLUG, "work/Noter"), timeout_s=40)
    await wait_until(lambda: fake.count(status=304, path="/check-runs") >= 1, timeout_s=20)
    fake.set_check_run(fake.head_sha(SLUG, pull), "build")


async def event_types_with(api: httpx.AsyncClient, event_type: str) -> list[str] | None:
    page = (await api.get("/api/v1/events", params={"repoName": "app", "limit": 200})).json()
    types = [entry["type"] for entry in reversed(page["events"])]
    return types if event_type in types else None
