from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from cocopilot.settings import Settings
from services.webhooks.retries import RetryPolicy
from services.webhooks.sender import AttemptResult, parse_retry_after

NOW_MS = 1_800_000_000_000


def failed(status_code: int | None = 500, retry_after_s: float | None = None) -> AttemptResult:
    return AttemptResult(NOW_MS, 12.0, status_code=status_code, retry_after_s=retry_after_s)


def test_default_schedule_spans_three_days() -> None:
    policy = RetryPolicy.from_settings(Settings())
    shortest_s = sum(policy.delays_s) * (1 - policy.jitter)

    assert shortest_s >= 3 * 86400
    assert policy.delays_s[:3] == (5, 30, 120)
    assert policy.max_attempts == len(policy.delays_s) + 1


def test_delay_stays_within_jitter() -> None:
    policy = RetryPolicy(delays_s=(10.0, 100.0), jitter=0.2, retry_after_max_s=60)
    delays_s = [policy.delay_s(2) for _ in range(200)]

    assert min(delays_s) >= 80
    assert max(delays_s) <= 120
    assert len(set(delays_s)) > 1


def test_success_ends_delivery() -> None:
    policy = RetryPolicy(delays_s=(1.0,), jitter=0, retry_after_max_s=60)

    completion = policy.after(failed(200), attempt=1, max_attempts=2, now_ms=NOW_MS)

    assert completion.outcome == "success"
    assert completion.next_due_ms is None
    assert completion.final_status == "succeeded"


def test_failure_schedules_next_delay() -> None:
    policy = RetryPolicy(delays_s=(5.0, 30.0), jitter=0, retry_after_max_s=60)

    first = policy.after(failed(500), attempt=1, max_attempts=3, now_ms=NOW_MS)
    second = policy.after(failed(None), attempt=2, max_attempts=3, now_ms=NOW_MS)

    assert first.next_due_ms == NOW_MS + 5000
    assert second.next_due_ms == NOW_MS + 30000


def test_last_attempt_fails_delivery() -> None:
    policy = RetryPolicy(delays_s=(5.0,), jitter=0, retry_after_max_s=60)

    completion = policy.after(failed(500), attempt=2, max_attempts=2, now_ms=NOW_MS)

    assert completion.outcome == "failure"
    assert completion.next_due_ms is None
    assert completion.final_status == "failed"


def test_gone_disables_without_retry() -> None:
    policy = RetryPolicy(delays_s=(5.0,), jitter=0, retry_after_max_s=60)

    completion = policy.after(failed(410), attempt=1, max_attempts=2, now_ms=NOW_MS)

    assert completion.outcome == "gone"
    assert completion.next_due_ms is None


def test_retry_after_delays_next_attempt() -> None:
    policy = RetryPolicy(delays_s=(5.0,), jitter=0, retry_after_max_s=60)

    completion = policy.after(failed(429, 20), attempt=1, max_attempts=2, now_ms=NOW_MS)

    assert completion.next_due_ms == NOW_MS + 20000
    assert completion.hold_until_ms == NOW_MS + 20000


def test_retry_after_is_capped() -> None:
    policy = RetryPolicy(delays_s=(5.0,), jitter=0, retry_after_max_s=60)

    completion = policy.after(failed(503, 86400), attempt=1, max_attempts=2, now_ms=NOW_MS)

    assert completion.next_due_ms == NOW_MS + 60000


def test_short_retry_after_keeps_backoff() -> None:
    policy = RetryPolicy(delays_s=(30.0,), jitter=0, retry_after_max_s=60)

    completion = policy.after(failed(429, 1), attempt=1, max_attempts=2, now_ms=NOW_MS)

    assert completion.next_due_ms == NOW_MS + 30000


NOW = datetime(2026, 1, 28, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected_s"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        (format_datetime(NOW + timedelta(seconds=90), usegmt=True), 90.0),
        (format_datetime(NOW - timedelta(seconds=90), usegmt=True), 0.0),
        ("soon", None),
        ("-5", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_retry_after(value: str | None, expected_s: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected_s
