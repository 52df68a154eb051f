"""A completed session's lesson: a standalone HTML page, the Markdown file to download, or both with
the lesson's images in one zip that reads offline."""

from __future__ import annotations

import io
import re
import zipfile

from core.errors import ImageNotFound
from core.models import Session, SessionResult
from handlers.base import BaseHandler
from handlers.images import IMAGE_NAME
from workflow.lesson.html import LESSON_STYLE_HASH, lesson_document, lesson_title, topic_slug

# Opened on its own the page stays inert: no scripts at all, images from this origin only, and of
# styles only its own <style> (by hash) and the renderer's table alignment (style attributes).
PAGE_POLICY = (
    f"default-src 'none'; img-src 'self'; style-src '{LESSON_STYLE_HASH}'; style-src-attr 'unsafe-inline'"
)


class LessonHandler(BaseHandler):
    """The lesson endpoints' shared rules: the caller's own session, 400 until it has a result."""

    async def lesson(self, session_id: str) -> tuple[Session, SessionResult]:
        session = await self.owned(session_id)
        return session, await self.engine.get_result(session_id)


class LessonHTMLHandler(LessonHandler):
    async def get(self, session_id: str) -> None:
        session, result = await self.lesson(session_id)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Content-Security-Policy", PAGE_POLICY)
        self.set_header("X-Content-Type-Options", "nosniff")
        title = lesson_title(result.lesson, session.topic)
        self.finish(lesson_document(result.lesson, session_id, title))

    async def head(self, session_id: str) -> None:
        await self.get(session_id)  # Tornado sends the headers and drops the body


class LessonMarkdownHandler(LessonHandler):
    async def get(self, session_id: str) -> None:
        session, result = await self.lesson(session_id)
        self.set_header("Content-Type", "text/markdown; charset=utf-8")
        self.set_header("Content-Disposition", f'attachment; filename="{topic_slug(session.topic)}.md"')
        self.set_header("X-Content-Type-Options", "nosniff")
        self.finish(result.lesson)

    async def head(self, session_id: str) -> None:
        await self.get(session_id)


class LessonZipHandler(LessonHandler):
    """lesson.md and lesson.html with their images beside them under images/, linked relatively."""

    async def get(self, session_id: str) -> None:
        session, result = await self.lesson(session_id)
        prefix = f"/api/sessions/{session_id}/images/"
        # The images the result lists and the lesson shows, each by a name that is a plain file name.
        linked = re.findall(re.escape(prefix) + r"([A-Za-z0-9_.-]+)", result.lesson)
        names = sorted(name for name in {*result.images, *linked} if IMAGE_NAME.match(name))
        images: dict[str, bytes] = {}
        for name in names:
            try:
                images[name] = (await self.engine.get_image(session_id, name)).data
            except ImageNotFound:
                continue  # a link to an image that was never made stays as it was
        markdown = result.lesson
        if images:
            pattern = re.escape(prefix) + "(" + "|".join(map(re.escape, images)) + r")(?![A-Za-z0-9_.-])"
            markdown = re.sub(pattern, r"images/\1", markdown)
        page = lesson_document(
            result.lesson, session_id, lesson_title(result.lesson, session.topic), image_base="images/"
        )
        stamp = result.completed_at.timetuple()[:6]  # the same lesson is the same zip
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            files = {"lesson.md": markdown.encode(), "lesson.html": page.encode()}
            files.update({f"images/{name}": data for name, data in images.items()})
            for path, data in files.items():
                archive.writestr(zipfile.ZipInfo(path, stamp), data, zipfile.ZIP_DEFLATED)
        self.set_header("Content-Type", "application/zip")
        self.set_header("Content-Disposition", f'attachment; filename="{topic_slug(session.topic)}.zip"')
        self.set_header("X-Content-Type-Options", "nosniff")
        self.finish(buffer.getvalue())

    async def head(self, session_id: str) -> None:
        await self.get(session_id)
