"""Agents of a repository: the built-in supervisor and merge queue, and one per worker."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, status
from pydantic import BaseModel, Field

from cocopilot import store, subjects
from cocopilot.commands import BUILT_IN_AGENT_NAMES, AgentMessage
from services.api.errors import error_responses
from services.api.schemas import AgentNamePath, RepoNamePath
from services.api.state import ApiState, get_state

router = APIRouter(tags=["agents"])

State = Annotated[ApiState, Depends(get_state)]
BUILT_IN_AGENTS = BUILT_IN_AGENT_NAMES


class AgentView(BaseModel):
    name: str = Field(examples=["supervisor"])
    type: str = Field(description="supervisor, merge-queue or worker", examples=["supervisor"])
    role: str = Field(examples=["Chocolatier"])
    repo_name: str = Field(alias="repoName", examples=["my-app"])
    status: str = Field(examples=["idle"])
    last_activity_at: str | None = Field(alias="lastActivityAt")
    accepts_message_types: list[str] = Field(
        alias="acceptsMessageTypes", examples=[["text", "nudge-all"]]
    )


class StoredMessage(BaseModel):
    id: str
    agent: str = Field(examples=["supervisor"])
    repo_name: str = Field(alias="repoName")
    type: str = Field(examples=["nudge-all"])
    text: str | None = None
    payload: dict[str, Any] | None = None
    sender: str | None = Field(default=None, alias="from")
    created_at: str = Field(alias="createdAt")
    result: dict[str, Any] = Field(
        description='What the agent did: {"delivered": true} for a worker, '
        '{"nudged": N} for nudge-all'
    )


@router.get(
    "/repositories/{repoName}/agents",
    summary="List a repository's agents",
    responses=error_responses(400, 404, 503, 504),
)
async def list_agents(repo_name: RepoNamePath, state: State) -> list[AgentView]:
    await store.get_repository(state.redis, repo_name)
    result = await state.command(subjects.LIST_AGENTS, {"repoName": repo_name})
    return [AgentView.model_validate(agent) for agent in result]


@router.post(
    "/repositories/{repoName}/agents/{agentName}/message",
    status_code=status.HTTP_201_CREATED,
    summary="Send a message to an agent",
    description="A worker's agent takes text, typed into its running session. The supervisor "
    "takes nudge-all (nudges every active worker); the merge queue takes pause and resume. "
    "Every message is kept in the agent's inbox.",
    responses=error_responses(400, 404, 409, 503, 504),
)
async def message_agent(
    repo_name: RepoNamePath, agent_name: AgentNamePath, body: AgentMessage, state: State
) -> StoredMessage:
    await store.get_repository(state.redis, repo_name)
    payload = {"repoName": repo_name, "agent": agent_name, "body": body.model_dump(by_alias=True)}
    if agent_name in BUILT_IN_AGENTS:
        result = await state.command(subjects.MESSAGE_BUILT_IN_AGENT, payload)
    else:
        worker = await store.get_repository_worker(state.redis, repo_name, agent_name)
        payload["name"] = agent_name
        result = await state.command(
            subjects.worker_command(worker.instance_id, "message"), payload
        )
    return StoredMessage.model_validate(result)


@router.get(
    "/repositories/{repoName}/agents/{agentName}/messages",
    summary="List an agent's inbox, newest first",
    responses=error_responses(400, 404),
)
async def list_messages(
    repo_name: RepoNamePath,
    agent_name: AgentNamePath,
    state: State,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[StoredMessage]:
    await store.get_repository(state.redis, repo_name)
    if agent_name not in BUILT_IN_AGENTS:
        await store.get_repository_worker(state.redis, repo_name, agent_name)
    messages = await store.list_agent_messages(state.redis, repo_name, agent_name, limit)
    return [StoredMessage.model_validate(message) for message in messages]
