"""Reading the records that the services keep in Redis. Each record has one writer: repositories
and workers are written by the workers service, webhooks by the webhooks service.

Every client is made with ``decode_responses=True``, so Redis returns ``str``, not ``bytes``."""

import json
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis

from cocopilot import keys
from cocopilot.errors import NotFound
from cocopilot.models import PullRequest, Repository, Webhook, Worker


async def find_worker(redis: Redis, name: str) -> Worker | None:
    raw = await redis.get(keys.worker(name))
    return Worker.model_validate_json(raw) if raw else None


async def get_worker(redis: Redis, name: str) -> Worker:
    worker = await find_worker(redis, name)
    if worker is None:
        raise NotFound(f'Worker "{name}" not found')
    return worker


async def get_repository_worker(redis: Redis, repo_name: str, worker_name: str) -> Worker:
    """Return a worker of a given repository; NotFound names whichever of the two is missing."""
    await get_repository(redis, repo_name)
    worker = await find_worker(redis, worker_name)
    if worker is None or worker.repo_name != repo_name:
        raise NotFound(f'Worker "{worker_name}" not found in repository "{repo_name}"')
    return worker


async def _records_of(redis: Redis, index: str, key_of: Callable[[str], str]) -> list[str]:
    """Return the stored JSON of every name in the set ``index``, skipping deleted ones."""
    names = sorted(str(name) for name in await redis.smembers(index))
    if not names:
        return []
    return [str(raw) for raw in await redis.mget([key_of(name) for name in names]) if raw]


async def list_workers(redis: Redis, repo_name: str | None = None) -> list[Worker]:
    index = keys.WORKERS if repo_name is None else keys.repository_workers(repo_name)
    workers = [
        Worker.model_validate_json(raw) for raw in await _records_of(redis, index, keys.worker)
    ]
    return sorted(workers, key=lambda worker: (worker.created_at, worker.name))


async def find_repository(redis: Redis, name: str) -> Repository | None:
    raw = await redis.get(keys.repository(name))
    return Repository.model_validate_json(raw) if raw else None


async def get_repository(redis: Redis, name: str) -> Repository:
    repository = await find_repository(redis, name)
    if repository is None:
        raise NotFound(f'Repository "{name}" not found')
    return repository


async def list_repositories(redis: Redis) -> list[Repository]:
    records = await _records_of(redis, keys.REPOSITORIES, keys.repository)
    return [Repository.model_validate_json(raw) for raw in records]


async def list_webhooks(redis: Redis) -> list[Webhook]:
    records = await redis.hvals(keys.WEBHOOKS)
    webhooks = [Webhook.model_validate_json(raw) for raw in records]
    return sorted(webhooks, key=lambda webhook: (webhook.created_at, webhook.id))


async def list_agent_messages(
    redis: Redis, repo_name: str, agent_name: str, limit: int
) -> list[dict[str, Any]]:
    """Return an agent's inbox, newest first."""
    raw = await redis.lrange(keys.agent_inbox(repo_name, agent_name), 0, limit - 1)
    return [json.loads(item) for item in raw]


async def list_pull_requests(redis: Redis, repo_name: str) -> list[PullRequest]:
    records = await redis.hvals(keys.pull_requests(repo_name))
    pulls = [PullRequest.model_validate_json(raw) for raw in records]
    return sorted(pulls, key=lambda pr: pr.number)
