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


def repository_lock(name: str) -> str:
    return f"{PREFIX}:repository:{name}:lock"  # held while the repository is cloned


# Metrics aggregates, kept per scope: "all", or "repository:<name>" for one repository.
METRICS_SCOPES = metrics("scopes")  # set of the scopes that have aggregates
METRICS_EVENT_COUNTS = metrics("event-counts")  # hash: event type -> events seen


def metrics_throughput(scope: str) -> str:
    return metrics(f"{scope}:throughput")  # hash: "YYYY-MM-DDTHH:00" -> worker.completed count


def metrics_ci_results(scope: str) -> str:
    return metrics(f"{scope}:ci-results")  # hash: "pass" or "fail" -> CI results


def metrics_tasks_by_model(scope: str) -> str:
    return metrics(f"{scope}:tasks-by-model")  # hash: model -> worker.created count


def metrics_tokens_by_model(scope: str, direction: str) -> str:
    return metrics(f"{scope}:{direction}-tokens-by-model")  # direction: "input" or "output"


def metrics_pr_cycle(scope: str) -> str:
    return metrics(f"{scope}:pr-cycle")  # hash: "YYYY-MM-DD:count" and "YYYY-MM-DD:ms"


def metrics_pull_request(repo_name: str, number: int) -> str:
    return metrics(f"pull-request:{repo_name}:{number}")  # hash: creation and merge times


# Activity log: entries by event id, and sorted sets of event ids scored by event time in ms.
ACTIVITY_ENTRIES = f"{PREFIX}:activity:entries"  # hash: event id -> JSON of the entry
ACTIVITY = f"{PREFIX}:activity:all"


def activity_by_type(event_type: str) -> str:
    return f"{PREFIX}:activity:type:{event_type}"


def activity_by_repository(repo_name: str) -> str:
    return f"{PREFIX}:activity:repository:{repo_name}"


def activity_by_repository_type(repo_name: str, event_type: str) -> str:
    return f"{PREFIX}:activity:repository:{repo_name}:type:{event_type}"


def activity_by_worker(worker_name: str) -> str:
    return f"{PREFIX}:activity:worker:{worker_name}"


# Written by the webhooks service, read by the api's /metrics: outcome -> deliveries (HINCRBY).
WEBHOOK_DELIVERY_OUTCOMES = f"{PREFIX}:webhooks:delivery-outcomes"

# Webhook delivery, written by the webhooks service. Times are milliseconds since the epoch.
WEBHOOKS_DISABLED = f"{PREFIX}:webhooks:disabled"  # hash: webhook id -> JSON of why and when
# Sorted set: webhook id -> when that webhook next has a delivery to attempt.
WEBHOOKS_READY = f"{PREFIX}:webhooks:ready"


def webhook_queue(webhook_id: str) -> str:
    return f"{PREFIX}:webhook:{webhook_id}:queue"  # sorted set: delivery id -> next attempt time


def webhook_in_flight(webhook_id: str) -> str:
    return f"{PREFIX}:webhook:{webhook_id}:in-flight"  # sorted set: delivery id -> lease end


def webhook_breaker(webhook_id: str) -> str:
    return f"{PREFIX}:webhook:{webhook_id}:breaker"  # hash: failures, openings, openUntil


def webhook_deliveries(webhook_id: str) -> str:
    return f"{PREFIX}:webhook:{webhook_id}:deliveries"  # sorted set: delivery id -> creation


def webhook_delivery(delivery_id: str) -> str:
    return f"{PREFIX}:webhook-delivery:{delivery_id}"  # hash: the delivery record


def webhook_delivery_attempts(delivery_id: str) -> str:
    return f"{PREFIX}:webhook-delivery:{delivery_id}:attempts"  # list: JSON of each attempt


def agent_inbox(repo_name: str, agent_name: str) -> str:
    return f"{PREFIX}:repository:{repo_name}:agent:{agent_name}:inbox"  # list, newest first


def agent_state(repo_name: str) -> str:
    return f"{PREFIX}:repository:{repo_name}:agents"  # hash: built-in agent -> JSON of its state


def worker_output(name: str) -> str:
    return f"{PREFIX}:worker:{name}:output"  # stream of the agent's output lines, capped


def pull_requests(repo_name: str) -> str:
    return f"{PREFIX}:repository:{repo_name}:prs"  # hash: number -> JSON of the pull request


def pull_request_sequence(repo_name: str) -> str:
    return f"{PREFIX}:repository:{repo_name}:prs:sequence"  # numbers of the local forge


def merge_queue_lease(repo_name: str) -> str:
    return f"{PREFIX}:repository:{repo_name}:merge-queue:lease"  # the replica that tends it
