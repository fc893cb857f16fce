"""One-line descriptions of events, for the activity log."""

from collections.abc import Callable
from typing import Any

from cocopilot.events import Event, EventType

MAX_DESCRIPTION_CHARS = 200
MAX_QUOTED_CHARS = 80  # of a task or an error inside a description


def one_line(text: str, max_chars: int) -> str:
    """Collapse all whitespace to single spaces and cut to ``max_chars``, marking a cut with …."""
    flat = " ".join(text.split())
    return flat if len(flat) <= max_chars else flat[: max_chars - 1] + "…"


def worker_name(event: Event) -> str | None:
    """Return the worker an event is about: ``data.worker``, or ``data.name`` of a worker event.

    Messages to agents (``agent.message``) name no worker, because the agent may be a built-in.
    """
    value = event.data.get("worker")
    if value is None and event.type.startswith("worker."):
        value = event.data.get("name")
    return value if isinstance(value, str) and value else None


def describe(event: Event) -> str:
    describer = _DESCRIBERS.get(event.type, _describe_other)
    return one_line(describer(event, event.data), MAX_DESCRIPTION_CHARS)


def _text(data: dict[str, Any], field: str, default: str = "?") -> str:
    value = data.get(field)
    return str(value) if value not in (None, "") else default


def _worker_created(event: Event, data: dict[str, Any]) -> str:
    task = one_line(_text(data, "task", ""), MAX_QUOTED_CHARS)
    return f"Worker {_text(data, 'name')} started on {event.repo_name or '?'}: {task}"


def _worker_updated(event: Event, data: dict[str, Any]) -> str:
    return f"Worker {_text(data, 'name')} is {_text(data, 'status')}"


def _worker_completed(event: Event, data: dict[str, Any]) -> str:
    return f"Worker {_text(data, 'name')} completed its task"


def _worker_failed(event: Event, data: dict[str, Any]) -> str:
    error = data.get("error")
    reason = f": {one_line(str(error), MAX_QUOTED_CHARS)}" if error else ""
    return f"Worker {_text(data, 'name')} failed{reason}"


def _worker_removed(event: Event, data: dict[str, Any]) -> str:
    return f"Worker {_text(data, 'name')} removed"


def _pr_created(event: Event, data: dict[str, Any]) -> str:
    branches = f"{_text(data, 'branch')} into {_text(data, 'baseBranch')}"
    return f"Pull request #{_text(data, 'number')} opened from {branches}"


def _pr_merged(event: Event, data: dict[str, Any]) -> str:
    return f"Pull request #{_text(data, 'number')} merged into {_text(data, 'baseBranch')}"


def _ci_failed(event: Event, data: dict[str, Any]) -> str:
    failed = [
        str(check.get("name"))
        for check in data.get("checks") or []
        if isinstance(check, dict)
        and check.get("conclusion") not in ("success", "neutral", "skipped")
    ]
    checks = f": {', '.join(failed)}" if failed else ""
    return f"CI failed on pull request #{_text(data, 'prNumber')}{checks}"


def _ci_passed(event: Event, data: dict[str, Any]) -> str:
    return f"CI passed on pull request #{_text(data, 'prNumber')}"


def _worker_nudged(event: Event, data: dict[str, Any]) -> str:
    message = one_line(_text(data, "message", ""), MAX_QUOTED_CHARS)
    return f"Worker {_text(data, 'worker')} nudged by {_text(data, 'by')}: {message}"


def _agent_message(event: Event, data: dict[str, Any]) -> str:
    text = data.get("text")
    content = f": {one_line(str(text), MAX_QUOTED_CHARS)}" if text else ""
    return f"Message ({_text(data, 'type', 'text')}) to agent {_text(data, 'agent')}{content}"


def _repository_added(event: Event, data: dict[str, Any]) -> str:
    return f"Repository {event.repo_name or _text(data, 'name')} added"


def _repository_removed(event: Event, data: dict[str, Any]) -> str:
    return f"Repository {event.repo_name or _text(data, 'name')} removed"


def _pr_reviewed(event: Event, data: dict[str, Any]) -> str:
    reviews = data.get("reviews") or {}
    states = ", ".join(f"{name} {state}" for name, state in sorted(reviews.items()))
    return f"Pull request #{_text(data, 'number')} reviewed: {states or 'no reviews'}"


def _describe_other(event: Event, data: dict[str, Any]) -> str:
    return f"Event {event.type}"


_DESCRIBERS: dict[str, Callable[[Event, dict[str, Any]], str]] = {
    EventType.WORKER_CREATED: _worker_created,
    EventType.WORKER_UPDATED: _worker_updated,
    EventType.WORKER_COMPLETED: _worker_completed,
    EventType.WORKER_FAILED: _worker_failed,
    EventType.WORKER_REMOVED: _worker_removed,
    EventType.PR_CREATED: _pr_created,
    EventType.PR_MERGED: _pr_merged,
    EventType.CI_FAILED: _ci_failed,
    EventType.CI_PASSED: _ci_passed,
    EventType.PR_REVIEWED: _pr_reviewed,
    EventType.WORKER_NUDGED: _worker_nudged,
    EventType.AGENT_MESSAGE: _agent_message,
    EventType.REPOSITORY_ADDED: _repository_added,
    EventType.REPOSITORY_REMOVED: _repository_removed,
}
