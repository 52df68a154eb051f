"""Serves a session's stored images, by a validated name, with a content type and no room for tricks."""

from __future__ import annotations

import re

from core.errors import InvalidInput
from handlers.base import BaseHandler

# A plain file name: no separators, no leading dot, so no name can reach outside the session's images.
IMAGE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}\.[a-z0-9]{2,5}$")


class ImageHandler(BaseHandler):
    async def get(self, session_id: str, name: str) -> None:
        if not IMAGE_NAME.match(name):
            raise InvalidInput("invalid image name")
        await self.owned(session_id)
        image = await self.engine.get_image(session_id, name)
        self.set_header("Content-Type", image.content_type)
        self.set_header("X-Content-Type-Options", "nosniff")
        # An SVG opened on its own is a document: forbid scripts and outside loads in it.
        self.set_header("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
        self.set_header("Cache-Control", "private, max-age=86400")
        self.finish(image.data)

    async def head(self, session_id: str, name: str) -> None:
        await self.get(session_id, name)  # Tornado sends the headers and drops the body
