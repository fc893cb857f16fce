"""The activity log: one entry per event, newest first, kept for a configured time.

Entries are stored as JSON in one hash by event id. Sorted sets of event ids, scored by the event
time in milliseconds, index them: every event, by type, by repository, by repository and type,
and by worker. A page is read from the one index that fits the filters, so a request reads about
as many entries as it returns.
"""

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from redis.asyncio import Redis

from cocopilot import keys
from cocopilot.errors import InvalidRequest
from cocopilot.events import Event, EventType
from cocopilot.timeutil import format_time, parse_time
from cocopilot.validation import check_name
from services.metrics.descriptions import describe, worker_name

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
# Entries read from an index per round trip, at least; more when the page is larger.
MIN_SCAN_BATCH = 100
# A request stops after reading this many entries and returns a cursor from where it stopped, so a
# filter that rejects most entries of its index never walks the whole index in one request.
MAX_SCANNED_ENTRIES = 10_000
PRUNE_BATCH = 500


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def time_ms(moment: datetime) -> int:
    # Integer arithmetic: a float timestamp times 1000 can land one millisecond short.
    return (moment - EPOCH) // timedelta(milliseconds=1)


def entry_of(event: Event, moment: datetime) -> dict[str, Any]:
    """Build the activity log entry of ``event``, which happened at ``moment``."""
    entry: dict[str, Any] = {"id": event.id, "type": str(event.type), "repoName": event.repo_name}
    worker = worker_name(event)
    if worker is not None:
        entry["workerName"] = worker
    entry["description"] = describe(event)
    entry["time"] = format_time(moment)
    return entry


def index_keys(entry: dict[str, Any]) -> list[str]:
    """Return the sorted sets that list ``entry``."""
    event_type = entry["type"]
    found = [keys.ACTIVITY, keys.activity_by_type(event_type)]
    repo_name = entry.get("repoName")
    if repo_name:
        found += [
            keys.activity_by_repository(repo_name),
            keys.activity_by_repository_type(repo_name, event_type),
        ]
    worker = entry.get("workerName")
    if worker:
        found.append(keys.activity_by_worker(worker))
    return found


@dataclass(frozen=True, order=True)
class Position:
    """The place of an entry in the log, by time and then event id; pages run newest to oldest."""

    time_ms: int
    event_id: str


def encode_cursor(position: Position) -> str:
    raw = json.dumps({"t": position.time_ms, "id": position.event_id}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> Position:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        fields = json.loads(raw)
        return Position(int(fields["t"]), str(fields["id"]))
    except (binascii.Error, ValueError, TypeError, KeyError) as exc:
        raise InvalidRequest(
            "invalid cursor: pass the nextCursor of a previous response unchanged"
        ) from exc


@dataclass(frozen=True)
class ActivityQuery:
    event_type: str | None = None
    repo_name: str | None = None
    worker_name: str | None = None
    since_ms: int | None = None  # inclusive
    until_ms: int | None = None  # exclusive
    limit: int = DEFAULT_LIMIT
    after: Position | None = None

    def matches(self, entry: dict[str, Any]) -> bool:
        return (
            (self.event_type is None or entry.get("type") == self.event_type)
            and (self.repo_name is None or entry.get("repoName") == self.repo_name)
            and (self.worker_name is None or entry.get("workerName") == self.worker_name)
        )

    def index_key(self) -> str:
        """Return the narrowest index that contains every entry the filters accept."""
        if self.worker_name is not None:
            return keys.activity_by_worker(self.worker_name)
        if self.repo_name is not None and self.event_type is not None:
            return keys.activity_by_repository_type(self.repo_name, self.event_type)
        if self.repo_name is not None:
            return keys.activity_by_repository(self.repo_name)
        if self.event_type is not None:
            return keys.activity_by_type(self.event_type)
        return keys.ACTIVITY


def parse_query(payload: dict[str, Any]) -> ActivityQuery:
    """Check the filters of a LIST_EVENTS command; raise InvalidRequest naming a bad one."""
    since_ms = _optional_time_ms(payload.get("since"), "since")
    until_ms = _optional_time_ms(payload.get("until"), "until")
    if since_ms is not None and until_ms is not None and since_ms >= until_ms:
        raise InvalidRequest("since must be earlier than until")
    cursor = payload.get("cursor")
    return ActivityQuery(
        event_type=_optional_event_type(payload.get("type")),
        repo_name=_optional_name(payload.get("repoName"), "repoName"),
        worker_name=_optional_name(payload.get("workerName"), "workerName"),
        since_ms=since_ms,
        until_ms=until_ms,
        limit=_limit(payload.get("limit")),
        after=decode_cursor(str(cursor)) if cursor else None,
    )


def _optional_event_type(value: Any) -> str | None:
    if value is None:
        return None
    known = [str(event_type) for event_type in EventType]
    if value not in known:
        raise InvalidRequest(f"invalid type {value!r}: use one of {', '.join(known)}")
    return str(value)


def _optional_name(value: Any, field: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"invalid {field}: must be a string")
    return check_name(value, field)


def _optional_time_ms(value: Any, field: str) -> int | None:
    if value is None:
        return None
    try:
        moment = parse_time(str(value))
    except ValueError as exc:
        raise InvalidRequest(
            f"invalid {field} {value!r}: use an ISO 8601 time such as 2026-01-28T12:00:00.000Z"
        ) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return time_ms(moment)


def _limit(value: Any) -> int:
    if value is None:
        return DEFAULT_LIMIT
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_LIMIT:
        raise InvalidRequest(f"invalid limit {value!r}: use a whole number from 1 to {MAX_LIMIT}")
    return value


async def list_events(redis: Redis, query: ActivityQuery, oldest_ms: int) -> dict[str, Any]:
    """Return one page of entries, newest first, and the cursor of the next page or None.

    Entries older than ``oldest_ms`` are past the retention time and never returned, even before
    the prune removes them.
    """
    scan = _Scan(redis, query, oldest_ms)
    await scan.run()
    events = [entry for _, entry in scan.found[: query.limit]]
    return {"events": events, "nextCursor": scan.next_cursor()}


class _Scan:
    """Reads one index from the newest position down until a page, plus one entry, is found."""

    def __init__(self, redis: Redis, query: ActivityQuery, oldest_ms: int) -> None:
        self.redis = redis
        self.query = query
        self.key = query.index_key()
        self.low = max(oldest_ms, query.since_ms) if query.since_ms is not None else oldest_ms
        self.high = self._upper_bound()
        self.batch = max(MIN_SCAN_BATCH, query.limit + 1)
        self.found: list[tuple[Position, dict[str, Any]]] = []
        self.last_read: Position | None = None
        self.scanned = 0
        self.exhausted = False

    def _upper_bound(self) -> str:
        after, until_ms = self.query.after, self.query.until_ms
        if after is not None and (until_ms is None or after.time_ms < until_ms):
            # Inclusive: entries at the cursor's own millisecond that sort below it still follow.
            return str(after.time_ms)
        return "+inf" if until_ms is None else f"({until_ms}"

    async def run(self) -> None:
        offset = 0
        while not self._done():
            rows: list[tuple[str, float]] = await self.redis.zrevrangebyscore(
                self.key, self.high, self.low, start=offset, num=self.batch, withscores=True
            )  # type: ignore[assignment]  # the stubs do not narrow the type by withscores
            offset += len(rows)
            self.exhausted = len(rows) < self.batch
            await self._read(rows)

    def _done(self) -> bool:
        full = len(self.found) > self.query.limit
        return full or self.exhausted or self.scanned >= MAX_SCANNED_ENTRIES

    async def _read(self, rows: list[tuple[str, float]]) -> None:
        after = self.query.after
        positions = [Position(int(score), member) for member, score in rows]
        positions = [position for position in positions if after is None or position < after]
        if not positions:
            return
        raw_entries = await self.redis.hmget(keys.ACTIVITY_ENTRIES, [p.event_id for p in positions])
        for position, raw in zip(positions, raw_entries, strict=True):
            self.scanned += 1
            self.last_read = position
            entry = json.loads(raw) if raw else None
            if entry is not None and self.query.matches(entry):
                self.found.append((position, entry))
                if len(self.found) > self.query.limit:
                    return

    def next_cursor(self) -> str | None:
        if len(self.found) > self.query.limit:
            return encode_cursor(self.found[self.query.limit - 1][0])
        if self.exhausted or self.last_read is None:
            return None
        # The scan stopped at its budget: the next page starts after the last entry read.
        return encode_cursor(self.last_read)


async def prune_activity(redis: Redis, oldest_ms: int) -> int:
    """Delete entries older than ``oldest_ms`` from the log and its indexes; return how many."""
    deleted = 0
    while True:
        found = await redis.zrangebyscore(
            keys.ACTIVITY, "-inf", f"({oldest_ms}", start=0, num=PRUNE_BATCH
        )
        event_ids = [str(event_id) for event_id in found]
        if not event_ids:
            return deleted
        await _delete_entries(redis, event_ids)
        deleted += len(event_ids)


async def _delete_entries(redis: Redis, event_ids: list[str]) -> None:
    raw_entries = await redis.hmget(keys.ACTIVITY_ENTRIES, event_ids)
    async with redis.pipeline(transaction=False) as pipe:
        for event_id, raw in zip(event_ids, raw_entries, strict=True):
            index_names = index_keys(json.loads(raw)) if raw else [keys.ACTIVITY]
            for key in index_names:
                pipe.zrem(key, event_id)
        pipe.hdel(keys.ACTIVITY_ENTRIES, *event_ids)
        await pipe.execute()
