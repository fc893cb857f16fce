"""The github forge: pull requests, checks and merges through GitHub's REST API.

The worker's branch is pushed over the clone's ``origin`` remote. The token reaches git through a
credential helper that reads it from git's environment, so it is in no URL and no argv. Reads are
conditional requests (``If-None-Match`` with the last ETag): GitHub does not count a 304 response
against the primary rate limit. The states of a repository's pull requests come from one list
call per poll interval, not one call per pull request. A rate-limit response (403 or 429) stops
every request until the time that GitHub names, or for a minute or more after a secondary limit.
"""

import asyncio
import logging
import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import urlencode, urlsplit

import httpx
from redis.asyncio import Redis

from cocopilot.config import load_config
from cocopilot.errors import InvalidRequest
from cocopilot.models import CheckResult, ForgeKind, PrStage, PullRequest, Repository, Worker
from cocopilot.settings import Settings
from services.workers import git
from services.workers.forges.base import (
    ForgeError,
    HeadChanged,
    MergeConflict,
    MergeMethod,
    OpenedPullRequest,
)

log = logging.getLogger(__name__)

API_VERSION = "2022-11-28"
PAGE_SIZE = 100  # the largest per_page that GitHub accepts
MAX_PAGES = 10
ETAG_CACHE_SIZE = 4096
# GitHub's "Best practices for using the REST API": send requests one at a time, not concurrently.
CONCURRENT_REQUESTS = 1
# GitHub's rate-limit docs: after a secondary limit without retry-after, wait at least a minute,
# and longer each time it repeats (here twice as long, up to 16 minutes).
SECONDARY_LIMIT_WAIT_S = 60.0
SECONDARY_LIMIT_MAX_WAIT_S = 960.0
RATE_LIMIT_RETRIES = 5
# update-branch returns 202 and merges in the background, so the forge polls for the new head.
UPDATE_BRANCH_TIMEOUT_S = 60.0
UPDATE_BRANCH_POLL_S = 1.0
GIT_NETWORK_TIMEOUT_S = 300.0
EXCERPT_CHARS = 4000
Conclusion = Literal["success", "failure", "pending"]
SUCCESS_CONCLUSIONS = frozenset({"success", "neutral", "skipped"})
# A commit status of failure or error fails.
STATUS_CONCLUSIONS: dict[str, Conclusion] = {"success": "success", "pending": "pending"}
TOKEN_ENV = "COCOPILOT_GIT_TOKEN"  # noqa: S105 (the name of the variable, not a token)
# Hands git the token from its environment; the empty helper first drops any configured
# helper, so none of them stores the token.
CREDENTIAL_HELPER = (
    '!f() { test "$1" = get && '
    f"printf 'username=x-access-token\\npassword=%s\\n' \"${TOKEN_ENV}\"; }}; f"
)
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_GITHUB_URL = re.compile(
    r"(?:https://(?:[^@/]+@)?github\.com/|ssh://git@github\.com(?::\d+)?/|git@github\.com:)"
    r"([A-Za-z0-9-]+)/([A-Za-z0-9._-]+?)(?:\.git)?/?"
)


def github_repository_from_url(url: str) -> str | None:
    """Return ``owner/name`` for an https or ssh URL of a repository on github.com."""
    match = _GITHUB_URL.fullmatch(url)
    return f"{match[1]}/{match[2]}" if match else None


def choose_forge(
    forge: ForgeKind | None, url: str, github_repository: str | None, has_token: bool
) -> tuple[ForgeKind, str | None]:
    """Return the forge of a repository being added, and its owner/name on GitHub.

    Without a forge in the request, a github.com URL gets the github forge when a token is
    configured, and anything else the local forge.
    """
    from_url = github_repository_from_url(url)
    if forge is None:
        forge = "github" if from_url and has_token else "local"
    if forge == "local":
        return forge, github_repository
    if not has_token:
        raise InvalidRequest(
            "the github forge needs a GitHub token: set COCOPILOT_GITHUB_TOKEN (or GH_TOKEN or "
            "GITHUB_TOKEN) for the workers service"
        )
    slug = github_repository or from_url
    if slug is None:
        raise InvalidRequest(
            "githubRepository is required with forge github when the URL is not a github.com "
            'URL, for example "octo/my-app"'
        )
    return forge, slug


class Clock(Protocol):
    def now(self) -> float:
        """Return seconds since the epoch."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class GitHubError(ForgeError):
    """GitHub rejected a request, or could not be reached (``response_status`` None)."""

    def __init__(self, message: str, response_status: int | None, github_message: str) -> None:
        super().__init__(message)
        self.response_status = response_status
        self.github_message = github_message

    @property
    def transient(self) -> bool:
        return self.response_status is None or self.response_status >= 500


class RateLimited(ForgeError):
    """GitHub's rate limit is used up; no request is sent before ``until`` (epoch seconds)."""

    status = 503

    def __init__(self, until: float) -> None:
        stamp = time.strftime("%H:%M:%S UTC", time.gmtime(until))
        super().__init__(f"GitHub's rate limit is used up; requests resume at {stamp}")
        self.until = until


@dataclass(frozen=True)
class ApiResponse:
    status: int
    body: Any
    not_modified: bool = False  # a 304: body is the cached body of the last 200


class GitHubApi:
    """GitHub's REST API: authentication, conditional GETs, pacing of writes, and rate limits.

    Every method that sends takes ``wait``: with it, a request waits out a rate limit (up to
    ``max_wait_s``); without it, it raises RateLimited at once.
    """

    def __init__(
        self,
        base_url: str,
        token: str | None,
        clock: Clock,
        mutation_interval_s: float,
        max_wait_s: float,
        timeout_s: float,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.clock = clock
        self.mutation_interval_s = mutation_interval_s
        self.max_wait_s = max_wait_s
        self.timeout_s = timeout_s
        self.blocked_until = 0.0
        self.secondary_limits = 0  # consecutive secondary rate-limit responses
        self.last_mutation = 0.0
        self.etags: OrderedDict[str, tuple[str, Any]] = OrderedDict()
        self._client: httpx.AsyncClient | None = None
        self._slots: asyncio.Semaphore | None = None
        self._mutation_lock: asyncio.Lock | None = None

    async def get(self, path: str, params: dict[str, Any] | None = None, wait: bool = True) -> Any:
        return (await self.request("GET", path, params=params, wait=wait)).body

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: dict[str, Any] | None = None,
        wait: bool = True,
    ) -> ApiResponse:
        """Send a request, and again after each rate-limit response; raise GitHubError for a
        response that is neither a success nor a 304."""
        for _ in range(RATE_LIMIT_RETRIES + 1):
            await self._wait_for_limit(wait)
            response = await self._send(method, path, params, json)
            delay_s = self._rate_limit_delay(response)
            if delay_s is None:
                self.secondary_limits = 0
                return self._result(method, path, params, response)
            self._block(delay_s, method, path, response.status_code)
            if not wait:
                raise RateLimited(self.blocked_until)
        raise RateLimited(self.blocked_until)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # Sending

    def _http_client(self) -> httpx.AsyncClient:
        if self.token is None:
            raise ForgeError(
                "no GitHub token is configured: set COCOPILOT_GITHUB_TOKEN (or GH_TOKEN or "
                "GITHUB_TOKEN) for the workers service"
            )
        if self._client is None:
            self._client = httpx.AsyncClient(
                base_url=checked_api_url(self.base_url),
                timeout=self.timeout_s,
                headers={
                    "Accept": "application/vnd.github+json",
                    "Authorization": f"Bearer {self.token}",
                    "User-Agent": "cocopilot",
                    "X-GitHub-Api-Version": API_VERSION,
                },
            )
            self._slots = asyncio.Semaphore(CONCURRENT_REQUESTS)
            self._mutation_lock = asyncio.Lock()
        return self._client

    async def _send(
        self, method: str, path: str, params: dict[str, Any] | None, json: dict[str, Any] | None
    ) -> httpx.Response:
        client = self._http_client()
        headers = {}
        cached = self.etags.get(cache_key(path, params)) if method == "GET" else None
        if cached is not None:
            headers["If-None-Match"] = cached[0]
        if method != "GET":
            await self._pace_mutation()
        assert self._slots is not None
        try:
            async with self._slots:
                return await client.request(method, path, params=params, json=json, headers=headers)
        except httpx.HTTPError as exc:
            reason = self.redact(f"{type(exc).__name__}: {exc}")
            message = f"GitHub could not be reached for {method} {path}: {reason}"
            raise GitHubError(message, None, "") from exc

    async def _pace_mutation(self) -> None:
        """Keep mutation_interval_s between writes, as GitHub recommends against secondary
        rate limits."""
        assert self._mutation_lock is not None
        async with self._mutation_lock:
            wait_s = self.last_mutation + self.mutation_interval_s - self.clock.now()
            if wait_s > 0:
                await self.clock.sleep(wait_s)
            self.last_mutation = self.clock.now()

    def _result(
        self, method: str, path: str, params: dict[str, Any] | None, response: httpx.Response
    ) -> ApiResponse:
        key = cache_key(path, params)
        if response.status_code == 304 and key in self.etags:
            self.etags.move_to_end(key)
            return ApiResponse(200, self.etags[key][1], not_modified=True)
        if response.status_code >= 300:
            raise self._error(method, path, response)
        body = response.json() if response.content else None
        etag = response.headers.get("etag")
        if method == "GET" and etag:
            self._remember(key, etag, body)
        return ApiResponse(response.status_code, body)

    def _remember(self, key: str, etag: str, body: Any) -> None:
        self.etags[key] = (etag, body)
        self.etags.move_to_end(key)
        while len(self.etags) > ETAG_CACHE_SIZE:
            self.etags.popitem(last=False)

    def _error(self, method: str, path: str, response: httpx.Response) -> GitHubError:
        github_message = self.redact(error_message(response))
        return GitHubError(
            f"GitHub returned {response.status_code} for {method} {path}: {github_message}",
            response.status_code,
            github_message,
        )

    def redact(self, text: str) -> str:
        return text.replace(self.token, "***") if self.token else text

    # Rate limits

    async def _wait_for_limit(self, wait: bool) -> None:
        wait_s = self.blocked_until - self.clock.now()
        if wait_s <= 0:
            return
        if not wait or wait_s > self.max_wait_s:
            raise RateLimited(self.blocked_until)
        await self.clock.sleep(wait_s)

    def _rate_limit_delay(self, response: httpx.Response) -> float | None:
        """Return how long to wait before the next request if ``response`` is a rate limit."""
        if response.status_code not in (403, 429):
            return None
        headers = response.headers
        retry_after = headers.get("retry-after", "")
        if retry_after.isdigit():
            return float(retry_after)
        reset = headers.get("x-ratelimit-reset", "")
        if headers.get("x-ratelimit-remaining") == "0" and reset.isdigit():
            return max(0.0, int(reset) - self.clock.now())
        if response.status_code == 429 or "rate limit" in error_message(response).lower():
            self.secondary_limits += 1
            wait_s: float = SECONDARY_LIMIT_WAIT_S * 2.0 ** (self.secondary_limits - 1)
            return min(wait_s, SECONDARY_LIMIT_MAX_WAIT_S)
        return None  # a 403 for a missing permission

    def _block(self, delay_s: float, method: str, path: str, status: int) -> None:
        self.blocked_until = max(self.blocked_until, self.clock.now() + delay_s)
        log.warning(
            "GitHub rate limit: requests paused",
            extra={"status": status, "method": method, "path": path, "wait_s": round(delay_s, 1)},
        )


def cache_key(path: str, params: dict[str, Any] | None) -> str:
    return f"{path}?{urlencode(sorted((params or {}).items()))}"


def error_message(response: httpx.Response) -> str:
    """Return GitHub's message from an error response, with the details of a 422."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or response.reason_phrase
    if not isinstance(body, dict):
        return str(body)[:200]
    message = str(body.get("message", response.reason_phrase))
    details = [
        str(error.get("message") or error.get("code"))
        for error in body.get("errors") or []
        if isinstance(error, dict)
    ]
    return "; ".join([message, *details])


def checked_api_url(url: str) -> str:
    """Reject an API URL that would send the token in clear text to another machine."""
    parts = urlsplit(url)
    if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS):
        return url
    raise ForgeError(
        f"invalid COCOPILOT_GITHUB_API_URL {url!r}: use https (plain http only to a loopback "
        "address)"
    )


@dataclass(frozen=True)
class PullState:
    state: str  # open or closed
    merged: bool


@dataclass
class PullList:
    pulls: dict[int, PullState]
    read_at: float


@dataclass(frozen=True)
class MergeFailure:
    head: str
    error: ForgeError
    at: float


class GitHubForge:
    def __init__(self, redis: Redis, settings: Settings, clock: Clock | None = None) -> None:
        self.redis = redis
        self.clock = clock or SystemClock()
        self.poll_interval_s = settings.github_poll_interval_s
        # Reviews per (repository, number) and when they were read.
        self.review_reads: dict[tuple[str, int], tuple[dict[str, str], float]] = {}
        self.checks_grace_s = settings.github_checks_grace_s
        token = settings.github_token.get_secret_value() if settings.github_token else None
        self.api = GitHubApi(
            settings.github_api_url,
            token,
            self.clock,
            settings.github_mutation_interval_s,
            settings.github_rate_limit_max_wait_s,
            settings.github_request_timeout_s,
        )
        self.pull_lists: dict[str, PullList] = {}
        self.list_locks: dict[str, asyncio.Lock] = {}
        self.base_reads: dict[tuple[str, str], tuple[str, float]] = {}
        self.merge_failures: dict[tuple[str, int], MergeFailure] = {}

    # Opening

    async def open_pull_request(
        self, repository: Repository, worker: Worker, title: str, body: str
    ) -> OpenedPullRequest:
        slug = self.slug(repository)
        await self._push(repository, f"refs/heads/{worker.branch}", worker.branch)
        payload = {"title": title, "body": body, "head": worker.branch, "base": worker.base_branch}
        try:
            created = (await self.api.request("POST", f"/repos/{slug}/pulls", json=payload)).body
        except GitHubError as exc:
            if exc.response_status != 422 or "already exists" not in exc.github_message:
                raise
            created = await self._open_pull_for(slug, worker.branch)
        await self._add_labels(repository, slug, int(created["number"]))
        return OpenedPullRequest(int(created["number"]), str(created["html_url"]))

    async def _open_pull_for(self, slug: str, branch: str) -> Any:
        """Return the open pull request of ``branch``: one left by an earlier attempt."""
        owner = slug.split("/")[0]
        params = {"head": f"{owner}:{branch}", "state": "open"}
        pulls = await self.api.get(f"/repos/{slug}/pulls", params)
        if not pulls:
            raise ForgeError(f"GitHub reports a pull request for {branch}, but lists none")
        return pulls[0]

    async def _add_labels(self, repository: Repository, slug: str, number: int) -> None:
        if not repository.pr_labels:
            return
        path = f"/repos/{slug}/issues/{number}/labels"
        try:
            await self.api.request("POST", path, json={"labels": repository.pr_labels})
        except ForgeError as exc:
            # The pull request is open; a missing label must not lose it.
            log.warning("adding labels failed", extra={"pr": number, "error": exc.message})

    def slug(self, repository: Repository) -> str:
        slug = repository.github_repository or github_repository_from_url(repository.url)
        if slug is None:
            raise ForgeError(f'repository "{repository.name}" has no githubRepository')
        return slug

    # Checks

    async def run_checks(self, repository: Repository, pr: PullRequest) -> list[CheckResult]:
        slug = self.slug(repository)
        await self._ensure_pushed(repository, pr)
        timeout_s = (await load_config(self.redis)).ci_timeout
        started = self.clock.now()
        while True:
            checks = await self._poll_checks(slug, pr)
            waited_s = self.clock.now() - started
            if checks is not None and self._settled(checks, waited_s):
                return checks
            if waited_s >= timeout_s:
                return timed_out(checks, timeout_s)
            await self.clock.sleep(self.poll_interval_s)

    def _settled(self, checks: list[CheckResult], waited_s: float) -> bool:
        """Tell whether the checks are final: none pending, and either some checks or none
        after the grace time, which gives CI the moment it takes to report a first check."""
        if any(check.conclusion == "pending" for check in checks):
            return False
        return bool(checks) or waited_s >= self.checks_grace_s

    async def _poll_checks(self, slug: str, pr: PullRequest) -> list[CheckResult] | None:
        """Return the checks of the head commit, or None when GitHub could not be reached."""
        try:
            return await self.read_checks(slug, pr.head_commit)
        except GitHubError as exc:
            if not exc.transient:
                raise
            log.warning("reading checks failed", extra={"pr": pr.number, "error": exc.message})
            return None

    async def read_checks(self, slug: str, commit: str) -> list[CheckResult]:
        """Return the check runs and commit statuses of ``commit``, pending ones included.

        While a check run is pending the statuses are not read: the checks are not final
        anyway, and a status that changes meanwhile would cost a counted request.
        """
        runs = await self._read_pages(f"/repos/{slug}/commits/{commit}/check-runs", "check_runs")
        checks = [check_run_result(run) for run in runs]
        if any(check.conclusion == "pending" for check in checks):
            return checks
        statuses = await self._read_pages(f"/repos/{slug}/commits/{commit}/status", "statuses")
        return checks + [status_result(status) for status in statuses]

    async def _read_pages(self, path: str, items_key: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        for page in range(1, MAX_PAGES + 1):
            params = {"per_page": PAGE_SIZE} if page == 1 else {"per_page": PAGE_SIZE, "page": page}
            body = await self.api.get(path, params)
            items += body[items_key]
            if len(items) >= body["total_count"] or not body[items_key]:
                break
        return items

    async def _ensure_pushed(self, repository: Repository, pr: PullRequest) -> None:
        """Push the head commit when GitHub lacks it, as after a fix-up moved the branch."""
        remote = await git.resolve_commit(Path(repository.path), f"refs/remotes/origin/{pr.branch}")
        if remote != pr.head_commit:
            await self._push(repository, pr.head_commit, pr.branch)

    # Merging

    async def base_commit(self, repository: Repository, pr: PullRequest) -> str:
        """Return the base branch's commit on GitHub. A fetch is reused for a poll interval,
        unless a merge or a rejected merge made it stale."""
        key = (repository.name, pr.base_branch)
        cached = self.base_reads.get(key)
        if cached is not None and self.clock.now() - cached[1] < self.poll_interval_s:
            return cached[0]
        commit = await self._fetch(repository, pr.base_branch)
        self.base_reads[key] = (commit, self.clock.now())
        return commit

    async def update_branch(self, repository: Repository, pr: PullRequest) -> str:
        slug = self.slug(repository)
        path = f"/repos/{slug}/pulls/{pr.number}/update-branch"
        try:
            await self.api.request(
                "PUT", path, json={"expected_head_sha": pr.head_commit}, wait=False
            )
        except GitHubError as exc:
            await self._raise_update_error(repository, pr, exc)
            raise
        head = await self._new_head(slug, pr)
        await self._fetch(repository, pr.branch)  # fix-up workers start from the local branch
        return head

    async def _raise_update_error(
        self, repository: Repository, pr: PullRequest, exc: GitHubError
    ) -> None:
        message = exc.github_message.lower()
        if exc.response_status == 422 and "expected head sha" in message:
            raise HeadChanged(exc.message) from exc
        if exc.response_status == 422 and "conflict" in message:
            raise MergeConflict(exc.message, await self._conflict_paths(repository, pr)) from exc

    async def _new_head(self, slug: str, pr: PullRequest) -> str:
        """Wait for the merge commit of update-branch, which GitHub makes in the background."""
        deadline = self.clock.now() + UPDATE_BRANCH_TIMEOUT_S
        while self.clock.now() < deadline:
            pull = await self.api.get(f"/repos/{slug}/pulls/{pr.number}", wait=False)
            if pull["head"]["sha"] != pr.head_commit:
                return str(pull["head"]["sha"])
            await self.clock.sleep(UPDATE_BRANCH_POLL_S)
        raise ForgeError(
            f"pull request #{pr.number} still has head {pr.head_commit} "
            f"{UPDATE_BRANCH_TIMEOUT_S:g} s after update-branch"
        )

    async def merge(self, repository: Repository, pr: PullRequest, method: MergeMethod) -> str:
        self._raise_recent_failure(repository, pr)
        slug = self.slug(repository)
        body = {
            "merge_method": method,
            "sha": pr.head_commit,  # GitHub returns 409 if the head moved after its checks ran
            "commit_title": f"{pr.title} (#{pr.number})",
        }
        path = f"/repos/{slug}/pulls/{pr.number}/merge"
        try:
            result = await self.api.request("PUT", path, json=body, wait=False)
        except GitHubError as exc:
            await self._raise_merge_error(repository, slug, pr, exc)
            raise
        await self._sync_base(repository, pr)
        return str(result.body["sha"])

    def _raise_recent_failure(self, repository: Repository, pr: PullRequest) -> None:
        """Raise the last merge error again within a poll interval, so that the merge queue's
        passes, one a second, do not resend a merge that GitHub just rejected."""
        failure = self.merge_failures.get((repository.name, pr.number))
        if failure is None or failure.head != pr.head_commit:
            return
        if self.clock.now() - failure.at < self.poll_interval_s:
            raise ForgeError(failure.error.message)

    async def _raise_merge_error(
        self, repository: Repository, slug: str, pr: PullRequest, exc: GitHubError
    ) -> None:
        if exc.response_status == 409:
            raise HeadChanged(exc.message) from exc
        if exc.response_status == 405:
            await self._not_mergeable(repository, slug, pr, exc)
        self._remember_failure(repository, pr, exc)

    async def _not_mergeable(
        self, repository: Repository, slug: str, pr: PullRequest, exc: GitHubError
    ) -> None:
        """Tell a conflict (a fix-up resolves it) from a branch behind its base (an update
        does) and from a block that waits for people, such as a required review."""
        pull = await self.api.get(f"/repos/{slug}/pulls/{pr.number}", wait=False)
        state = pull.get("mergeable_state")
        if state == "dirty":
            raise MergeConflict(exc.message, await self._conflict_paths(repository, pr)) from exc
        if state == "behind":
            self.base_reads.pop((repository.name, pr.base_branch), None)
            raise HeadChanged(f"{exc.message} (behind {pr.base_branch})") from exc
        error = ForgeError(f"{exc.message} (mergeable_state {state})")
        self._remember_failure(repository, pr, error)
        raise error from exc

    def _remember_failure(self, repository: Repository, pr: PullRequest, exc: ForgeError) -> None:
        failure = MergeFailure(pr.head_commit, exc, self.clock.now())
        self.merge_failures[(repository.name, pr.number)] = failure

    async def _sync_base(self, repository: Repository, pr: PullRequest) -> None:
        """Bring the clone's base branch to the merge, so new workers start from it."""
        self.base_reads.pop((repository.name, pr.base_branch), None)
        self.merge_failures.pop((repository.name, pr.number), None)
        try:
            await self.base_commit(repository, pr)
        except ForgeError as exc:
            log.warning("fetching the base branch failed", extra={"error": exc.message})

    async def _conflict_paths(self, repository: Repository, pr: PullRequest) -> list[str]:
        """Return the paths that conflict, from a merge of GitHub's base in the clone."""
        repo = Path(repository.path)
        self.base_reads.pop((repository.name, pr.base_branch), None)
        try:
            base = await self.base_commit(repository, pr)
            _, paths = await git.merge_trees(repo, base, pr.head_commit)
        except (ForgeError, git.GitError) as exc:
            log.warning("finding conflicting paths failed", extra={"error": exc.message})
            return []
        return paths

    # Reviews

    async def reviews(self, repository: Repository, pr: PullRequest) -> dict[str, str]:
        """Read the pull request's reviews, at most once per poll interval and conditionally,
        and return each reviewer's latest state."""
        key = (repository.name, pr.number)
        cached = self.review_reads.get(key)
        if cached is not None and self.clock.now() - cached[1] < self.poll_interval_s:
            return cached[0]
        path = f"/repos/{self.slug(repository)}/pulls/{pr.number}/reviews"
        try:
            body = await self.api.get(path, {"per_page": PAGE_SIZE}, wait=False)
        except ForgeError as exc:
            log.warning("reading reviews failed", extra={"pr": pr.number, "error": exc.message})
            return cached[0] if cached else pr.reviews
        latest = {
            str(review["user"]["login"]): str(review["state"])
            for review in body
            if review.get("user") and review.get("state") != "PENDING"
        }
        self.review_reads[key] = (latest, self.clock.now())
        return latest

    # Merges and closes made by people

    async def current_stage(self, repository: Repository, pr: PullRequest) -> PrStage | None:
        slug = self.slug(repository)
        pulls = await self._pull_states(repository.name, slug)
        state = pulls.get(pr.number) or await self._pull_state(slug, pr.number)
        if state is None or state.state == "open":
            return None
        return PrStage.MERGED if state.merged else PrStage.CLOSED

    async def _pull_states(self, repo_name: str, slug: str) -> dict[int, PullState]:
        """Return the repository's pull requests, read with one list call per poll interval."""
        async with self.list_locks.setdefault(repo_name, asyncio.Lock()):
            listed = self.pull_lists.get(repo_name)
            if listed is not None and self.clock.now() - listed.read_at < self.poll_interval_s:
                return listed.pulls
            params = {"state": "all", "sort": "updated", "direction": "desc"}
            try:
                body = await self.api.get(
                    f"/repos/{slug}/pulls", {**params, "per_page": PAGE_SIZE}, wait=False
                )
                pulls = {int(pull["number"]): pull_state(pull) for pull in body}
            except ForgeError as exc:
                log.warning("listing pull requests failed", extra={"error": exc.message})
                pulls = listed.pulls if listed else {}
            self.pull_lists[repo_name] = PullList(pulls, self.clock.now())
            return pulls

    async def _pull_state(self, slug: str, number: int) -> PullState | None:
        """Read one pull request that the list left out: more than a page were updated since."""
        try:
            return pull_state(await self.api.get(f"/repos/{slug}/pulls/{number}", wait=False))
        except ForgeError as exc:
            log.warning("reading a pull request failed", extra={"pr": number, "error": exc.message})
            return None

    # git

    async def _push(self, repository: Repository, source: str, branch: str) -> None:
        refspec = f"{source}:refs/heads/{branch}"
        await self._git(repository, "push", "origin", refspec)

    async def _fetch(self, repository: Repository, branch: str) -> str:
        """Fetch ``branch`` from GitHub, move the clone's branch to it and return its commit."""
        repo = Path(repository.path)
        tracking = f"refs/remotes/origin/{branch}"
        await self._git(
            repository, "fetch", "--no-tags", "origin", f"+refs/heads/{branch}:{tracking}"
        )
        commit = await git.resolve_commit(repo, tracking)
        if commit is None:
            raise ForgeError(f'branch "{branch}" is not on GitHub')
        await git.git("update-ref", f"refs/heads/{branch}", commit, cwd=repo)
        return commit

    async def _git(self, repository: Repository, *args: str) -> None:
        config: list[str] = []
        env: dict[str, str] = {}
        if self.api.token:
            config = ["-c", "credential.helper=", "-c", f"credential.helper={CREDENTIAL_HELPER}"]
            env = {TOKEN_ENV: self.api.token}
        try:
            await git.git(
                *config, *args, cwd=Path(repository.path), timeout_s=GIT_NETWORK_TIMEOUT_S, env=env
            )
        except git.GitError as exc:
            raise ForgeError(self.api.redact(exc.message)) from exc


def pull_state(pull: dict[str, Any]) -> PullState:
    # The list call's items have merged_at but no merged field.
    merged = bool(pull.get("merged")) or pull.get("merged_at") is not None
    return PullState(str(pull["state"]), merged)


def check_run_result(run: dict[str, Any]) -> CheckResult:
    conclusion: Conclusion
    if run.get("status") != "completed":
        conclusion = "pending"
    elif run.get("conclusion") in SUCCESS_CONCLUSIONS:
        conclusion = "success"
    else:
        conclusion = "failure"  # failure, timed_out, cancelled, action_required, stale
    output = run.get("output") or {}
    parts = [output.get("title"), output.get("summary"), output.get("text"), run.get("details_url")]
    return CheckResult(name=str(run["name"]), conclusion=conclusion, excerpt=join_excerpt(parts))


def status_result(status: dict[str, Any]) -> CheckResult:
    conclusion = STATUS_CONCLUSIONS.get(str(status.get("state")), "failure")
    excerpt = join_excerpt([status.get("description"), status.get("target_url")])
    return CheckResult(name=str(status["context"]), conclusion=conclusion, excerpt=excerpt)


def join_excerpt(parts: list[Any]) -> str | None:
    text = "\n\n".join(str(part) for part in parts if part)
    return text[-EXCERPT_CHARS:] or None


def timed_out(checks: list[CheckResult] | None, timeout_s: float) -> list[CheckResult]:
    """Fail the checks still pending after ciTimeout, so the pull request is not merged;
    ``checks`` is None when GitHub could not be reached."""
    if checks is None:
        note = f"GitHub could not be reached for {timeout_s:g} s (ciTimeout)"
        return [CheckResult(name="checks", conclusion="failure", excerpt=note)]
    note = f"still pending after {timeout_s:g} s (ciTimeout)"
    return [
        check.model_copy(update={"conclusion": "failure", "excerpt": note})
        if check.conclusion == "pending"
        else check
        for check in checks
    ]
