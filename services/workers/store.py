"""Writing workers and repositories to Redis. Each change is one Lua script, so a limit check and
the insert it guards happen in one atomic step, however many replicas spawn at once."""

from redis.asyncio import Redis

from cocopilot import keys
from cocopilot.errors import Conflict, NotFound
from cocopilot.models import ACTIVE_STATUSES, Repository, Worker

# KEYS: worker, all workers, active workers, repository, repository workers, repository active
# ARGV: name, worker JSON, per-repository limit, global limit (0: none)
_CREATE_WORKER = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 'name_taken' end
if redis.call('EXISTS', KEYS[4]) == 0 then return 'repository_not_found' end
if redis.call('SCARD', KEYS[6]) >= tonumber(ARGV[3]) then return 'repository_limit' end
if tonumber(ARGV[4]) > 0 and redis.call('SCARD', KEYS[3]) >= tonumber(ARGV[4]) then
  return 'global_limit'
end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('SADD', KEYS[5], ARGV[1])
redis.call('SADD', KEYS[6], ARGV[1])
return 'ok'
"""

# KEYS: worker, all active, repository active. ARGV: name, new JSON, is active (1/0), the JSON
# this change was made from. Returns 0 when the stored record is no longer that JSON (changed or
# deleted meanwhile), so no update is ever made from a stale copy.
_REPLACE_WORKER = """
if redis.call('GET', KEYS[1]) ~= ARGV[4] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
if ARGV[3] == '1' then
  redis.call('SADD', KEYS[2], ARGV[1])
  redis.call('SADD', KEYS[3], ARGV[1])
else
  redis.call('SREM', KEYS[2], ARGV[1])
  redis.call('SREM', KEYS[3], ARGV[1])
end
return 1
"""

# KEYS: worker, all workers, all active, repository workers, repository active, output.
# ARGV: name
_DELETE_WORKER = """
local removed = redis.call('DEL', KEYS[1])
for i = 2, 5 do redis.call('SREM', KEYS[i], ARGV[1]) end
redis.call('DEL', KEYS[6])
return removed
"""

# KEYS: repository, all repositories. ARGV: name, repository JSON
_ADD_REPOSITORY = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
return 1
"""


# KEYS: repository, all repositories, repository active workers. ARGV: name
# Atomic with _CREATE_WORKER, so no worker can be spawned into a repository being removed.
_REMOVE_REPOSITORY = """
if redis.call('SCARD', KEYS[3]) > 0 then return 0 end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[1])
return 1
"""


class WorkerStore:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._create = redis.register_script(_CREATE_WORKER)
        self._replace = redis.register_script(_REPLACE_WORKER)
        self._delete = redis.register_script(_DELETE_WORKER)
        self._add_repository = redis.register_script(_ADD_REPOSITORY)
        self._remove_repository = redis.register_script(_REMOVE_REPOSITORY)

    async def create_worker(self, worker: Worker, repo_limit: int, global_limit: int) -> None:
        """Insert ``worker``, or raise Conflict or NotFound; never overshoots a limit."""
        keys_ = [
            keys.worker(worker.name),
            keys.WORKERS,
            keys.ACTIVE_WORKERS,
            keys.repository(worker.repo_name),
            keys.repository_workers(worker.repo_name),
            keys.repository_active_workers(worker.repo_name),
        ]
        args: list[str | int] = [worker.name, worker.to_json(), repo_limit, global_limit]
        outcome = await self._create(keys=keys_, args=args)
        if outcome == "name_taken":
            raise Conflict(f'Worker "{worker.name}" already exists')
        if outcome == "repository_not_found":
            raise NotFound(f'Repository "{worker.repo_name}" not found')
        if outcome == "repository_limit":
            raise Conflict(
                f'Repository "{worker.repo_name}" already has {repo_limit} active workers '
                "(maxWorkersPerRepo); wait for one to finish or stop one"
            )
        if outcome == "global_limit":
            raise Conflict(
                f"{global_limit} workers are already active (maxWorkers); "
                "wait for one to finish or stop one"
            )

    async def read_worker(self, name: str) -> tuple[Worker, str] | None:
        """Return a worker and its stored JSON, for a later ``replace_worker``."""
        raw = await self.redis.get(keys.worker(name))
        return (Worker.model_validate_json(raw), str(raw)) if raw else None

    async def replace_worker(self, worker: Worker, previous_json: str) -> bool:
        """Store ``worker`` if the stored record is still ``previous_json``."""
        keys_ = [
            keys.worker(worker.name),
            keys.ACTIVE_WORKERS,
            keys.repository_active_workers(worker.repo_name),
        ]
        active = "1" if worker.status in ACTIVE_STATUSES else "0"
        args = [worker.name, worker.to_json(), active, previous_json]
        return bool(await self._replace(keys=keys_, args=args))

    async def delete_worker(self, worker: Worker) -> bool:
        keys_ = [
            keys.worker(worker.name),
            keys.WORKERS,
            keys.ACTIVE_WORKERS,
            keys.repository_workers(worker.repo_name),
            keys.repository_active_workers(worker.repo_name),
            keys.worker_output(worker.name),
        ]
        return bool(await self._delete(keys=keys_, args=[worker.name]))

    async def active_worker_names(self) -> list[str]:
        return sorted(str(name) for name in await self.redis.smembers(keys.ACTIVE_WORKERS))

    async def add_repository(self, repository: Repository) -> None:
        keys_ = [keys.repository(repository.name), keys.REPOSITORIES]
        if not await self._add_repository(keys=keys_, args=[repository.name, repository.to_json()]):
            raise Conflict(f'Repository "{repository.name}" is already tracked')

    async def remove_repository(self, name: str) -> None:
        """Stop tracking ``name``, or raise Conflict while it has active workers."""
        keys_ = [keys.repository(name), keys.REPOSITORIES, keys.repository_active_workers(name)]
        if not await self._remove_repository(keys=keys_, args=[name]):
            raise Conflict(f'Repository "{name}" has active workers; stop them first')

    async def next_candy_number(self) -> int:
        return int(await self.redis.incr(keys.CANDY_SEQUENCE))
