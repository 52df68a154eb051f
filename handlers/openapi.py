"""GET /openapi.json: the API's OpenAPI 3.1 document, as written in docs/openapi.json."""

from __future__ import annotations

from pathlib import Path

from handlers.base import BaseHandler

DOCUMENT_PATH = Path(__file__).resolve().parent.parent / "docs" / "openapi.json"
# Read once, at import: a document that cannot be read stops the start instead of failing later.
DOCUMENT = DOCUMENT_PATH.read_bytes()


class OpenAPIHandler(BaseHandler):
    """The document is public: a client needs it before it has a key."""

    needs_key = False

    async def get(self) -> None:
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(DOCUMENT)
