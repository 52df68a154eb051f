"""The ids every log line carries: set by the request handler and the session runner, read by logging."""

import contextvars

# asyncio copies the context into every task, so a session run started by a request keeps that
# request's id.
request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
session_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("session_id", default="-")
