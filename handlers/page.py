"""The web page and its files: static, with JSON errors, no path tricks, and no framing by other sites."""

from __future__ import annotations

import tornado.web

from core.errors import InvalidInput
from handlers.access import Access
from handlers.base import JSONErrors

# The page may not be put in another site's frame (clickjacking); its own policy is in index.html.
FRAME_POLICY = "frame-ancestors 'none'"


class PageHandler(JSONErrors, tornado.web.StaticFileHandler):
    def prepare(self) -> None:
        access: Access = self.application.settings["access"]
        access.check_host(self.request)

    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.set_header("Content-Security-Policy", FRAME_POLICY)

    def options(self, *args: str) -> None:
        """A CORS preflight, as on every other path."""
        self.set_status(204)
        self.finish()

    async def get(self, path: str, include_body: bool = True) -> None:
        if "\x00" in path:  # the file system cannot be asked for a name with a NUL in it
            raise InvalidInput("invalid path")
        await super().get(path, include_body)
