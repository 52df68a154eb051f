"""GET /health: is the service up, and what is it doing."""

from __future__ import annotations

import time

from core.models import rfc3339, utcnow
from handlers.base import BaseHandler

STARTED = time.monotonic()


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
            store = {key: value for key, value in store.items() if key != "path"}
        self.write_json(
            {
                **live,
                "sessions": sum(stats["by_status"].values()),
                "sessions_by_status": stats["by_status"],
                "running": stats["running"],
                "subscribers": stats["subscribers"],
                "store": store,
                "provider": self.engine.provider.name,
                "uptime_seconds": round(time.monotonic() - STARTED, 3),
            }
        )
