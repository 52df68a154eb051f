"""A completed session's lesson: an HTML fragment to show in a page, or the Markdown file to download."""

from __future__ import annotations

from handlers.base import BaseHandler
from workflow.lesson.html import lesson_html, topic_slug

# Opened on its own the fragment stays inert: no scripts at all, images from this origin only.
FRAGMENT_POLICY = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'"


class LessonHTMLHandler(BaseHandler):
    async def get(self, session_id: str) -> None:
        await self.owned(session_id)
        result = await self.engine.get_result(session_id)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Content-Security-Policy", FRAGMENT_POLICY)
        self.set_header("X-Content-Type-Options", "nosniff")
        self.finish(lesson_html(result.lesson, session_id))

    async def head(self, session_id: str) -> None:
        await self.get(session_id)  # Tornado sends the headers and drops the body


class LessonMarkdownHandler(BaseHandler):
    async def get(self, session_id: str) -> None:
        session = await self.owned(session_id)
        result = await self.engine.get_result(session_id)
        self.set_header("Content-Type", "text/markdown; charset=utf-8")
        self.set_header("Content-Disposition", f'attachment; filename="{topic_slug(session.topic)}.md"')
        self.set_header("X-Content-Type-Options", "nosniff")
        self.finish(result.lesson)

    async def head(self, session_id: str) -> None:
        await self.get(session_id)
