"""Service settings, read from the environment (prefix ``COCOPILOT_``) by pydantic-settings."""

import re
import socket
from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="COCOPILOT_", extra="ignore")

    redis_url: str = "redis://localhost:6379/0"
    nats_url: str = "nats://localhost:4222"
    # Identifies one running service process; commands for a worker go to the instance that runs it.
    instance_id: str = Field(
        default_factory=lambda: re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname()),
        pattern=r"^[A-Za-z0-9_-]{1,64}$",  # one NATS subject token
    )
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
    # argv template that continues the ``command`` agent's session after a restart, if it can.
    agent_resume_command: list[str] = []
    demo_agent_delay_s: float = 1.0

    # webhooks
    webhook_allowed_networks: list[str] = []
    webhook_timeout_s: float = 15.0
    webhook_connect_timeout_s: float = 5.0
    # Wait before each retry of a failed delivery, in order; the delivery fails for good after
    # the last. The default spans about 3.9 days: 5 s, 30 s, 2 min, 10 min, 30 min, 1 h, 3 h,
    # 6 h, 12 h, then daily three times.
    webhook_retry_delays_s: list[float] = Field(
        default=[5, 30, 120, 600, 1800, 3600, 10800, 21600, 43200, 86400, 86400, 86400],
        min_length=1,
    )
    # Each retry delay is scaled by a random factor in [1 - jitter, 1 + jitter].
    webhook_retry_jitter: float = Field(default=0.2, ge=0, lt=1)
    # Longest Retry-After (sent with 429 or 503) that delivery honours; longer values are cut.
    webhook_retry_after_max_s: float = Field(default=3600.0, ge=0)
    # Attempts in flight at once: to one webhook over all replicas, and in one replica overall.
    webhook_endpoint_concurrency: int = Field(default=10, ge=1)
    webhook_max_concurrency: int = Field(default=200, ge=1)
    # Consecutive failed attempts that pause a webhook; after the pause one probe goes out, and
    # each failed probe doubles the pause up to the maximum.
    webhook_breaker_failures: int = Field(default=5, ge=1)
    webhook_breaker_pause_s: float = Field(default=30.0, gt=0)
    webhook_breaker_pause_max_s: float = Field(default=900.0, gt=0)
    # Delivery records (with their attempts) are deleted this long after their last change.
    webhook_delivery_retention_s: float = Field(default=30 * 86400, gt=0)
    # How often a replica looks for due deliveries when nothing wakes it sooner.
    webhook_poll_interval_s: float = Field(default=0.25, gt=0)
    # An event not acked within this time (the service died) is handed out again by JetStream.
    webhook_event_ack_wait_s: float = Field(default=30.0, gt=0)

    # github forge
    # Token for GitHub's REST API and git pushes: COCOPILOT_GITHUB_TOKEN, else GH_TOKEN, else
    # GITHUB_TOKEN. Agents never see COCOPILOT_GITHUB_TOKEN, since their environment drops
    # every COCOPILOT_ variable.
    github_token: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("COCOPILOT_GITHUB_TOKEN", "GH_TOKEN", "GITHUB_TOKEN"),
    )
    # https, or plain http to a loopback address only (a test server).
    github_api_url: str = "https://api.github.com"
    # How often pull request states and pending checks are read from GitHub.
    github_poll_interval_s: float = Field(default=60.0, gt=0)
    # A head commit with no checks and no statuses counts as "no checks" only after this long,
    # since CI takes a moment after a push to report its first check.
    github_checks_grace_s: float = Field(default=60.0, ge=0)
    # Minimum time between two POST, PUT or PATCH requests, as GitHub's REST best practices
    # recommend.
    github_mutation_interval_s: float = Field(default=1.0, ge=0)
    # Maximum wait for a rate limit to reset; a request that would wait longer fails.
    github_rate_limit_max_wait_s: float = Field(default=3900.0, ge=0)
    github_request_timeout_s: float = Field(default=30.0, gt=0)

    # metrics
    # Activity log entries older than this are deleted; GET /api/v1/events never shows them.
    activity_retention_days: float = Field(default=30.0, gt=0)
    # Days of pull-request cycle time that GET /api/v1/metrics returns, today included.
    metrics_cycle_time_days: int = Field(default=30, ge=1, le=366)
    # How often the metrics service deletes hour and day buckets and log entries past their time.
    metrics_prune_interval_s: float = Field(default=300.0, gt=0)

    heartbeat_interval_s: float = 5.0
    # A folder where each service touches a file on every heartbeat, for container healthchecks.
    health_dir: Path = Path("/tmp/cocopilot-health")  # noqa: S108 (one fixed, private name)


@lru_cache
def get_settings() -> Settings:
    return Settings()
