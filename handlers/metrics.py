"""GET /metrics: the service's Prometheus metrics (core/metrics.py), and the HTTP figures behind them.

On the service's port the metrics are open to a scraper on this machine (loopback) and, from any
other address, need an admin API key. With `metrics_port` set they are also served alone on a port
of their own (`metrics_host`, loopback by default), without keys, for operators who scrape that.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import weakref
from collections.abc import Callable
from typing import Any

import tornado.netutil
import tornado.web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from tornado.httpserver import HTTPServer
from tornado.routing import PathMatches

from conf.settings import Settings
from core import metrics
from core.errors import ConfigError, Forbidden, NotFound, Unauthorized
from core.models import SessionStatus
from handlers.base import BaseHandler, JSONErrors
from handlers.openapi import DOCUMENT
from workflow.engine import Engine

log = logging.getLogger("orchestrator")

UNMATCHED = "unmatched"  # the one route label of every path no route has
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
_GROUP = re.compile(r"\((?:[^()\\]|\\.)*\)")
_PARAMETER = re.compile(r"\{[^}]+\}")
# The documented paths by their shape: `/api/sessions/{}/run` -> `/api/sessions/{id}/run`.
_DOCUMENTED = {_PARAMETER.sub("{}", path): path for path in json.loads(DOCUMENT)["paths"]}
# Per application: each route's matcher, handler class and label, worked out on first use.
_ROUTES: weakref.WeakKeyDictionary[tornado.web.Application, list[tuple[PathMatches, type, str]]] = (
    weakref.WeakKeyDictionary()
)


# -- the HTTP figures -------------------------------------------------------------------------------


def route_label(pattern: str) -> str:
    """A route's regex as its path pattern, named as the OpenAPI document names it:
    `/api/sessions/([^/]+)/run$` -> `/api/sessions/{id}/run`."""
    shape = _GROUP.sub("{}", pattern.removesuffix("$").replace("()", "")).replace("\\", "")
    return _DOCUMENTED.get(shape, shape) or "/"


def _routes(app: tornado.web.Application) -> list[tuple[PathMatches, type, str]]:
    routes = _ROUTES.get(app)
    if routes is None:
        routes = [
            (rule.matcher, rule.target, route_label(rule.matcher.regex.pattern))
            for rule in app.wildcard_router.rules
            if isinstance(rule.matcher, PathMatches) and isinstance(rule.target, type)
        ]
        _ROUTES[app] = routes
    return routes


def route_of(handler: tornado.web.RequestHandler) -> str:
    """The route pattern that sent the request to `handler`, or UNMATCHED: never the raw path,
    whose ids would make a series per session."""
    for matcher, target, label in _routes(handler.application):
        if type(handler) is target and matcher.match(handler.request) is not None:
            return label
    return UNMATCHED


def record_request(handler: tornado.web.RequestHandler) -> None:
    """Count a finished request and time it; called by the application's log_function.

    A handler that answered with an event stream says so (`streamed`): its time is how long the
    client watched, kept apart from the latency of answers.
    """
    route = route_of(handler)
    method = handler.request.method or ""
    method = method if method in METHODS else "other"
    metrics.HTTP_REQUESTS.labels(route, method, str(handler.get_status())).inc()
    seconds = handler.request.request_time()
    if getattr(handler, "streamed", False):
        metrics.SSE_STREAM_DURATION.observe(seconds)
    else:
        metrics.HTTP_DURATION.labels(route, method).observe(seconds)


# -- the scrape -------------------------------------------------------------------------------------


async def refresh(engine: Engine) -> None:
    """Set the gauges that are read at scrape time from the engine and its store."""
    stats = await engine.stats()
    by_status = stats["by_status"]
    for status in SessionStatus:
        metrics.SESSIONS.labels(status.value).set(by_status.get(status.value, 0))
    metrics.RUNNING_SESSIONS.set(engine.running_count)
    metrics.QUEUED_SESSIONS.set(engine.queue_length)
    metrics.SUBSCRIBERS.set(stats["subscribers"])
    store = stats["store"]
    metrics.STORE_SIZE.set(store.get("size_bytes", 0))
    metrics.STORE_WRITABLE.set(1 if store.get("writable", True) else 0)
    metrics.STORE_PENDING_WRITES.set(store.get("pending_writes", 0))


async def write_metrics(handler: tornado.web.RequestHandler, engine: Engine) -> None:
    await refresh(engine)
    handler.set_header("Content-Type", CONTENT_TYPE_LATEST)
    handler.set_header("Cache-Control", "no-store")
    handler.finish(generate_latest(metrics.REGISTRY))


def is_loopback_address(address: str | None) -> bool:
    """Whether a client address is this machine's loopback (127.0.0.0/8, ::1, or ::ffff:127.x.x.x)."""
    try:
        ip = ipaddress.ip_address((address or "").strip("[]"))
    except ValueError:
        return False  # not an IP address (a Unix socket): not known to be loopback
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


class MetricsHandler(BaseHandler):
    """GET /metrics on the service's port: open to this machine; from elsewhere an admin key.

    No CORS headers: a page in a browser on this machine (any site) must not read the metrics, so
    a cross-origin script is refused the answer, and a preflight gets no Access-Control-* headers.
    """

    needs_key = False  # its own rule, below
    rate_limited = False  # a scraper polls it

    def set_default_headers(self) -> None:
        JSONErrors.set_default_headers(self)  # the hardening headers, without BaseHandler's CORS

    async def prepare(self) -> None:
        await super().prepare()
        if self.request.method == "OPTIONS" or is_loopback_address(self.request.remote_ip):
            return
        if not self.access.keys:  # no key could ever be accepted: say what works instead
            raise Forbidden(
                "/metrics is open to this machine only, and this service has no API keys: scrape it "
                "from here, or use metrics_port"
            )
        if self.identity is None:
            raise Unauthorized(
                "/metrics from another machine needs an admin API key: send Authorization: Bearer <key>"
            )
        if not self.identity.admin:
            raise Forbidden("/metrics needs an admin API key")

    def compute_etag(self) -> str | None:
        return None  # every scrape differs: no hash of the body, no 304

    async def get(self) -> None:
        await write_metrics(self, self.engine)


# -- metrics_port: /metrics alone, on a port of its own ---------------------------------------------


class PortMetricsHandler(JSONErrors):
    """GET /metrics on metrics_port: no keys, no CORS. On a loopback address the Host must be one of
    `allowed_hosts` (against DNS rebinding, as on the service's port without keys)."""

    def initialize(self, engine: Engine, allowed_hosts: frozenset[str] | None) -> None:
        self.engine, self.allowed_hosts = engine, allowed_hosts

    def prepare(self) -> None:
        if self.allowed_hosts is not None and self.request.host_name not in self.allowed_hosts:
            raise Forbidden(f"this service does not answer to the host {self.request.host_name!r}")

    def compute_etag(self) -> str | None:
        return None

    async def get(self) -> None:
        await write_metrics(self, self.engine)


class PortNotFound(JSONErrors):
    def prepare(self) -> None:
        raise NotFound(f"no such endpoint: {self.request.path}; this port serves /metrics only")


def metrics_app(
    settings: Settings,
    engine: Engine,
    log_function: Callable[[tornado.web.RequestHandler], None] | None = None,
) -> tornado.web.Application:
    """The application of metrics_port: /metrics and a JSON 404 for anything else. Its requests go to
    `log_function` (server.log_request: the access log and the HTTP metrics), or are only counted."""
    hosts = {h.strip().lower() for h in settings.allowed_hosts.split(",") if h.strip()}
    checked = _is_loopback_host(settings.metrics_host) and "*" not in hosts
    kwargs: dict[str, Any] = {"engine": engine, "allowed_hosts": frozenset(hosts) if checked else None}
    return tornado.web.Application(
        [(r"/metrics", PortMetricsHandler, kwargs)],
        default_handler_class=PortNotFound,
        compress_response=False,
        log_function=log_function or record_request,
    )


def serve_metrics(
    settings: Settings,
    engine: Engine,
    log_function: Callable[[tornado.web.RequestHandler], None] | None = None,
) -> HTTPServer | None:
    """Listen on metrics_host:metrics_port for /metrics; None when metrics_port is 0 (off).
    A port that cannot be bound is a ConfigError naming it."""
    if not settings.metrics_port:
        return None
    try:
        sockets = tornado.netutil.bind_sockets(settings.metrics_port, settings.metrics_host)
    except OSError as exc:
        raise ConfigError(
            f"metrics_port: cannot listen on {settings.metrics_host}:{settings.metrics_port}: {exc.strerror}"
        ) from None
    server = HTTPServer(
        metrics_app(settings, engine, log_function),
        idle_connection_timeout=settings.request_timeout,
        body_timeout=settings.request_timeout,
    )
    server.add_sockets(sockets)
    log.info(
        "serving /metrics alone on %s port %d (metrics_port)", settings.metrics_host, settings.metrics_port
    )
    return server


def _is_loopback_host(host: str) -> bool:
    return host.lower() == "localhost" or is_loopback_address(host)
