"""GET /health: is the service up, and what is it doing."""

from __future__ import annotations

import time

from core.models import rfc3339, utcnow
from handlers.base import BaseHandler

STARTED = time.monotonic()


class HealthHandler(BaseHandler):
    async def get(self) -> None:
        stats = await self.engine.stats()
        self.write_json(
            {
                "status": "healthy" if self.engine.accepting else "draining",
                "timestamp": rfc3339(utcnow()),
                "sessions": sum(stats["by_status"].values()),
                "sessions_by_status": stats["by_status"],
                "running": stats["running"],
                "subscribers": stats["subscribers"],
                "store": stats["store"],
                "provider": self.engine.provider.name,
                "uptime_seconds": round(time.monotonic() - STARTED, 3),
            }
        )
