"""What every handler shares: JSON bodies and errors, CORS, request ids and the body size limit."""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any

import tornado.web
import ujson

from conf.keys import Identity
from conf.settings import Settings
from core.context import request_id_var, session_id_var
from core.errors import (
    Forbidden,
    InvalidInput,
    NotFound,
    NotJSON,
    OrchestratorError,
    PayloadTooLarge,
    ResultNotReady,
    SessionConflict,
    Throttled,
    Unauthorized,
    Unavailable,
)
from core.events import dumps
from core.models import Session, SessionStatus
from handlers.access import STATE_CHANGING, Access, RateState
from workflow.engine import Engine

log = logging.getLogger("orchestrator.http")

# The one mapping from the error tree to HTTP status; the most specific class wins.
ERROR_STATUS: dict[type[OrchestratorError], int] = {
    InvalidInput: 400,
    PayloadTooLarge: 413,
    NotJSON: 415,
    Unauthorized: 401,
    Forbidden: 403,
    Throttled: 429,
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
DECIMAL = re.compile(r"^-?[0-9]{1,18}$")
JSON_TYPE = re.compile(r"^application/([a-z0-9.+-]+\+)?json\s*(;.*)?$", re.IGNORECASE)
# Not only the headers of the answers below: every answer carries these (see JSONErrors).
HARDENING = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def status_for(exc: BaseException) -> int | None:
    """The HTTP status for an error the service raised on purpose; None for anything else."""
    for cls in type(exc).__mro__:
        if cls in ERROR_STATUS:
            return ERROR_STATUS[cls]
    return None


class JSONErrors(tornado.web.RequestHandler):
    """Every error as `{"error": ..., "status": ...}`, through `status_for`; no version header."""

    request_id = ""

    def set_default_headers(self) -> None:
        self.clear_header("Server")  # the version of what runs here is nobody's business
        for name, value in HARDENING.items():
            self.set_header(name, value)
        if self.request_id:  # error answers clear the headers and come back here
            self.set_header("X-Request-ID", self.request_id)

    def send_error(self, status_code: int = 500, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        mapped = status_for(exc) if exc is not None else None
        super().send_error(mapped or status_code, **kwargs)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if exc is not None and status_for(exc):
            # An error may say more than a client should hear (a file's path): `public` if it has one.
            message = getattr(exc, "public", None) or str(exc)
        elif status_code >= 500:
            message = f"internal server error (request id {self.request_id or '-'})"
        else:
            message = self._reason
        if isinstance(exc, Unauthorized):
            self.set_header("WWW-Authenticate", 'Bearer realm="orchestrator"')
        retry_after = getattr(exc, "retry_after", None)  # Throttled, QueueFull
        if retry_after is not None:
            self.set_header("Retry-After", str(max(1, round(retry_after))))
        if isinstance(exc, Throttled):
            for name, value in exc.headers.items():
                self.set_header(name, value)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(dumps({"error": message, "status": status_code}))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        # Errors the service raised on purpose are answers, not incidents: no traceback.
        status = status_for(value)
        if status:
            log.info("%s %s answered %s: %s", self.request.method, self.request.uri, status, value)
        else:
            super().log_exception(typ, value, tb)


@tornado.web.stream_request_body
class BaseHandler(JSONErrors):
    """Bodies are streamed in so that one over the limit gets a JSON 413 before it is read whole.

    `prepare` applies the access rules to every request: the Host (without keys), the Origin of a
    state change, the API key (`needs_key`), the rate limit (`rate_limited`), and the body's type.
    """

    needs_key = True  # with keys configured, a request without one is a 401
    rate_limited = True
    identity: Identity | None = None
    rate: RateState | None = None
    _body = bytearray()

    @property
    def engine(self) -> Engine:
        return self.application.settings["engine"]

    @property
    def config(self) -> Settings:
        return self.application.settings["config"]

    @property
    def access(self) -> Access:
        return self.application.settings["access"]

    @property
    def caller(self) -> str:
        """Who is asking, for ownership and limits: the key's name, or the client's address."""
        return self.identity.name if self.identity else f"anon:{self.request.remote_ip}"

    @property
    def owner_filter(self) -> str | None:
        """Whose sessions this caller sees: its own with a key, every one as admin or without keys."""
        return self.identity.name if self.identity and not self.identity.admin else None

    # -- request ---------------------------------------------------------------------------------

    async def prepare(self) -> None:
        incoming = self.request.headers.get("X-Request-ID", "")
        self.request_id = incoming if REQUEST_ID.match(incoming) else uuid.uuid4().hex
        request_id_var.set(self.request_id)
        if self.path_args:  # every route with arguments starts /api/sessions/{id}
            session_id_var.set(self.path_args[0])
        self.set_header("X-Request-ID", self.request_id)
        self._body = bytearray()
        self.access.check_host(self.request)
        if self.request.method == "OPTIONS":
            return  # a CORS preflight carries no credentials and changes nothing
        if self.request.method in STATE_CHANGING:
            self.access.check_origin(self.request)
        self.identity = self.access.identify(self.request)
        if self.needs_key and self.access.keys and self.identity is None and not self.other_credentials():
            raise Unauthorized("this API needs a key: send Authorization: Bearer <key>")
        if self.rate_limited:
            self.rate = await self.access.rates.hit("requests", self.caller)
            self._rate_headers()
        self._check_body_headers()

    async def owned(self, session_id: str) -> Session:
        """The session, if this caller may see it; 404 otherwise (another's is not revealed)."""
        return await self.engine.get_owned(session_id, self.owner_filter)

    def stream_url(self, session_id: str) -> str:
        """Where EventSource reads the session: with keys on, with a token that grants just that."""
        url = f"/api/sessions/{session_id}/run"
        return f"{url}?token={self.access.tokens.sign(session_id)}" if self.access.keys else url

    async def sessions_json(self, sessions: list[Session]) -> list[dict[str, Any]]:
        """Sessions as clients see them: the contract's fields, where to stream each, and for a
        queued one its place in the queue (1: it runs next)."""
        # The queue is looked at only if one of them waits (on a shared store it is a read of Redis).
        waiting = any(s.status == SessionStatus.QUEUED for s in sessions)
        positions = await self.engine.queue_positions() if waiting else {}
        shown = []
        for session in sessions:
            one = {**session.to_json(), "stream_url": self.stream_url(session.id)}
            if session.status == SessionStatus.QUEUED and session.id in positions:
                one["queue_position"] = positions[session.id]
            shown.append(one)
        return shown

    async def session_json(self, session: Session) -> dict[str, Any]:
        """One session as clients see it (see sessions_json)."""
        return (await self.sessions_json([session]))[0]

    def other_credentials(self) -> bool:
        """Whether the request proves its right some other way than a key (a stream token)."""
        return False

    def _check_body_headers(self) -> None:
        declared = self.request.headers.get("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > self.config.max_body_size:
            raise self._too_large()
        has_body = (declared not in (None, "0")) or "Transfer-Encoding" in self.request.headers
        if has_body and self.request.method in STATE_CHANGING:
            content_type = self.request.headers.get("Content-Type", "")
            if not JSON_TYPE.match(content_type):
                # A page may send text/plain cross-site without asking first: JSON it must ask for.
                raise NotJSON(f"the request body must be application/json, not {content_type or 'untyped'}")

    def _rate_headers(self) -> None:
        if self.rate is not None:
            self.set_header("RateLimit-Policy", self.rate.policy)
            self.set_header("RateLimit", self.rate.limit)

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
        if not DECIMAL.match(raw):  # int() would take "²" or Arabic-Indic digits, and 4,300 of them
            raise InvalidInput(f"{name} must be an integer")
        value = int(raw)
        if not minimum <= value <= maximum:
            raise InvalidInput(f"{name} must be between {minimum} and {maximum}")
        return value

    # -- response --------------------------------------------------------------------------------

    def set_default_headers(self) -> None:
        super().set_default_headers()
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
        self._rate_headers()  # a 429 is answered with the headers cleared: say them again

    def options(self, *args: str) -> None:
        """CORS preflight: the headers are already set; nothing else to say."""
        self.set_status(204)
        self.finish()

    def write_json(self, value: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(dumps(value))


class NotFoundHandler(BaseHandler):
    """Every path no route matches: a JSON 404 instead of Tornado's HTML page."""

    needs_key = False

    async def prepare(self) -> None:
        await super().prepare()
        if self.request.method != "OPTIONS":
            raise NotFound(f"no such endpoint: {self.request.path}")
