"""A fake of GitHub's REST API: the endpoints that the github forge calls, with the payloads,
status codes and headers that GitHub documents, backed by bare git repositories on disk.

Pull requests, merges and branch updates act on the bare repositories with real git. Check runs
and commit statuses are set by the test. Every GET response carries an ETag and a matching
If-None-Match gets a 304, which does not count against the rate limit, as on GitHub. The
x-ratelimit-* headers count the other responses. ``answer_next`` makes the next requests fail
(a rate limit, a server error). ``calls`` records every request.

Payloads follow GitHub's REST API reference (version 2022-11-28) for the fields the forge reads
and a few around them; they are not complete copies.
"""

import hashlib
import json
import subprocess
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.gitrepos import GIT_IDENTITY
from tests.servers import free_port, wait_for_port

DOCS_URL = "https://docs.github.com/rest"
RATE_LIMIT = 5000
RATE_WINDOW_S = 3600


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin:/usr/local/bin", "HOME": str(repo), **GIT_IDENTITY},
    )


def rev_parse(repo: Path, ref: str) -> str | None:
    result = git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    return result.stdout.strip() if result.returncode == 0 else None


@dataclass
class FakePull:
    number: int
    title: str
    body: str
    head_ref: str
    base_ref: str
    state: str = "open"
    merged: bool = False
    merged_at: str | None = None
    closed_at: str | None = None
    merge_commit_sha: str | None = None
    closed_head: str | None = None  # the head when it was closed; a branch may move later
    labels: list[str] = field(default_factory=list)
    reviews: list[dict[str, Any]] = field(default_factory=list)
    created_at: str = field(default_factory=now_iso)
    updated_at: str = field(default_factory=now_iso)


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    status: int
    conditional: bool  # sent If-None-Match
    authorization: str


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str]


class FakeGitHub:
    def __init__(self, token: str, repositories: dict[str, Path], rate_limit: int = RATE_LIMIT):
        self.token = token
        self.repositories = repositories  # owner/name -> bare repository
        self.rate_limit = rate_limit
        self.base_url = ""
        self.pulls: dict[str, dict[int, FakePull]] = {slug: {} for slug in repositories}
        self.check_runs: dict[str, dict[str, dict[str, Any]]] = {}  # sha -> name -> run
        self.statuses: dict[str, dict[str, dict[str, Any]]] = {}  # sha -> context -> status
        self.calls: list[Call] = []
        self.forced: deque[Answer] = deque()
        self.blocked: dict[tuple[str, int], str] = {}  # mergeable_state that blocks a merge
        # Check runs created queued on each new pull request's head, as CI would.
        self.checks_on_open: list[str] = []
        self.require_up_to_date = False  # branch protection: a head behind its base cannot merge
        self.rate_used = 0
        self.rate_reset = int(time.time()) + RATE_WINDOW_S
        self.next_id = 1000
        self.lock = threading.RLock()
        self.app = Starlette(routes=self._routes())

    # Test-side controls

    def set_check_run(
        self,
        sha: str,
        name: str,
        status: str = "completed",
        conclusion: str | None = "success",
        output: dict[str, Any] | None = None,
    ) -> None:
        with self.lock:
            run = self._check_run(sha, name, status, conclusion, output or {})
            self.check_runs.setdefault(sha, {})[name] = run

    def set_status(
        self, sha: str, context: str, state: str, description: str | None = None
    ) -> None:
        with self.lock:
            status = {
                "url": f"{self.base_url}/statuses/{sha}",
                "id": self._new_id(),
                "state": state,
                "description": description,
                "target_url": f"https://ci.example.com/{context}/{sha[:7]}",
                "context": context,
                "created_at": now_iso(),
                "updated_at": now_iso(),
            }
            self.statuses.setdefault(sha, {})[context] = status

    def merge_by_person(self, slug: str, number: int) -> None:
        with self.lock:
            pull = self.pulls[slug][number]
            self._close(slug, pull)
            pull.merged, pull.merged_at = True, now_iso()

    def review_by_person(self, slug: str, number: int, login: str, state: str) -> None:
        """Submit a review, as GitHub lists it: state APPROVED, CHANGES_REQUESTED or COMMENTED."""
        with self.lock:
            pull = self.pulls[slug][number]
            review_id = self._new_id()
            pull.reviews.append(
                {
                    "id": review_id,
                    "node_id": f"PRR_{review_id}",
                    "user": {"login": login, "id": review_id, "type": "User"},
                    "body": "",
                    "state": state,
                    "html_url": f"{self._html(slug, pull)}#pullrequestreview-{review_id}",
                    "commit_id": self.head_sha(slug, pull),
                    "submitted_at": now_iso(),
                    "author_association": "COLLABORATOR",
                }
            )
            pull.updated_at = now_iso()

    async def list_reviews(self, request: Request) -> Response:
        with self.lock:
            found = self._pull(request)
            if found is None:
                return self._not_found()
            return self._cached_get(request, list(found[2].reviews))

    def close_by_person(self, slug: str, number: int) -> None:
        with self.lock:
            self._close(slug, self.pulls[slug][number])

    def answer_next(
        self,
        status: int,
        message: str,
        headers: dict[str, str] | None = None,
        count: int = 1,
    ) -> None:
        """Make the next ``count`` requests fail with ``status`` and GitHub's error body."""
        with self.lock:
            for _ in range(count):
                body = {"message": message, "documentation_url": DOCS_URL}
                self.forced.append(Answer(status, body, headers or {}))

    def count(self, status: int | None = None, path: str = "", method: str = "") -> int:
        with self.lock:
            return sum(
                1
                for call in self.calls
                if (status is None or call.status == status)
                and path in call.path
                and (not method or call.method == method)
            )

    def head_sha(self, slug: str, pull: FakePull) -> str:
        if pull.closed_head is not None:
            return pull.closed_head
        return rev_parse(self.repositories[slug], f"refs/heads/{pull.head_ref}") or ""

    def pull_by_head(self, slug: str, branch: str) -> FakePull | None:
        with self.lock:
            return next((p for p in self.pulls[slug].values() if p.head_ref == branch), None)

    # Serving

    def _routes(self) -> list[Route]:
        repo = "/repos/{owner}/{name}"
        return [
            Route(f"{repo}/pulls", self.create_pull, methods=["POST"]),
            Route(f"{repo}/pulls", self.list_pulls, methods=["GET"]),
            Route(f"{repo}/pulls/{{number:int}}", self.get_pull, methods=["GET"]),
            Route(f"{repo}/pulls/{{number:int}}/merge", self.merge_pull, methods=["PUT"]),
            Route(f"{repo}/pulls/{{number:int}}/reviews", self.list_reviews, methods=["GET"]),
            Route(
                f"{repo}/pulls/{{number:int}}/update-branch", self.update_branch, methods=["PUT"]
            ),
            Route(f"{repo}/issues/{{number:int}}/labels", self.add_labels, methods=["POST"]),
            Route(f"{repo}/commits/{{ref:path}}/check-runs", self.list_check_runs),
            Route(f"{repo}/commits/{{ref:path}}/status", self.combined_status),
        ]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        response = self._gate(request)
        if response is None:
            await self.app(scope, receive, self._recording(request, send))
            return
        self._record(request, response.status_code)
        await response(scope, receive, send)

    def _gate(self, request: Request) -> Response | None:
        """Return the response for a bad token, a forced failure or a used-up rate limit,
        or None to let the route respond."""
        with self.lock:
            authorization = request.headers.get("authorization", "")
            if authorization not in (f"Bearer {self.token}", f"token {self.token}"):
                return self._json(
                    401, {"message": "Bad credentials", "documentation_url": DOCS_URL}
                )
            if self.forced:
                answer = self.forced.popleft()
                return self._json(answer.status, answer.body, answer.headers)
            if self.rate_used >= self.rate_limit:
                message = "API rate limit exceeded for user ID 1."
                return self._json(403, {"message": message, "documentation_url": DOCS_URL})
            return None

    def _recording(self, request: Request, send: Any) -> Any:
        async def recording_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                self._record(request, message["status"])
            await send(message)

        return recording_send

    def _record(self, request: Request, status: int) -> None:
        with self.lock:
            call = Call(
                request.method,
                request.url.path,
                status,
                "if-none-match" in request.headers,
                request.headers.get("authorization", ""),
            )
            self.calls.append(call)

    def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
        if status != 304:
            self._count_rate()
        text = "" if status in (204, 304) else json.dumps(body)
        all_headers = {**self._rate_headers(), **(headers or {})}
        return Response(text, status, all_headers, media_type="application/json")

    def _count_rate(self) -> None:
        if time.time() >= self.rate_reset:
            self.rate_used, self.rate_reset = 0, int(time.time()) + RATE_WINDOW_S
        self.rate_used += 1

    def _rate_headers(self) -> dict[str, str]:
        return {
            "x-ratelimit-limit": str(self.rate_limit),
            "x-ratelimit-remaining": str(max(0, self.rate_limit - self.rate_used)),
            "x-ratelimit-used": str(self.rate_used),
            "x-ratelimit-reset": str(self.rate_reset),
            "x-ratelimit-resource": "core",
        }

    def _cached_get(self, request: Request, body: Any) -> Response:
        """Answer a GET with an ETag, or 304 when If-None-Match names the same one."""
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        etag = f'W/"{digest[:32]}"'
        if request.headers.get("if-none-match") == etag:
            return self._json(304, None, {"ETag": etag})
        return self._json(200, body, {"ETag": etag, "Cache-Control": "private, max-age=60"})

    def _not_found(self) -> Response:
        return self._json(404, {"message": "Not Found", "documentation_url": DOCS_URL})

    def _invalid(self, message: str, errors: list[dict[str, Any]] | None = None) -> Response:
        body = {"message": message, "errors": errors or [], "documentation_url": DOCS_URL}
        return self._json(422, body)

    def _repository(self, request: Request) -> tuple[str, Path] | None:
        slug = f"{request.path_params['owner']}/{request.path_params['name']}"
        path = self.repositories.get(slug)
        return (slug, path) if path else None

    def _pull(self, request: Request) -> tuple[str, Path, FakePull] | None:
        found = self._repository(request)
        if found is None:
            return None
        pull = self.pulls[found[0]].get(request.path_params["number"])
        return (found[0], found[1], pull) if pull else None

    # Pull requests

    async def create_pull(self, request: Request) -> Response:
        payload = await request.json()
        with self.lock:
            found = self._repository(request)
            if found is None:
                return self._not_found()
            slug, repo = found
            problem = self._creation_problem(slug, repo, payload)
            if problem is not None:
                return problem
            pull = FakePull(
                self._new_number(slug),
                payload["title"],
                payload.get("body") or "",
                payload["head"],
                payload["base"],
            )
            self.pulls[slug][pull.number] = pull
            for name in self.checks_on_open:
                self.set_check_run(self.head_sha(slug, pull), name, "queued", None)
            body = self._pull_json(slug, pull, full=True)
            return self._json(201, body, {"Location": body["url"]})

    def _creation_problem(self, slug: str, repo: Path, payload: dict[str, Any]) -> Response | None:
        missing = [key for key in ("title", "head", "base") if not payload.get(key)]
        if missing:
            errors = [
                {"resource": "PullRequest", "field": key, "code": "missing_field"}
                for key in missing
            ]
            return self._invalid("Validation Failed", errors)
        for key in ("head", "base"):
            if rev_parse(repo, f"refs/heads/{payload[key]}") is None:
                error = {"resource": "PullRequest", "field": key, "code": "invalid"}
                return self._invalid("Validation Failed", [error])
        existing = self.pull_by_head(slug, payload["head"])
        if existing is not None and existing.state == "open":
            owner = slug.split("/")[0]
            message = f"A pull request already exists for {owner}:{payload['head']}."
            error = {"resource": "PullRequest", "code": "custom", "message": message}
            return self._invalid("Validation Failed", [error])
        return None

    async def list_pulls(self, request: Request) -> Response:
        with self.lock:
            found = self._repository(request)
            if found is None:
                return self._not_found()
            slug = found[0]
            pulls = self._filtered_pulls(slug, request.query_params)
            per_page = min(int(request.query_params.get("per_page", 30)), 100)
            page = int(request.query_params.get("page", 1))
            chosen = pulls[(page - 1) * per_page : page * per_page]
            return self._cached_get(request, [self._pull_json(slug, p) for p in chosen])

    def _filtered_pulls(self, slug: str, query: Any) -> list[FakePull]:
        state = query.get("state", "open")
        pulls = [p for p in self.pulls[slug].values() if state in ("all", p.state)]
        head = query.get("head")
        if head:
            pulls = [p for p in pulls if f"{slug.split('/')[0]}:{p.head_ref}" == head]
        key = "updated_at" if query.get("sort") == "updated" else "created_at"
        descending = query.get("direction", "desc") == "desc"
        pulls.sort(key=lambda p: (getattr(p, key), p.number), reverse=descending)
        return pulls

    async def get_pull(self, request: Request) -> Response:
        with self.lock:
            found = self._pull(request)
            if found is None:
                return self._not_found()
            slug, _, pull = found
            return self._cached_get(request, self._pull_json(slug, pull, full=True))

    def _pull_json(self, slug: str, pull: FakePull, full: bool = False) -> dict[str, Any]:
        """A pull request: the list call's short form, or with ``full`` the single one's."""
        repo = self.repositories[slug]
        owner = slug.split("/")[0]
        repository = {"full_name": slug, "name": slug.split("/")[1], "owner": {"login": owner}}
        body: dict[str, Any] = {
            "url": f"{self.base_url}/repos/{slug}/pulls/{pull.number}",
            "id": pull.number + 500_000,
            "html_url": f"https://github.com/{slug}/pull/{pull.number}",
            "number": pull.number,
            "state": pull.state,
            "locked": False,
            "title": pull.title,
            "user": {"login": "cocopilot-bot", "type": "User"},
            "body": pull.body,
            "labels": [{"name": name} for name in pull.labels],
            "created_at": pull.created_at,
            "updated_at": pull.updated_at,
            "closed_at": pull.closed_at,
            "merged_at": pull.merged_at,
            "merge_commit_sha": pull.merge_commit_sha,
            "draft": False,
            "head": {
                "label": f"{owner}:{pull.head_ref}",
                "ref": pull.head_ref,
                "sha": self.head_sha(slug, pull),
                "repo": repository,
            },
            "base": {
                "label": f"{owner}:{pull.base_ref}",
                "ref": pull.base_ref,
                "sha": rev_parse(repo, f"refs/heads/{pull.base_ref}"),
                "repo": repository,
            },
        }
        if full:
            state = self._mergeable_state(slug, pull)
            body |= {
                "merged": pull.merged,
                "mergeable": None if pull.state != "open" else state not in ("dirty",),
                "mergeable_state": state,
                "merged_by": {"login": "octocat"} if pull.merged else None,
                "comments": 0,
                "commits": 1,
            }
        return body

    def _mergeable_state(self, slug: str, pull: FakePull) -> str:
        if pull.state != "open":
            return "unknown"
        if (slug, pull.number) in self.blocked:
            return self.blocked[(slug, pull.number)]
        repo = self.repositories[slug]
        head = self.head_sha(slug, pull)
        base = rev_parse(repo, f"refs/heads/{pull.base_ref}") or ""
        if merge_tree(repo, base, head) is None:
            return "dirty"
        behind = git(repo, "merge-base", "--is-ancestor", base, head).returncode != 0
        return "behind" if behind and self.require_up_to_date else "clean"

    async def merge_pull(self, request: Request) -> Response:
        payload = await request.json() if await request.body() else {}
        with self.lock:
            found = self._pull(request)
            if found is None:
                return self._not_found()
            slug, repo, pull = found
            head = self.head_sha(slug, pull)
            if pull.state != "open":
                return self._not_mergeable()
            if payload.get("sha") and payload["sha"] != head:
                message = "Head branch was modified. Review and try the merge again."
                return self._json(409, {"message": message, "documentation_url": DOCS_URL})
            if self._mergeable_state(slug, pull) != "clean":
                return self._not_mergeable()
            return self._merge(slug, repo, pull, head, payload)

    def _not_mergeable(self) -> Response:
        body = {"message": "Pull Request is not mergeable", "documentation_url": DOCS_URL}
        return self._json(405, body)

    def _merge(
        self, slug: str, repo: Path, pull: FakePull, head: str, payload: dict[str, Any]
    ) -> Response:
        method = payload.get("merge_method", "merge")
        if method not in ("merge", "squash"):
            return self._invalid(f"Merge method {method} is not allowed on this fake")
        base = rev_parse(repo, f"refs/heads/{pull.base_ref}") or ""
        tree = merge_tree(repo, base, head)
        assert tree is not None
        title = payload.get("commit_title") or f"Merge pull request #{pull.number}"
        parents = ["-p", base] if method == "squash" else ["-p", base, "-p", head]
        commit = git(repo, "commit-tree", tree, *parents, "-m", title).stdout.strip()
        git(repo, "update-ref", f"refs/heads/{pull.base_ref}", commit, base)
        self._close(slug, pull)
        pull.merged, pull.merged_at, pull.merge_commit_sha = True, now_iso(), commit
        body = {"sha": commit, "merged": True, "message": "Pull Request successfully merged"}
        return self._json(200, body)

    async def update_branch(self, request: Request) -> Response:
        payload = await request.json() if await request.body() else {}
        with self.lock:
            found = self._pull(request)
            if found is None:
                return self._not_found()
            slug, repo, pull = found
            head = self.head_sha(slug, pull)
            expected = payload.get("expected_head_sha")
            if expected and expected != head:
                return self._invalid("expected head sha didn't match current head ref.")
            base = rev_parse(repo, f"refs/heads/{pull.base_ref}") or ""
            if git(repo, "merge-base", "--is-ancestor", base, head).returncode == 0:
                return self._invalid("There are no new commits on the base branch.")
            tree = merge_tree(repo, head, base)
            if tree is None:
                return self._invalid("merge conflict between base and head")
            message = f"Merge branch '{pull.base_ref}' into {pull.head_ref}"
            commit = git(repo, "commit-tree", tree, "-p", head, "-p", base, "-m", message)
            git(repo, "update-ref", f"refs/heads/{pull.head_ref}", commit.stdout.strip(), head)
            pull.updated_at = now_iso()
            body = {"message": "Updating pull request branch.", "url": self._html(slug, pull)}
            return self._json(202, body)

    async def add_labels(self, request: Request) -> Response:
        payload = await request.json()
        with self.lock:
            found = self._pull(request)
            if found is None:
                return self._not_found()
            pull = found[2]
            for name in payload.get("labels", []):
                if name not in pull.labels:
                    pull.labels.append(name)
            labels = [self._label_json(name) for name in pull.labels]
            return self._json(200, labels)

    def _label_json(self, name: str) -> dict[str, Any]:
        return {
            "id": abs(hash(name)) % 10**9,
            "name": name,
            "color": "ededed",
            "default": False,
            "description": None,
        }

    # Checks

    async def list_check_runs(self, request: Request) -> Response:
        with self.lock:
            found = self._repository(request)
            if found is None:
                return self._not_found()
            sha = self._commit(found[1], request.path_params["ref"])
            runs = list(self.check_runs.get(sha, {}).values())
            per_page = min(int(request.query_params.get("per_page", 30)), 100)
            page = int(request.query_params.get("page", 1))
            chosen = runs[(page - 1) * per_page : page * per_page]
            return self._cached_get(request, {"total_count": len(runs), "check_runs": chosen})

    async def combined_status(self, request: Request) -> Response:
        with self.lock:
            found = self._repository(request)
            if found is None:
                return self._not_found()
            slug, repo = found
            sha = self._commit(repo, request.path_params["ref"])
            statuses = list(self.statuses.get(sha, {}).values())
            body = {
                "state": combined_state(statuses),
                "statuses": statuses,
                "sha": sha,
                "total_count": len(statuses),
                "repository": {"full_name": slug},
                "commit_url": f"{self.base_url}/repos/{slug}/commits/{sha}",
                "url": f"{self.base_url}/repos/{slug}/commits/{sha}/status",
            }
            return self._cached_get(request, body)

    def _commit(self, repo: Path, ref: str) -> str:
        if ref in self.check_runs or ref in self.statuses:
            return ref
        return rev_parse(repo, ref) or ref

    def _check_run(
        self, sha: str, name: str, status: str, conclusion: str | None, output: dict[str, Any]
    ) -> dict[str, Any]:
        run_id = self._new_id()
        return {
            "id": run_id,
            "head_sha": sha,
            "external_id": "",
            "url": f"{self.base_url}/check-runs/{run_id}",
            "html_url": f"https://github.com/checks/{run_id}",
            "details_url": f"https://ci.example.com/runs/{run_id}",
            "status": status,
            "conclusion": conclusion if status == "completed" else None,
            "started_at": now_iso(),
            "completed_at": now_iso() if status == "completed" else None,
            "output": {
                "title": output.get("title"),
                "summary": output.get("summary"),
                "text": output.get("text"),
                "annotations_count": 0,
            },
            "name": name,
            "check_suite": {"id": run_id + 1},
            "app": {"slug": "github-actions"},
            "pull_requests": [],
        }

    # Helpers

    def _close(self, slug: str, pull: FakePull) -> None:
        pull.closed_head = self.head_sha(slug, pull)
        pull.state, pull.closed_at = "closed", now_iso()
        pull.updated_at = pull.closed_at

    def _new_number(self, slug: str) -> int:
        return max(self.pulls[slug], default=0) + 1

    def _new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def _html(self, slug: str, pull: FakePull) -> str:
        return f"https://github.com/{slug}/pull/{pull.number}"


def merge_tree(repo: Path, ours: str, theirs: str) -> str | None:
    """Return the tree of merging two commits, or None when they conflict."""
    result = git(repo, "merge-tree", "--write-tree", "--no-messages", ours, theirs)
    return result.stdout.splitlines()[0] if result.returncode == 0 else None


def combined_state(statuses: list[dict[str, Any]]) -> str:
    """GitHub's combined state: failure if any is error or failure, pending if there are
    none or any is pending, else success."""
    states = {status["state"] for status in statuses}
    if states & {"error", "failure"}:
        return "failure"
    if not states or "pending" in states:
        return "pending"
    return "success"


@contextmanager
def serving(fake: FakeGitHub) -> Iterator[str]:
    """Serve ``fake`` on 127.0.0.1 in a thread of its own; yield its base URL."""
    port = free_port()
    config = uvicorn.Config(fake, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="fake-github", daemon=True)
    fake.base_url = f"http://127.0.0.1:{port}"
    thread.start()
    try:
        wait_for_port(port)
        yield fake.base_url
    finally:
        server.should_exit = True
        thread.join(10)


def make_origin(bare: Path, branch: str = "main", files: dict[str, str] | None = None) -> Path:
    """Create a bare repository at ``bare`` with one commit on ``branch``."""
    source = bare.parent / f"{bare.name}.source"
    source.mkdir(parents=True)
    git(source, "init", "--quiet", "--initial-branch", branch)
    for name, text in (files or {"README.md": "# App\n"}).items():
        (source / name).write_text(text)
    git(source, "add", "--all")
    git(source, "commit", "--quiet", "-m", "Initial commit")
    subprocess.run(["git", "clone", "--quiet", "--bare", str(source), str(bare)], check=True)
    return bare
