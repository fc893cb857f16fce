"""Service settings, read from the environment (prefix ``COCOPILOT_``) by pydantic-settings."""

import socket
from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="COCOPILOT_", extra="ignore")

    redis_url: str = "redis://localhost:6379/0"
    nats_url: str = "nats://localhost:4222"
    # Identifies one running service process; commands for a worker go to the instance that runs it.
    instance_id: str = Field(default_factory=socket.gethostname)
    log_level: str = "INFO"
    log_format: str = Field(default="json", pattern="^(json|text)$")

    # api
    host: str = "127.0.0.1"
    port: int = 3000
    api_token: str | None = None
    command_timeout_s: float = 10.0
    clone_timeout_s: float = 600.0

    # workers
    data_dir: Path = Path("/data")
    # Folders whose git repositories may be registered by local path or file:// URL.
    local_repo_roots: list[Path] = [Path("/repos")]
    agent_stop_grace_s: float = 5.0
    # argv template of the ``command`` agent profile, as a JSON list, for example
    # ["claude", "-p", "{task}", "--model", "{model}"].
    agent_command: list[str] = []
    demo_agent_delay_s: float = 1.0

    # webhooks
    webhook_allowed_networks: list[str] = []
    webhook_timeout_s: float = 15.0
    webhook_connect_timeout_s: float = 5.0

    heartbeat_interval_s: float = 5.0
    # A folder where each service touches a file on every heartbeat, for container healthchecks.
    health_dir: Path = Path("/tmp/cocopilot-health")  # noqa: S108 (one fixed, private name)


@lru_cache
def get_settings() -> Settings:
    return Settings()
