"""Starts the orchestrator: settings, store, engine, HTTP server, periodic sweep, signals, drain, exit."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import tornado.netutil
import tornado.web
from tornado.httpserver import HTTPServer
from tornado.ioloop import PeriodicCallback

from conf.logging_setup import setup_logging
from conf.settings import Settings, load_settings
from core.context import request_id_var
from core.errors import ConfigError, SettingsError, StoreUnavailable
from handlers.base import NotFoundHandler
from handlers.health import HealthHandler
from handlers.images import ImageHandler
from handlers.lesson import LessonHTMLHandler, LessonMarkdownHandler
from handlers.sessions import CancelHandler, ResultHandler, SessionHandler, SessionsHandler
from handlers.stream import OpenStreams, RunHandler
from store import MemoryStore, SessionStore
from store.sqlite import SQLiteStore
from workflow.engine import Engine
from workflow.providers.base import LessonProvider
from workflow.providers.builtin import BuiltinProvider
from workflow.providers.images import DiagramImages, ImageProvider, ModelImages
from workflow.providers.llm import OpenAICompatibleProvider
from workflow.providers.openai_client import make_client
from workflow.providers.prompts import Prompts

log = logging.getLogger("orchestrator")
access_log = logging.getLogger("orchestrator.access")
WEB_DIR = Path(__file__).resolve().parent / "web"
SESSION = r"/api/sessions/([^/]+)"


def log_request(handler: tornado.web.RequestHandler) -> None:
    status = handler.get_status()
    level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
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
    """The configured store, opened; raises StoreUnavailable naming the file if it cannot be."""
    if settings.store == "memory":
        return MemoryStore()
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
    return Engine(store, provider, settings.engine_options(), images)


def make_app(settings: Settings, engine: Engine) -> tornado.web.Application:
    routes: list[Any] = [
        (r"/api/sessions", SessionsHandler),
        (SESSION, SessionHandler),
        (SESSION + r"/run", RunHandler),
        (SESSION + r"/result", ResultHandler),
        (SESSION + r"/cancel", CancelHandler),
        (SESSION + r"/images/([^/]+)", ImageHandler),
        (SESSION + r"/lesson\.html", LessonHTMLHandler),
        (SESSION + r"/lesson\.md", LessonMarkdownHandler),
        (r"/health", HealthHandler),
        (r"/()", tornado.web.StaticFileHandler, {"path": str(WEB_DIR), "default_filename": "index.html"}),
        (r"/web/(.+)", tornado.web.StaticFileHandler, {"path": str(WEB_DIR)}),
    ]
    return tornado.web.Application(
        routes,
        engine=engine,
        config=settings,
        open_streams=OpenStreams(),
        default_handler_class=NotFoundHandler,
        compress_response=False,  # an event stream must never be gzipped
        log_function=log_request,
    )


async def serve(
    settings: Settings, engine: Engine, sockets: list[socket.socket], shutdown: asyncio.Event
) -> None:
    """Serve on the bound sockets until `shutdown` is set, then drain: stop accepting, finish or
    interrupt runs, close streams. The caller closes the store."""
    # Resume before accepting: a client reconnecting the moment the port answers finds its
    # session running. The port is already bound, so a start that cannot listen never gets here.
    if settings.resume_on_start:
        resumed = await engine.resume_unfinished()
        if resumed:
            log.info("resumed %d sessions a stop had interrupted", resumed)
    else:
        await engine.mark_unfinished_interrupted()
    app = make_app(settings, engine)
    server = HTTPServer(
        app,
        # Bodies over the limit get a JSON 413 from the handler; this only bounds what is buffered.
        max_body_size=2 * settings.max_body_size,
        idle_connection_timeout=settings.request_timeout,
        body_timeout=settings.request_timeout,
    )
    server.add_sockets(sockets)
    port = sockets[0].getsockname()[1]
    log.info(
        "listening on http://%s:%d (provider %s, store %s)",
        settings.host,
        port,
        engine.provider.name,
        getattr(engine.store, "path", engine.store.kind),
    )
    upkeep = [
        PeriodicCallback(lambda: _sweep(engine), settings.sweep_interval * 1000),
        PeriodicCallback(lambda: _prune(engine), settings.prune_interval * 1000),
    ]
    for callback in upkeep:
        callback.start()
    await shutdown.wait()
    log.info("shutting down: no new connections; running sessions get %g s", settings.shutdown_timeout)
    server.stop()
    await engine.shutdown(settings.shutdown_timeout)
    for callback in upkeep:
        callback.stop()
    # Every stream has been told to end; let each send its last bytes before the sockets close.
    if not await app.settings["open_streams"].wait_closed(timeout=5):
        log.warning("%d streams did not end in time; closing them", len(app.settings["open_streams"]))
    await server.close_all_connections()
    await engine.close_providers()
    log.info("stopped")


def _sweep(engine: Engine) -> None:
    engine.sweep()


async def _prune(engine: Engine) -> None:
    try:
        await engine.prune()
    except StoreUnavailable as exc:
        log.error("retention sweep failed: %s", exc)


async def main(argv: Sequence[str] | None = None) -> int:
    """Start, serve, stop. A start that fails (settings, port, store, prompt files) says why and
    exits before anything in the store has changed: the port is bound before the store is opened."""
    try:
        settings = load_settings(argv)
    except SettingsError as exc:
        print(f"server.py: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level, settings.log_format)
    shutdown = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, shutdown.set)
    try:
        sockets = tornado.netutil.bind_sockets(settings.port, settings.host)
    except OSError as exc:
        print(f"server.py: cannot listen on {settings.host}:{settings.port}: {exc.strerror}", file=sys.stderr)
        return 1
    try:
        try:
            store = await open_store(settings)
        except StoreUnavailable as exc:
            print(f"server.py: {exc}", file=sys.stderr)
            return 1
        try:
            engine = make_engine(settings, store)
            await serve(settings, engine, sockets, shutdown)
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
    sys.exit(asyncio.run(main()))
