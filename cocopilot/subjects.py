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


LIST_AGENTS = f"{COMMANDS_PREFIX}.agents.list"
MESSAGE_BUILT_IN_AGENT = f"{COMMANDS_PREFIX}.agents.message"


def worker_command(instance_id: str, action: str) -> str:
    """Return the subject of the workers replica that runs a worker, because only that replica
    has the agent's process and terminal. ``action`` is one of WORKER_ACTIONS."""
    return f"{COMMANDS_PREFIX}.workers.instance.{instance_id}.{action}"


WORKER_ACTIONS = ("stop", "nudge", "message")


# Stops a worker whose replica is gone; any replica cleans up the record and the worktree.
STOP_ORPHANED_WORKER = f"{COMMANDS_PREFIX}.workers.stop-orphaned"

WEBHOOKS_QUEUE = "webhooks"
CREATE_WEBHOOK = f"{COMMANDS_PREFIX}.webhooks.create"
DELETE_WEBHOOK = f"{COMMANDS_PREFIX}.webhooks.delete"
REDELIVER_WEBHOOK = f"{COMMANDS_PREFIX}.webhooks.redeliver"
TEST_WEBHOOK = f"{COMMANDS_PREFIX}.webhooks.test"
ENABLE_WEBHOOK = f"{COMMANDS_PREFIX}.webhooks.enable"

METRICS_QUEUE = "metrics"
GET_METRICS = f"{COMMANDS_PREFIX}.metrics.get"
LIST_EVENTS = f"{COMMANDS_PREFIX}.metrics.events"  # a page of the activity log
