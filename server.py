"""Starts the orchestrator: settings, store, engine, HTTP server, periodic sweep, signals, drain, exit."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import ipaddress
import logging
import signal
import socket
import sys
from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import Any

import tornado.netutil
import tornado.web
from tornado.ioloop import PeriodicCallback

from conf.logging_setup import setup_logging
from conf.settings import Settings, load_settings
from core.context import request_id_var
from core.errors import ConfigError, SettingsError, StoreUnavailable
from handlers.access import Access
from handlers.base import NotFoundHandler
from handlers.health import HealthHandler, ReadyHandler
from handlers.images import ImageHandler
from handlers.lesson import LessonHTMLHandler, LessonMarkdownHandler, LessonZipHandler
from handlers.metrics import MetricsHandler, record_request, serve_metrics
from handlers.openapi import OpenAPIHandler
from handlers.page import PageHandler
from handlers.poll import EventsHandler, HeldPolls
from handlers.sessions import CancelHandler, ResultHandler, SessionHandler, SessionsHandler, StartHandler
from handlers.stream import OpenStreams, RunHandler
from listener import CappedHTTPServer, connection_cap, event_loop, raise_open_file_limit
from listener.systemd import notify_ready
from listener.workers import reserve_port, supervise
from store import MemoryStore, SessionStore
from store.redis import RedisStore
from store.sqlite import SQLiteStore
from workflow.engine import Engine
from workflow.eventlog import EventLog, RedisEventLog
from workflow.providers.base import LessonProvider
from workflow.providers.builtin import BuiltinProvider
from workflow.providers.images import DiagramImages, ImageProvider, ModelImages
from workflow.providers.llm import OpenAICompatibleProvider
from workflow.providers.openai_client import make_client
from workflow.providers.prompts import Prompts
from workflow.webhooks import WebhookDispatcher

log = logging.getLogger("orchestrator")
access_log = logging.getLogger("orchestrator.access")
WEB_DIR = Path(__file__).resolve().parent / "web"
SESSION = r"/api/sessions/([^/]+)"


def log_request(handler: tornado.web.RequestHandler) -> None:
    record_request(handler)  # the HTTP metrics: by route pattern, method and status
    status = handler.get_status()
    # A 503 is a state the service is in (draining, queue full, store down: each logged on its own),
    # not a fault of the request; a load balancer probing /ready while it drains gets one per probe.
    level = (
        logging.INFO if status < 400 else logging.WARNING if status < 500 or status == 503 else logging.ERROR
    )
    access_log.log(
        level,
        "%d %s %s %.1fms",
        status,
        handler.request.method,
        handler.request.uri,
        1000.0 * handler.request.request_time(),
        extra={"request_id": getattr(handler, "request_id", "") or request_id_var.get()},
    )


async def open_store(settings: Settings) -> SessionStore:
    """The configured store, opened; raises StoreUnavailable naming the file (or the Redis URL,
    without its password) if it cannot be."""
    if settings.store == "memory":
        return MemoryStore()
    if settings.store == "redis":
        return await RedisStore.open(
            settings.redis_url,
            prefix=settings.redis_prefix,
            instance=settings.instance,
            lease_time=settings.lease_time,
        )
    return await SQLiteStore.open(settings.database, commit_window=settings.commit_window)


def make_engine(settings: Settings, store: SessionStore) -> Engine:
    """The engine with the configured providers; raises ConfigError if a prompt or text file is unusable."""
    provider: LessonProvider = BuiltinProvider(pace=settings.pace)
    images: ImageProvider = DiagramImages()
    if settings.provider == "openai" or settings.image_provider == "openai":
        config, prompts = settings.llm_config(), Prompts.load(settings.prompts_path)
        client = make_client(config)
        if settings.provider == "openai":
            provider = OpenAICompatibleProvider(config, prompts, client)
        if settings.image_provider == "openai":
            images = ModelImages(config, prompts, client)
    options = settings.engine_options()
    event_log: EventLog | None = None
    if isinstance(store, RedisStore):
        # Many instances: events appended anywhere reach this instance's streams through readers.
        event_log = RedisEventLog.for_store(store, options.subscriber_buffer, settings.redis_url)
    return Engine(store, provider, options, images, event_log, webhooks=settings.webhook_policy())


def start_webhooks(settings: Settings, engine: Engine) -> WebhookDispatcher | None:
    """Deliver the outbox (what was left from before a restart first); None without webhook_secret."""
    if engine.webhooks is None:
        return None
    dispatcher = WebhookDispatcher(engine.store, settings.delivery_options())
    engine.on_outbox = dispatcher.wake
    dispatcher.start()
    return dispatcher


def make_app(settings: Settings, engine: Engine, access: Access | None = None) -> tornado.web.Application:
    """The application; `access` (built from the settings if not given) holds the keys and limits."""
    routes: list[Any] = [
        (r"/api/sessions", SessionsHandler),
        (SESSION, SessionHandler),
        (SESSION + r"/run", RunHandler),
        (SESSION + r"/events", EventsHandler),
        (SESSION + r"/result", ResultHandler),
        (SESSION + r"/cancel", CancelHandler),
        (SESSION + r"/start", StartHandler),
        (SESSION + r"/images/([^/]+)", ImageHandler),
        (SESSION + r"/lesson\.html", LessonHTMLHandler),
        (SESSION + r"/lesson\.md", LessonMarkdownHandler),
        (SESSION + r"/lesson\.zip", LessonZipHandler),
        (r"/health", HealthHandler),
        (r"/metrics", MetricsHandler),
        (r"/ready", ReadyHandler),
        (r"/openapi\.json", OpenAPIHandler),
        (r"/()", PageHandler, {"path": str(WEB_DIR), "default_filename": "index.html"}),
        (r"/web/(.+)", PageHandler, {"path": str(WEB_DIR)}),
    ]
    access = access or Access(settings)
    if isinstance(engine.store, RedisStore):
        # Instances on one Redis share their rate limits too: a caller's limit is the fleet's.
        access.rates.share(engine.store.redis, engine.store.keys.rate_limits)
    return tornado.web.Application(
        routes,
        engine=engine,
        config=settings,
        access=access,
        open_streams=OpenStreams(settings.heartbeat_interval),
        held_polls=HeldPolls(),
        default_handler_class=NotFoundHandler,
        compress_response=False,  # an event stream must never be gzipped
        log_function=log_request,
    )


def collect_only_what_serving_makes() -> None:
    """Tune the garbage collector for a long-running server, once everything is set up.

    What exists by now (modules, classes, the application) lives as long as the process. Frozen, a
    full collection no longer walks it: it was 108,000 of the 150,000 objects each one went through,
    at about 1 µs each on the development machine, every second or so under load. And a young
    collection waits for 10,000 new objects, not 700: nearly all that a request or an event makes is
    freed by reference counting, so frequent young collections found little. Together they took the
    collector's time in the end-to-end benchmark from 2.2 s to 0.6 s (start-up included), of the
    11 s of server CPU it used."""
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


async def serve(
    settings: Settings,
    engine: Engine,
    sockets: list[socket.socket],
    shutdown: asyncio.Event,
    access: Access | None = None,
) -> None:
    """Serve on the bound sockets until `shutdown` is set, then drain: stop accepting, finish or
    interrupt runs, close streams. The caller closes the store."""
    metrics_server = serve_metrics(settings, engine, log_request)  # metrics_port; before any change
    await engine.log.start()  # a shared log listens for other instances' requests from now on
    # Resume before accepting: a client reconnecting the moment the port answers finds its
    # session running. The port is already bound, so a start that cannot listen never gets here.
    if settings.resume_on_start:
        resumed = await engine.resume_unfinished()
        if resumed:
            log.info("resumed %d sessions a stop had interrupted", resumed)
    else:
        await engine.mark_unfinished_interrupted()
    webhooks = start_webhooks(settings, engine)
    app = make_app(settings, engine, access)
    server = CappedHTTPServer(
        app,
        # Below the open file limit: past it a connection is closed at once, not left to hit EMFILE.
        max_connections=connection_cap(settings.max_connections),
        # Bodies over the limit get a JSON 413 from the handler; this only bounds what is buffered.
        max_body_size=2 * settings.max_body_size,
        idle_connection_timeout=settings.request_timeout,
        body_timeout=settings.request_timeout,
    )
    collect_only_what_serving_makes()
    server.add_sockets(sockets)
    port = sockets[0].getsockname()[1]
    log.info(
        "listening on http://%s:%d (provider %s, store %s, loop %s)",
        settings.host,
        port,
        engine.provider.name,
        getattr(engine.store, "path", engine.store.kind),
        event_loop.loop_name(),
    )
    upkeep = [
        PeriodicCallback(lambda: _sweep(engine), settings.sweep_interval * 1000),
        PeriodicCallback(lambda: _prune(engine), settings.prune_interval * 1000),
    ]
    if engine.store.shared:
        # Renew this instance's run leases well before they expire, and take over the runs of
        # instances that stopped renewing theirs (they died): within about twice lease_time.
        upkeep += [
            PeriodicCallback(
                lambda: _upkeep(engine.keep_leases(), "renewing leases"), settings.lease_time * 333
            ),
            PeriodicCallback(
                lambda: _upkeep(engine.take_over_orphans(), "taking over runs"), settings.lease_time * 500
            ),
        ]
    for callback in upkeep:
        callback.start()
    systemd = notify_ready(engine)  # with NOTIFY_SOCKET: READY=1, then STATUS= and WATCHDOG=1
    await shutdown.wait()
    systemd.stopping()
    log.info("shutting down: no new connections; running sessions get %g s", settings.shutdown_timeout)
    server.stop()
    # A held poll is answered now (503 with Retry-After unless events came): its client comes back
    # to another instance, or to this one once it is back, instead of waiting out the drain.
    app.settings["held_polls"].release()
    await engine.shutdown(settings.shutdown_timeout)
    for callback in upkeep:
        callback.stop()
    # Every stream has been told to end; let each send its last bytes before the sockets close.
    if not await app.settings["open_streams"].wait_closed(timeout=5):
        log.warning("%d streams did not end in time; closing them", len(app.settings["open_streams"]))
    if not await app.settings["held_polls"].wait_closed(timeout=5):
        log.warning("%d polls were not answered in time; closing them", len(app.settings["held_polls"]))
    await server.close_all_connections()
    if metrics_server is not None:
        metrics_server.stop()
        await metrics_server.close_all_connections()
    await engine.close_providers()
    if webhooks is not None:
        await webhooks.close()  # what is not delivered stays in the outbox for the next start
    systemd.close()
    log.info("stopped")


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or an address) only ever means this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _sweep(engine: Engine) -> None:
    engine.sweep()


async def _upkeep(work: Awaitable[Any], what: str) -> None:
    try:
        await work
    except StoreUnavailable as exc:
        log.warning("%s failed: %s", what, exc)


async def _prune(engine: Engine) -> None:
    try:
        await engine.prune()
    except StoreUnavailable as exc:
        log.error("retention sweep failed: %s", exc)


def bind(settings: Settings, reuse_port: bool = False) -> list[socket.socket] | None:
    """The listening sockets, or None having said why they could not be bound."""
    try:
        return tornado.netutil.bind_sockets(settings.port, settings.host, reuse_port=reuse_port)
    except OSError as exc:
        print(f"server.py: cannot listen on {settings.host}:{settings.port}: {exc.strerror}", file=sys.stderr)
        return None


def run(argv: Sequence[str] | None = None) -> int:
    """The command: one process, or with `workers` > 1 a parent that binds the port and forks that
    many workers sharing it (only on a store they can share)."""
    try:
        settings = load_settings(argv)
    except SettingsError as exc:
        print(f"server.py: {exc}", file=sys.stderr)
        return 2
    try:
        event_loop.loop_factory(settings.event_loop)
    except RuntimeError as exc:
        print(f"server.py: {exc}", file=sys.stderr)
        return 2
    if settings.workers == 1:
        return event_loop.run(settings.event_loop, main(argv))
    if settings.store != "redis":
        print(
            f"server.py: workers: {settings.workers} processes need a store they can share; "
            f"with store={settings.store} each would have its own sessions. Use store=redis, or workers=1.",
            file=sys.stderr,
        )
        return 2
    try:
        reserved, port = reserve_port(settings.host, settings.port)
    except OSError as exc:
        print(f"server.py: cannot listen on {settings.host}:{settings.port}: {exc.strerror}", file=sys.stderr)
        return 1
    setup_logging(settings.log_level, settings.log_format)
    log.info("%d workers share http://%s:%d", settings.workers, settings.host, port)

    def worker(_index: int) -> int:
        for sock in reserved:
            sock.close()  # the parent's; this worker listens on a socket of its own
        sockets = bind(dataclasses.replace(settings, port=port), reuse_port=True)
        return 1 if sockets is None else event_loop.run(settings.event_loop, main(argv, sockets))

    try:
        return supervise(settings.workers, worker)
    finally:
        for sock in reserved:
            sock.close()


async def main(argv: Sequence[str] | None = None, sockets: list[socket.socket] | None = None) -> int:
    """Start, serve, stop. A start that fails (settings, port, store, prompt files) says why and
    exits before anything in the store has changed: the port is bound before the store is opened.
    A worker is given the `sockets` its parent bound."""
    try:
        settings = load_settings(argv)
    except SettingsError as exc:
        print(f"server.py: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level, settings.log_format)
    fd_limit = raise_open_file_limit()
    log.info(
        "open file limit %d; at most %d connections at once",
        fd_limit,
        connection_cap(settings.max_connections, fd_limit),
    )
    try:
        access = Access(settings)
    except ConfigError as exc:
        print(f"server.py: {exc}", file=sys.stderr)
        return 2
    if not access.keys and not settings.allow_anonymous and not is_loopback(settings.host):
        # Like Redis's protected mode: nobody is let in from the network without a key by accident.
        print(
            f"server.py: refusing to listen on {settings.host} with no API keys: anyone who can reach it "
            "could read, cancel and delete every session. Configure api_keys_file or api_keys, listen on "
            "127.0.0.1, or set allow_anonymous=true if that is really what you want.",
            file=sys.stderr,
        )
        return 2
    shutdown = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, shutdown.set)
    sockets = sockets or bind(settings)
    if sockets is None:
        return 1
    try:
        try:
            store = await open_store(settings)
        except StoreUnavailable as exc:
            print(f"server.py: {exc}", file=sys.stderr)
            return 1
        try:
            engine = make_engine(settings, store)
            await serve(settings, engine, sockets, shutdown, access)
        except ConfigError as exc:
            print(f"server.py: {exc}", file=sys.stderr)
            return 2
        finally:
            await store.close()
    finally:
        for sock in sockets:
            sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(run())
