"""Redis key names, defined once. Every key starts with ``cocopilot:``."""

PREFIX = "cocopilot"

CONFIG = f"{PREFIX}:config"

REPOSITORIES = f"{PREFIX}:repositories"  # set of repository names


def repository(name: str) -> str:
    return f"{PREFIX}:repository:{name}"  # JSON of the repository record


WORKERS = f"{PREFIX}:workers"  # set of all worker names
ACTIVE_WORKERS = f"{PREFIX}:workers:active"  # set of names in an active status


def worker(name: str) -> str:
    return f"{PREFIX}:worker:{name}"  # JSON of the worker record


def repository_workers(repo_name: str) -> str:
    return f"{PREFIX}:repository:{repo_name}:workers"


def repository_active_workers(repo_name: str) -> str:
    return f"{PREFIX}:repository:{repo_name}:workers:active"


# Names handed out once and never reused, so auto-assigned names stay unique.
CANDY_SEQUENCE = f"{PREFIX}:workers:candy-sequence"

WEBHOOKS = f"{PREFIX}:webhooks"  # hash: webhook id -> JSON registration


def service_heartbeat(service: str, instance_id: str) -> str:
    return f"{PREFIX}:service:{service}:{instance_id}"


SERVICE_HEARTBEAT_PATTERN = f"{PREFIX}:service:*"


def metrics(name: str) -> str:
    return f"{PREFIX}:metrics:{name}"


def processed_event(consumer: str, event_id: str) -> str:
    return f"{PREFIX}:processed:{consumer}:{event_id}"
