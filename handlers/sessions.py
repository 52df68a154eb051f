"""The session endpoints: create, list, show, start (without a stream), result, cancel and delete."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from core.errors import InvalidInput
from core.models import rfc3339
from core.store import Delivery
from handlers.base import BaseHandler
from workflow.webhooks import EVENT_TYPES, SESSION_EVENTS, RefusedDestination, WebhookTarget, check_url

DEFAULT_PAGE = 20
MAX_PAGE = 100


class SessionsHandler(BaseHandler):
    async def post(self) -> None:
        """Create a session for a topic; answers once it is stored, with its id and stream URL.
        With `"start": true` it is started too (202: it runs, or waits in the queue, unwatched)."""
        await self.access.rates.hit("creates", self.caller)
        body = self.json_body()
        start = body.get("start", False)
        if not isinstance(start, bool):
            raise InvalidInput("start must be true or false")
        webhooks = self._webhooks(body)
        if start:
            session = await self.engine.create_and_start(body.get("topic"), self.caller, webhooks)
        else:
            session = await self.engine.create_session(
                body.get("topic"), owner=self.caller, webhooks=webhooks
            )
        self.set_header("Location", f"/api/sessions/{session.id}")
        created = {"id": session.id, "stream_url": self.stream_url(session.id)}
        if start:
            self.write_json({**created, "status": session.status.value}, status=202)
        else:
            self.write_json(created, status=201)

    def _webhooks(self, body: dict[str, Any]) -> list[WebhookTarget]:
        """The session's own webhook target from `webhook_url` and `webhook_events`, checked."""
        url, events = body.get("webhook_url"), body.get("webhook_events")
        if url is None:
            if events is not None:
                raise InvalidInput("webhook_events needs a webhook_url")
            return []
        if not self.config.webhook_secret:
            raise InvalidInput("this service sends no webhooks: it has no webhook_secret")
        try:
            check_url(url, self.config.webhook_allow_private)
        except RefusedDestination as exc:
            raise InvalidInput(str(exc)) from None
        if events is None:
            events = list(SESSION_EVENTS)
        known = ", ".join(EVENT_TYPES)
        if (
            not isinstance(events, list)
            or not events
            or len(set(events)) != len(events)
            or any(event not in EVENT_TYPES for event in events)
        ):
            raise InvalidInput(f"webhook_events must be a list of some of {known}")
        return [WebhookTarget(url, tuple(events))]

    async def get(self) -> None:
        """Sessions, newest first; `?limit=` (1-100, default 20), `?status=`, and `?before=<id>` for
        the next page (the answer's `next_before`, null on the last page). A key sees its own."""
        limit = self.int_argument("limit", DEFAULT_PAGE, 1, MAX_PAGE)
        status = self.get_query_argument("status", None) or None
        before = self.get_query_argument("before", None) or None
        sessions = await self.engine.list_sessions(limit, status, before, owner=self.owner_filter)
        next_before = sessions[-1].id if len(sessions) == limit else None
        self.write_json(
            {
                "sessions": await self.sessions_json(sessions),
                "count": len(sessions),
                "next_before": next_before,
            }
        )


class SessionHandler(BaseHandler):
    async def get(self, session_id: str) -> None:
        """The session; with webhooks, each message and how its delivery went."""
        session = await self.owned(session_id)
        shown = await self.session_json(session)
        deliveries = await self.engine.deliveries(session_id)
        if deliveries:
            shown["webhooks"] = [delivery_json(d) for d in deliveries]
        self.write_json(shown)

    async def delete(self, session_id: str) -> None:
        """Cancel the session if it is running, then forget it with its events and images."""
        await self.owned(session_id)
        await self.engine.delete(session_id)
        self.set_status(204)
        self.finish()


class StartHandler(BaseHandler):
    async def post(self, session_id: str) -> None:
        """Start a pending session with nobody attached: 202 at once; it runs, or waits in the queue.
        Attach later with GET /run (or the stream URL) to watch it."""
        await self.owned(session_id)
        session = await self.engine.start(session_id)
        self.write_json(await self.session_json(session), status=202)


class ResultHandler(BaseHandler):
    async def get(self, session_id: str) -> None:
        await self.owned(session_id)
        result = await self.engine.get_result(session_id)
        self.write_json(result.to_json())


class CancelHandler(BaseHandler):
    async def post(self, session_id: str) -> None:
        await self.owned(session_id)
        session = await self.engine.cancel(session_id)
        self.write_json(await self.session_json(session))


def delivery_json(delivery: Delivery) -> dict[str, Any]:
    def moment(seconds: float | None) -> str | None:
        return rfc3339(datetime.fromtimestamp(seconds, UTC)) if seconds is not None else None

    shown = {
        "id": delivery.id,
        "type": delivery.event_type,
        "url": delivery.url,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "last_error": delivery.last_error or None,
        "created_at": moment(delivery.created_at),
        "delivered_at": moment(delivery.delivered_at),
    }
    if delivery.status == "pending":
        shown["next_attempt_at"] = moment(delivery.next_attempt_at)
    return shown
