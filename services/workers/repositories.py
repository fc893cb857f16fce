"""Tracking repositories: clone into the data folder, and remove with their finished workers."""

import asyncio
import logging
import shutil
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cocopilot import bus, keys, store
from cocopilot.commands import AddRepository
from cocopilot.errors import Conflict, InvalidRequest
from cocopilot.events import Event, EventType
from cocopilot.models import Repository
from cocopilot.service import ServiceContext
from cocopilot.timeutil import now_iso
from cocopilot.validation import (
    check_branch,
    check_name,
    check_repository_url,
    local_repository_path,
)
from services.workers import git
from services.workers.forges.github import choose_forge
from services.workers.runtimes import load_profiles
from services.workers.store import WorkerStore

log = logging.getLogger(__name__)


def name_from_url(url: str) -> str:
    """Return the name git clone would give the folder: the URL's last part without .git."""
    path = urlsplit(url).path if "://" in url else url.rsplit(":", 1)[-1]
    last = path.rstrip("/").rsplit("/", 1)[-1]
    return last.removesuffix(".git")


class RepositoryManager:
    def __init__(self, context: ServiceContext, worker_store: WorkerStore) -> None:
        self.context = context
        self.settings = context.settings
        self.store = worker_store

    @property
    def repos_dir(self) -> Path:
        return self.settings.data_dir / "repos"

    @property
    def worktrees_dir(self) -> Path:
        return self.settings.data_dir / "worktrees"

    async def add(self, payload: dict[str, Any]) -> dict[str, Any]:
        request = AddRepository.model_validate(payload)
        if request.default_agent and request.default_agent not in load_profiles(self.settings):
            raise InvalidRequest(
                f"unknown defaultAgent {request.default_agent!r}; available agents: "
                f"{', '.join(sorted(load_profiles(self.settings)))}"
            )
        url = check_repository_url(request.url, self.settings.local_repo_roots)
        name = request.name or check_name(name_from_url(url), "name (from the URL)")
        has_token = self.settings.github_token is not None
        forge, github_repository = choose_forge(
            request.forge, url, request.github_repository, has_token
        )
        async with self._reservation(name):
            repository = await self._clone(name, url, request.default_branch)
            repository.default_agent = request.default_agent
            repository.forge = forge
            repository.github_repository = github_repository
            repository.pr_labels = request.pr_labels
            repository.merge_mode = request.merge_mode
            repository.ci_command = request.ci_command
            await self.store.add_repository(repository)
        await bus.publish_event(
            self.context.nats,
            Event(type=EventType.REPOSITORY_ADDED, repoName=name, data=repository.view().to_dict()),
        )
        log.info("repository added", extra={"repo": name})
        return repository.view().to_dict()

    def _reservation(self, name: str) -> "_Reservation":
        return _Reservation(self.context, name, self.settings.clone_timeout_s)

    async def _clone(self, name: str, url: str, branch: str | None) -> Repository:
        if await store.find_repository(self.context.redis, name):
            raise Conflict(f'Repository "{name}" is already tracked')
        await self._check_local_source(url)
        self.repos_dir.mkdir(parents=True, exist_ok=True)
        final_path = self.repos_dir / name
        # Clone beside the final folder, then rename: a failed clone leaves nothing behind.
        staging = self.repos_dir / f".clone-{uuid.uuid4().hex}"
        try:
            await git.clone(url, staging, self.settings.clone_timeout_s)
            default_branch = branch or await git.default_branch(staging)
            if await git.resolve_branch(staging, check_branch(default_branch)) is None:
                raise InvalidRequest(f'branch "{default_branch}" not found in {url}')
            if final_path.exists():
                shutil.rmtree(final_path)  # left by a removal that did not finish
            staging.rename(final_path)
        finally:
            if staging.exists():
                await asyncio.to_thread(shutil.rmtree, staging, True)
        return Repository(
            name=name,
            url=url,
            path=str(final_path),
            default_branch=default_branch,
            created_at=now_iso(),
        )

    async def _check_local_source(self, url: str) -> None:
        """Reject a local repository whose objects live outside the allowed folders: a ``.git``
        file and an alternates list can point git at any repository on the disk, such as the
        service's own clones."""
        path = local_repository_path(url)
        if path is None:
            return
        code, output, _ = await git.run_git(
            "rev-parse", "--path-format=absolute", "--git-common-dir", cwd=path
        )
        if code != 0:
            return  # not a repository: the clone reports that
        git_dir = Path(output.strip())
        if not await asyncio.to_thread(_owns_its_objects, git_dir, self.settings.local_repo_roots):
            raise InvalidRequest(
                f"invalid url {url!r}: its git data must be inside COCOPILOT_LOCAL_REPO_ROOTS, "
                "with no .git file or alternates pointing elsewhere"
            )

    async def remove(self, payload: dict[str, Any]) -> None:
        name = check_name(str(payload.get("name", "")), "repoName")
        repository = await store.get_repository(self.context.redis, name)
        await self.store.remove_repository(name)
        for worker in await store.list_workers(self.context.redis, name):
            await self.store.delete_worker(worker)
        for folder in ("worktrees", "logs", "ci"):
            await asyncio.to_thread(shutil.rmtree, self.settings.data_dir / folder / name, True)
        await asyncio.to_thread(shutil.rmtree, repository.path, True)
        await bus.publish_event(
            self.context.nats,
            Event(
                type=EventType.REPOSITORY_REMOVED, repoName=name, data=repository.view().to_dict()
            ),
        )
        log.info("repository removed", extra={"repo": name})


class _Reservation:
    """A Redis lock on a repository name while it is cloned, shared by every replica."""

    def __init__(self, context: ServiceContext, name: str, timeout_s: float) -> None:
        self.redis = context.redis
        self.key = keys.repository_lock(name)
        self.name = name
        self.timeout_s = timeout_s
        self.token = uuid.uuid4().hex

    async def __aenter__(self) -> None:
        ttl_ms = int((self.timeout_s + 60) * 1000)
        if not await self.redis.set(self.key, self.token, nx=True, px=ttl_ms):
            raise Conflict(f'Repository "{self.name}" is being added by another request')

    async def __aexit__(self, *exc_info: object) -> None:
        if await self.redis.get(self.key) == self.token:
            await self.redis.delete(self.key)


def _owns_its_objects(git_dir: Path, roots: list[Path]) -> bool:
    """Return whether a repository's git data is inside ``roots``, with no alternates."""
    inside = any(git_dir.resolve().is_relative_to(root.resolve()) for root in roots)
    return inside and not (git_dir / "objects" / "info" / "alternates").exists()
