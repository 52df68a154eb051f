"""Delivers the outbox: each due message POSTed, signed as Standard Webhooks says, and retried with
backoff and jitter until it is delivered, refused for good (410), or older than `retry_for`.

It runs on its own task and reads only the store, so a slow or dead receiver never holds up a run;
a restart finds what was not delivered still in the outbox and carries on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from core import metrics
from core.errors import StoreUnavailable
from core.store import Delivery, SessionStore
from workflow.webhooks.guard import PublicOnlyResolver, RefusedDestination

log = logging.getLogger("orchestrator.webhooks")

BATCH = 32  # deliveries taken from the outbox at a time
CONCURRENCY = 8  # attempts in flight at once
RESPONSE_LIMIT = 64 * 1024  # bytes of a receiver's answer that are read; the rest is not wanted


@dataclass(frozen=True, kw_only=True)
class DeliveryOptions:
    secret: str  # whsec_...
    timeout: float  # seconds one attempt may take
    retry_for: float  # seconds after which a message is given up on
    initial_delay: float  # seconds before the first retry; doubles each time, with jitter
    max_delay: float
    allow_private: bool
    poll_interval: float  # seconds between looks at the outbox when nothing wakes the dispatcher
    user_agent: str


class WebhookDispatcher:
    def __init__(self, store: SessionStore, options: DeliveryOptions) -> None:
        self.store, self.options = store, options
        self._signer = Webhook(options.secret)
        self._client = AsyncHTTPClient(
            force_instance=True,
            resolver=PublicOnlyResolver(allow_private=options.allow_private),
            max_clients=CONCURRENCY,
            max_body_size=RESPONSE_LIMIT,
        )
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._deliver_forever(), name="webhooks")

    def wake(self) -> None:
        """New messages are in the outbox: look now rather than at the next poll."""
        self._wakeup.set()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._client.close()

    async def _deliver_forever(self) -> None:
        while True:
            try:
                due = await self.store.due_deliveries(time.time(), BATCH)
                if due:
                    await asyncio.gather(*(self._attempt(delivery) for delivery in due))
                    continue
                wait = self.options.poll_interval
                upcoming = await self.store.next_delivery_at()
                if upcoming is not None:
                    wait = min(wait, max(0.0, upcoming - time.time()))
            except StoreUnavailable as exc:
                log.warning("the outbox cannot be read now: %s", exc)
                wait = self.options.poll_interval
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), wait)

    async def _attempt(self, delivery: Delivery) -> None:
        now = datetime.now(tz=UTC)
        body = delivery.payload.decode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": self.options.user_agent,
            "webhook-id": delivery.id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": self._signer.sign(delivery.id, now, body),
        }
        request = HTTPRequest(
            delivery.url,
            method="POST",
            headers=headers,
            body=delivery.payload,
            request_timeout=self.options.timeout,
            connect_timeout=self.options.timeout,
            follow_redirects=False,  # a redirect could lead anywhere, a private address included
        )
        delivery.attempts += 1
        try:
            # Failures to connect or to get an answer come back as code 599 with the error.
            response = await self._client.fetch(request, raise_error=False)
            status, error = response.code, response.error
        except Exception as exc:
            status, error = 599, exc
        if 200 <= status < 300:
            delivery.status, delivery.delivered_at, delivery.last_error = "delivered", time.time(), ""
            log.info("webhook %s (%s) delivered to %s", delivery.id, delivery.event_type, delivery.url)
        elif status == 410:
            delivery.status, delivery.last_error = "gone", "the receiver answered 410 Gone"
            log.info("webhook %s: %s stops deliveries (410)", delivery.id, delivery.url)
        elif isinstance(error, RefusedDestination):
            self._give_up(delivery, f"refused: {error}")
        elif status == 599:
            self._retry_later(delivery, f"no answer: {error}")
        else:
            self._retry_later(delivery, f"the receiver answered {status}")
        metrics.WEBHOOK_ATTEMPTS.labels("retry" if delivery.status == "pending" else delivery.status).inc()
        try:
            await self.store.record_attempt(delivery)
        except StoreUnavailable as exc:
            log.warning("webhook %s: its attempt could not be recorded: %s", delivery.id, exc)

    def _retry_later(self, delivery: Delivery, error: str) -> None:
        delivery.last_error = error[:300]
        base = min(self.options.max_delay, self.options.initial_delay * 2 ** (delivery.attempts - 1))
        delay = base / 2 + random.uniform(0, base / 2)  # jitter, so receivers coming back are not stampeded
        if time.time() + delay - delivery.created_at > self.options.retry_for:
            self._give_up(delivery, f"{error}; gave up after {delivery.attempts} attempts")
            return
        delivery.next_attempt_at = time.time() + delay
        log.info("webhook %s to %s: %s; next attempt in %.1f s", delivery.id, delivery.url, error, delay)

    def _give_up(self, delivery: Delivery, error: str) -> None:
        delivery.status, delivery.last_error = "failed", error[:300]
        log.warning("webhook %s to %s is given up: %s", delivery.id, delivery.url, error)
