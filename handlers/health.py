"""GET /health: is the service up, and what is it doing; GET /ready: should it be sent new work."""

from __future__ import annotations

import time

from core.errors import Unavailable
from core.models import rfc3339, utcnow
from handlers.base import BaseHandler

STARTED = time.monotonic()
ADMIN_ONLY = ("path", "url", "instance", "prefix")  # of the store's description


class HealthHandler(BaseHandler):
    """Liveness for anyone; the figures for a key holder (or anyone, without keys); where the
    database lives, only for an admin key."""

    needs_key = False
    rate_limited = False  # probes poll it

    async def get(self) -> None:
        live = {"status": "healthy" if self.engine.accepting else "draining", "timestamp": rfc3339(utcnow())}
        if self.access.keys and self.identity is None:
            self.write_json(live)
            return
        stats = await self.engine.stats()
        store = stats["store"]
        if not (self.identity and self.identity.admin):
            # Where the store lives (a file's path, Redis's address, this instance's name): admins only.
            store = {key: value for key, value in store.items() if key not in ADMIN_ONLY}
        self.write_json(
            {
                **live,
                "sessions": sum(stats["by_status"].values()),
                "sessions_by_status": stats["by_status"],
                # Only when the store could not be read: the counts are from this moment.
                **({"sessions_counted_at": stats["counted_at"]} if stats["counted_at"] else {}),
                "running": stats["running"],
                "subscribers": stats["subscribers"],
                "store": store,
                "provider": self.engine.provider.name,
                "model": self.engine.provider.model,  # null: the built-in templates write the lessons
                "uptime_seconds": round(time.monotonic() - STARTED, 3),
            }
        )


class NotReady(Unavailable):
    """A 503 from /ready; its message says why."""


class ReadyHandler(BaseHandler):
    """Readiness, for a load balancer: 200 while the service takes new work, a 503 in the JSON error
    shape saying why while it does not (draining, its queue is full, or its store cannot be written).
    /health stays liveness: a service alive but not ready must not be restarted, only sent less."""

    needs_key = False
    rate_limited = False  # probes poll it

    async def get(self) -> None:
        engine = self.engine
        if not engine.accepting:
            raise NotReady("not ready: the service is not taking new work (it is shutting down)")
        if engine.queue_full:
            raise NotReady(
                f"not ready: {engine.queue_length} sessions wait for a run slot, the most it takes"
            )
        try:
            writable = (await engine.store.describe()).get("writable", False)
        except (Unavailable, OSError, RuntimeError):  # RuntimeError: its threads are shut down
            writable = False
        if not writable:
            raise NotReady("not ready: the session store cannot be written")
        self.write_json({"status": "ready", "timestamp": rfc3339(utcnow())})
