"""The agents of a repository: built-in ones and one per worker, with their inboxes.

Built-in agents and the message types they act on:

- ``supervisor`` (the Chocolatier) watches the workers. ``nudge-all`` types the message's text
  (or the standard nudge) into every active worker's session.
- ``merge-queue`` (the Temperer) merges green pull requests in order, in repositories whose
  ``mergeMode`` is ``queue``. ``pause`` stops its merges and ``resume`` starts them again.
- ``pr-shepherd`` (the Enrober) takes its place where people merge: it follows the checks and
  notices merges, and never merges.

The supervisor takes ``pause`` and ``resume`` too: while paused, it neither nudges nor fails
stuck workers.

A worker's agent (a Truffle) is named after its worker and takes ``text`` messages, which are
typed into its running session. Every message, whatever its agent, is kept in that agent's
inbox (the newest INBOX_SIZE).
"""

import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis

from cocopilot import keys, store
from cocopilot.commands import AgentMessage
from cocopilot.errors import InvalidRequest, NotFound
from cocopilot.models import Repository, Worker
from cocopilot.timeutil import now_iso

INBOX_SIZE = 1000
SUPERVISOR = "supervisor"
MERGE_QUEUE = "merge-queue"
PR_SHEPHERD = "pr-shepherd"
BUILT_IN_AGENTS = {SUPERVISOR: "Chocolatier", MERGE_QUEUE: "Temperer", PR_SHEPHERD: "Enrober"}
BUILT_IN_MESSAGE_TYPES = {
    SUPERVISOR: ("text", "nudge-all", "pause", "resume"),
    MERGE_QUEUE: ("text", "pause", "resume"),
    PR_SHEPHERD: ("text",),
}


def built_in_agents(repository: Repository) -> list[str]:
    """Return the built-in agents: the supervisor, and the merge queue or, where people
    merge, the PR shepherd."""
    return [SUPERVISOR, MERGE_QUEUE if repository.merge_mode == "queue" else PR_SHEPHERD]


NudgeAll = Callable[[str, str | None], Awaitable[int]]


class Agents:
    def __init__(self, redis: Redis, nudge_all: NudgeAll) -> None:
        self.redis = redis
        self.nudge_all = nudge_all

    async def list(self, repo_name: str) -> list[dict[str, Any]]:
        repository = await store.get_repository(self.redis, repo_name)
        states = {
            str(name): str(state)
            for name, state in (await self.redis.hgetall(keys.agent_state(repo_name))).items()
        }
        agents = [
            self._built_in_view(repo_name, name, states.get(name))
            for name in built_in_agents(repository)
        ]
        workers = await store.list_workers(self.redis, repo_name)
        return agents + [self._worker_view(worker) for worker in workers]

    def _built_in_view(self, repo_name: str, name: str, raw_state: str | None) -> dict[str, Any]:
        state = json.loads(raw_state) if raw_state else {}
        return {
            "name": name,
            "type": name,
            "role": BUILT_IN_AGENTS[name],
            "repoName": repo_name,
            "status": state.get("status", "idle"),
            "lastActivityAt": state.get("lastActivityAt"),
            "acceptsMessageTypes": list(BUILT_IN_MESSAGE_TYPES[name]),
        }

    @staticmethod
    def _worker_view(worker: Worker) -> dict[str, Any]:
        return {
            "name": worker.name,
            "type": "worker",
            "role": "Truffle",
            "repoName": worker.repo_name,
            "status": str(worker.status),
            "lastActivityAt": worker.updated_at,
            "acceptsMessageTypes": ["text"],
        }

    async def message_built_in(
        self, repo_name: str, agent_name: str, message: AgentMessage
    ) -> dict[str, Any]:
        """Store a message to a built-in agent and act on its type."""
        repository = await store.get_repository(self.redis, repo_name)
        if agent_name not in built_in_agents(repository):
            raise NotFound(f'Agent "{agent_name}" not found in repository "{repo_name}"')
        accepted = BUILT_IN_MESSAGE_TYPES[agent_name]
        if message.type not in accepted:
            raise InvalidRequest(
                f"{agent_name} does not take {message.type!r} messages; "
                f"it takes {', '.join(accepted)}"
            )
        result: dict[str, Any] = {}
        if message.type == "nudge-all":
            result["nudged"] = await self.nudge_all(repo_name, message.text)
        elif message.type in ("pause", "resume"):
            status = "paused" if message.type == "pause" else "idle"
            await self.set_state(repo_name, agent_name, status)
        return await self.store_message(repo_name, agent_name, message, result)

    async def set_state(self, repo_name: str, agent_name: str, status: str) -> None:
        state = {"status": status, "lastActivityAt": now_iso()}
        await self.redis.hset(keys.agent_state(repo_name), agent_name, json.dumps(state))

    async def store_message(
        self, repo_name: str, agent_name: str, message: AgentMessage, result: dict[str, Any]
    ) -> dict[str, Any]:
        record = {
            "id": str(uuid.uuid4()),
            "agent": agent_name,
            "repoName": repo_name,
            **message.model_dump(by_alias=True, exclude_none=True),
            "createdAt": now_iso(),
            "result": result,
        }
        inbox = keys.agent_inbox(repo_name, agent_name)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.lpush(inbox, json.dumps(record))
            pipe.ltrim(inbox, 0, INBOX_SIZE - 1)
            await pipe.execute()
        return record
