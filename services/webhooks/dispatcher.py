"""The loop that claims due deliveries and makes their attempts, many at once.

Claims go webhook by webhook, each within that webhook's concurrency limit and breaker. Redis
checks both atomically, so the limit applies over all replicas. A slow or failing endpoint
therefore only ever occupies its own slots and never delays deliveries to the others.
"""

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from redis.exceptions import RedisError

from cocopilot import __version__
from cocopilot.models import Webhook
from cocopilot.webhook_deliveries import ms_to_iso
from services.webhooks.queue import Claim, ClaimedDelivery, DeliveryQueue, now_ms
from services.webhooks.retries import RetryPolicy
from services.webhooks.sender import AttemptResult, Sender
from services.webhooks.signing import secret_key, sign

log = logging.getLogger(__name__)

USER_AGENT = f"CoCoPilot-Webhooks/{__version__}"
WEBHOOKS_PER_ROUND = 100  # webhooks looked at per claim round
REDIS_RETRY_S = 2.0  # wait after a failed claim round, so an outage logs a line per 2 s


@dataclass(frozen=True)
class DispatchLimits:
    max_concurrency: int  # attempts in flight in this replica
    endpoint_concurrency: int  # attempts in flight to one webhook, over all replicas
    lease_ms: int  # how long a claim lasts before another replica may take the delivery over
    poll_interval_s: float


def attempt_headers(webhook: Webhook, claimed: ClaimedDelivery, body: bytes) -> dict[str, str]:
    """Return the Standard Webhooks headers of one attempt, signed now."""
    timestamp_s = int(time.time())
    signature = sign(secret_key(webhook.secret), claimed.delivery_id, timestamp_s, body)
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": claimed.delivery_id,
        "webhook-timestamp": str(timestamp_s),
        "webhook-signature": signature,
    }


class Dispatcher:
    def __init__(
        self, queue: DeliveryQueue, sender: Sender, retries: RetryPolicy, limits: DispatchLimits
    ) -> None:
        self.queue = queue
        self.sender = sender
        self.retries = retries
        self.limits = limits
        self._wake = asyncio.Event()
        self._attempts: set[asyncio.Task[None]] = set()

    def wake(self) -> None:
        """Look for due deliveries now rather than at the next poll."""
        self._wake.set()

    async def run(self, stopping: asyncio.Event) -> None:
        log.info("webhook dispatcher started", extra={"limits": self.limits})
        while not stopping.is_set():
            self._wake.clear()
            try:
                claimed = await self.claim_round()
            except RedisError as exc:
                log.warning(
                    "claiming deliveries failed, retrying",
                    extra={"error": str(exc), "retry_in_s": REDIS_RETRY_S},
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), REDIS_RETRY_S)
                continue
            if claimed == 0:
                await self._sleep_until_due()
        log.info("webhook dispatcher stopped")

    async def drain(self, timeout_s: float) -> None:
        """Wait for the attempts in flight, cancelling those still running after ``timeout_s``;
        a cancelled attempt is made again when its lease ends."""
        if not self._attempts:
            return
        _, pending = await asyncio.wait(set(self._attempts), timeout=timeout_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def claim_round(self) -> int:
        """Claim due deliveries within the limits and start their attempts; return how many."""
        free = self.limits.max_concurrency - len(self._attempts)
        if free <= 0:
            return 0
        started = 0
        for webhook_id in await self.queue.due_webhooks(now_ms(), WEBHOOKS_PER_ROUND):
            claim = await self.queue.claim(
                webhook_id,
                now_ms(),
                self.limits.endpoint_concurrency,
                free - started,
                self.limits.lease_ms,
            )
            if claim is not None:
                started += self._start_attempts(claim)
            if started >= free:
                break
        return started

    def _start_attempts(self, claim: Claim) -> int:
        for claimed in claim.deliveries:
            task = asyncio.create_task(self.attempt(claim.webhook, claimed))
            self._attempts.add(task)
            task.add_done_callback(self._attempt_done)
        return len(claim.deliveries)

    def _attempt_done(self, task: asyncio.Task[None]) -> None:
        self._attempts.discard(task)
        self._wake.set()

    async def _sleep_until_due(self) -> None:
        timeout_s = self.limits.poll_interval_s
        with contextlib.suppress(RedisError):
            next_ms = await self.queue.next_ready_ms()
            if next_ms is not None:
                timeout_s = min(timeout_s, max(next_ms - now_ms(), 0) / 1000)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout_s)

    async def attempt(self, webhook: Webhook, claimed: ClaimedDelivery) -> None:
        """Send one attempt and record it. A failure to record leaves the claim to expire, so
        the delivery is attempted again after its lease."""
        body = claimed.body.encode()
        try:
            headers = attempt_headers(webhook, claimed, body)
            result = await self.sender.send(webhook.id, webhook.url, headers, body)
            await self._record(webhook, claimed, result)
        except Exception:
            log.exception(
                "webhook attempt failed unexpectedly; it is retried when its lease ends",
                extra={"webhook_id": webhook.id, "delivery_id": claimed.delivery_id},
            )

    async def _record(
        self, webhook: Webhook, claimed: ClaimedDelivery, result: AttemptResult
    ) -> None:
        completed_ms = now_ms()
        completion = self.retries.after(result, claimed.attempt, claimed.max_attempts, completed_ms)
        owned, opened_until_ms = await self.queue.complete(
            webhook.id, claimed, result.to_json(), completion, completed_ms
        )
        fields = {
            "webhook_id": webhook.id,
            "delivery_id": claimed.delivery_id,
            "event_type": claimed.event_type,
            "attempt": claimed.attempt,
            "status_code": result.status_code,
            "latency_ms": round(result.latency_ms, 1),
        }
        if not owned:
            log.warning(
                "attempt recorded, but its claim had ended: the lease ran out or the webhook "
                "was deleted",
                extra=fields,
            )
        elif result.succeeded:
            log.debug("webhook delivered", extra=fields)
        else:
            log_failure(result, completion.next_due_ms, fields)
        if opened_until_ms:
            log.warning(
                "webhook paused after consecutive failures",
                extra={"webhook_id": webhook.id, "paused_until": ms_to_iso(opened_until_ms)},
            )


def log_failure(result: AttemptResult, next_due_ms: int | None, fields: dict[str, object]) -> None:
    fields = {**fields, "error": result.error}
    if next_due_ms is None:
        log.warning("webhook delivery failed for good", extra=fields)
    else:
        log.info(
            "webhook attempt failed, retry scheduled",
            extra={**fields, "retry_at": ms_to_iso(next_due_ms)},
        )
