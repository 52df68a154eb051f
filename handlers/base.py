"""What every handler shares: JSON bodies and errors, CORS, request ids and the body size limit."""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any

import tornado.web
import ujson

from conf.settings import Settings
from core.context import request_id_var, session_id_var
from core.errors import (
    InvalidInput,
    NotFound,
    OrchestratorError,
    PayloadTooLarge,
    ResultNotReady,
    SessionConflict,
    Unavailable,
)
from core.events import dumps
from workflow.engine import Engine

log = logging.getLogger("orchestrator.http")

# The one mapping from the error tree to HTTP status; the most specific class wins.
ERROR_STATUS: dict[type[OrchestratorError], int] = {
    InvalidInput: 400,
    PayloadTooLarge: 413,
    ResultNotReady: 400,
    NotFound: 404,
    SessionConflict: 409,
    Unavailable: 503,
}
# The contract's CORS headers, to the letter.
CORS_METHODS = "GET, POST, PUT, DELETE, OPTIONS"
CORS_HEADERS = "Accept, Authorization, Content-Type, X-CSRF-Token"
CORS_EXPOSE = "Link"
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def status_for(exc: BaseException) -> int | None:
    """The HTTP status for an error the service raised on purpose; None for anything else."""
    for cls in type(exc).__mro__:
        if cls in ERROR_STATUS:
            return ERROR_STATUS[cls]
    return None


@tornado.web.stream_request_body
class BaseHandler(tornado.web.RequestHandler):
    """Bodies are streamed in so that one over the limit gets a JSON 413 before it is read whole."""

    request_id = ""
    _body = bytearray()

    @property
    def engine(self) -> Engine:
        return self.application.settings["engine"]

    @property
    def config(self) -> Settings:
        return self.application.settings["config"]

    # -- request ---------------------------------------------------------------------------------

    def prepare(self) -> None:
        incoming = self.request.headers.get("X-Request-ID", "")
        self.request_id = incoming if REQUEST_ID.match(incoming) else uuid.uuid4().hex
        request_id_var.set(self.request_id)
        if self.path_args:  # every route with arguments starts /api/sessions/{id}
            session_id_var.set(self.path_args[0])
        self.set_header("X-Request-ID", self.request_id)
        self._body = bytearray()
        declared = self.request.headers.get("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > self.config.max_body_size:
            raise self._too_large()

    def data_received(self, chunk: bytes) -> None:
        if self._finished:
            return
        self._body += chunk
        if len(self._body) > self.config.max_body_size:
            self._body = bytearray()
            self.send_error(exc_info=(PayloadTooLarge, self._too_large(), None))

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(f"request body is larger than {self.config.max_body_size} bytes")

    def json_body(self) -> dict[str, Any]:
        """The body as a JSON object, or a 400 that says what is wrong with it."""
        try:
            text = bytes(self._body).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput("request body is not valid UTF-8") from None
        if not text.strip():
            raise InvalidInput("request body is empty; send a JSON object")
        try:
            value = ujson.loads(text)
        except ValueError as exc:
            raise InvalidInput(f"request body is not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            raise InvalidInput("request body must be a JSON object")
        return value

    def int_argument(self, name: str, default: int, minimum: int, maximum: int) -> int:
        raw = self.get_query_argument(name, None)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise InvalidInput(f"{name} must be an integer") from None
        if not minimum <= value <= maximum:
            raise InvalidInput(f"{name} must be between {minimum} and {maximum}")
        return value

    # -- response --------------------------------------------------------------------------------

    def set_default_headers(self) -> None:
        allowed = self.config.allowed_origins
        origin = self.request.headers.get("Origin")
        if "*" in allowed:
            self.set_header("Access-Control-Allow-Origin", "*")
        elif origin and origin in allowed:
            self.set_header("Access-Control-Allow-Origin", origin)
        if "*" not in allowed:
            self.add_header("Vary", "Origin")
        self.set_header("Access-Control-Allow-Methods", CORS_METHODS)
        self.set_header("Access-Control-Allow-Headers", CORS_HEADERS)
        self.set_header("Access-Control-Expose-Headers", CORS_EXPOSE)
        if self.request_id:  # error answers clear the headers and come back here
            self.set_header("X-Request-ID", self.request_id)

    def options(self, *args: str) -> None:
        """CORS preflight: the headers are already set; nothing else to say."""
        self.set_status(204)
        self.finish()

    def write_json(self, value: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(dumps(value))

    def send_error(self, status_code: int = 500, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        mapped = status_for(exc) if exc is not None else None
        super().send_error(mapped or status_code, **kwargs)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if exc is not None and status_for(exc):
            message = str(exc)
        elif status_code >= 500:
            message = f"internal server error (request id {self.request_id or '-'})"
        else:
            message = self._reason
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(dumps({"error": message, "status": status_code}))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        # Errors the service raised on purpose are answers, not incidents: no traceback.
        status = status_for(value)
        if status:
            log.info("%s %s answered %s: %s", self.request.method, self.request.uri, status, value)
        else:
            super().log_exception(typ, value, tb)


class NotFoundHandler(BaseHandler):
    """Every path no route matches: a JSON 404 instead of Tornado's HTML page."""

    def prepare(self) -> None:
        super().prepare()
        if self.request.method != "OPTIONS":
            raise NotFound(f"no such endpoint: {self.request.path}")
