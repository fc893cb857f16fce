"""The retry policy: after each attempt, success, a retry after a backoff delay, or a final
failure."""

import random
from dataclasses import dataclass

from cocopilot.settings import Settings
from cocopilot.webhook_deliveries import DeliveryStatus
from services.webhooks.queue import Completion
from services.webhooks.sender import AttemptResult


@dataclass(frozen=True)
class RetryPolicy:
    delays_s: tuple[float, ...]  # wait before retry 1, 2, ...
    jitter: float  # each delay is scaled by a random factor in [1 - jitter, 1 + jitter]
    retry_after_max_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> "RetryPolicy":
        return cls(
            tuple(settings.webhook_retry_delays_s),
            settings.webhook_retry_jitter,
            settings.webhook_retry_after_max_s,
        )

    @property
    def max_attempts(self) -> int:
        """Attempts of a delivery made by events: the first and one per delay."""
        return len(self.delays_s) + 1

    def delay_s(self, attempt: int) -> float:
        """Return the wait after failed attempt number ``attempt`` (counted from 1)."""
        base_s = self.delays_s[min(attempt, len(self.delays_s)) - 1]
        return base_s * random.uniform(1 - self.jitter, 1 + self.jitter)  # noqa: S311 (jitter)

    def after(
        self, result: AttemptResult, attempt: int, max_attempts: int, now_ms: int
    ) -> Completion:
        """Decide what follows attempt number ``attempt`` of at most ``max_attempts``."""
        if result.succeeded:
            return Completion("success", None, DeliveryStatus.SUCCEEDED)
        if result.status_code == 410:
            return Completion("gone", None, DeliveryStatus.FAILED)
        hold_until_ms = 0
        if result.retry_after_s is not None:
            hold_until_ms = now_ms + int(min(result.retry_after_s, self.retry_after_max_s) * 1000)
        if attempt >= max_attempts:
            return Completion("failure", None, DeliveryStatus.FAILED, hold_until_ms)
        next_due_ms = max(now_ms + int(self.delay_s(attempt) * 1000), hold_until_ms)
        return Completion("failure", next_due_ms, DeliveryStatus.PENDING, hold_until_ms)
