"""NATS subjects and JetStream names, defined once."""

EVENTS_STREAM = "COCOPILOT_EVENTS"
EVENTS_PREFIX = "cocopilot.events"
EVENTS_WILDCARD = f"{EVENTS_PREFIX}.>"


def event(event_type: str) -> str:
    return f"{EVENTS_PREFIX}.{event_type}"


COMMANDS_PREFIX = "cocopilot.commands"

# Shared by every workers replica through the queue group below; any replica may take them.
WORKERS_QUEUE = "workers"
SPAWN_WORKER = f"{COMMANDS_PREFIX}.workers.spawn"
ADD_REPOSITORY = f"{COMMANDS_PREFIX}.repositories.add"
REMOVE_REPOSITORY = f"{COMMANDS_PREFIX}.repositories.remove"


def stop_worker(instance_id: str) -> str:
    """Subject of the workers replica that runs a worker; only that replica can stop it."""
    return f"{COMMANDS_PREFIX}.workers.instance.{instance_id}.stop"


# Stops a worker whose replica is gone; any replica cleans up the record and the worktree.
STOP_ORPHANED_WORKER = f"{COMMANDS_PREFIX}.workers.stop-orphaned"

WEBHOOKS_QUEUE = "webhooks"
CREATE_WEBHOOK = f"{COMMANDS_PREFIX}.webhooks.create"
DELETE_WEBHOOK = f"{COMMANDS_PREFIX}.webhooks.delete"

METRICS_QUEUE = "metrics"
GET_METRICS = f"{COMMANDS_PREFIX}.metrics.get"
