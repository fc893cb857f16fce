"""State shared by the routes: settings and the Redis and NATS connections, made at start."""

from dataclasses import dataclass
from typing import Any

from fastapi import Request
from nats.aio.client import Client as NATS
from redis.asyncio import Redis

from cocopilot import bus
from cocopilot.settings import Settings


@dataclass
class ApiState:
    settings: Settings
    redis: Redis
    nats: NATS
    started_at: str

    async def command(
        self, subject: str, payload: dict[str, Any], timeout_s: float | None = None
    ) -> Any:
        return await bus.request(
            self.nats, subject, payload, timeout_s or self.settings.command_timeout_s
        )


def get_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.api
    return state
