"""The session endpoints: create, list, show, start (without a stream), result, cancel and delete."""

from __future__ import annotations

from core.errors import InvalidInput
from handlers.base import BaseHandler

DEFAULT_PAGE = 20
MAX_PAGE = 100


class SessionsHandler(BaseHandler):
    async def post(self) -> None:
        """Create a session for a topic; answers once it is stored, with its id and stream URL.
        With `"start": true` it is started too (202: it runs, or waits in the queue, unwatched)."""
        self.access.rates.hit("creates", self.caller)
        body = self.json_body()
        start = body.get("start", False)
        if not isinstance(start, bool):
            raise InvalidInput("start must be true or false")
        if start:
            session = await self.engine.create_and_start(body.get("topic"), owner=self.caller)
        else:
            session = await self.engine.create_session(body.get("topic"), owner=self.caller)
        self.set_header("Location", f"/api/sessions/{session.id}")
        created = {"id": session.id, "stream_url": self.stream_url(session.id)}
        if start:
            self.write_json({**created, "status": session.status.value}, status=202)
        else:
            self.write_json(created, status=201)

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
                "sessions": [self.session_json(s) for s in sessions],
                "count": len(sessions),
                "next_before": next_before,
            }
        )


class SessionHandler(BaseHandler):
    async def get(self, session_id: str) -> None:
        session = await self.owned(session_id)
        self.write_json(self.session_json(session))

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
        self.write_json(self.session_json(session), status=202)


class ResultHandler(BaseHandler):
    async def get(self, session_id: str) -> None:
        await self.owned(session_id)
        result = await self.engine.get_result(session_id)
        self.write_json(result.to_json())


class CancelHandler(BaseHandler):
    async def post(self, session_id: str) -> None:
        await self.owned(session_id)
        session = await self.engine.cancel(session_id)
        self.write_json(self.session_json(session))
