"""Fixtures: a real Tornado server on a real port (pytest-tornado), its engine, and JSON helpers."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import tornado.httpclient
import tornado.testing
import ujson
from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop

from conf.settings import Settings, settings_for_tests
from server import make_app
from store import MemoryStore, RedisStore, SessionStore
from store.sqlite import SQLiteStore
from tests import sse_client
from tests.browser import browser, tab  # noqa: F401  (fixtures of every browser test module)
from tests.fake_openai import FakeOpenAI
from tools.redis_server import RedisServer, require_redis_server
from workflow.engine import Engine
from workflow.providers.base import LessonProvider
from workflow.providers.builtin import BuiltinProvider
from workflow.providers.images import ModelImages
from workflow.providers.llm import OpenAICompatibleProvider
from workflow.providers.openai_client import make_client
from workflow.providers.prompts import Prompts


@pytest.fixture
def io_loop() -> Iterator[IOLoop]:
    """pytest-tornado's loop, made without Tornado's deprecated make-current path: that path asks
    asyncio for the thread's loop first, which creates one nobody ever closes."""
    loop = IOLoop(make_current=False)
    asyncio.set_event_loop(loop.asyncio_loop)  # type: ignore[attr-defined]
    yield loop
    asyncio.set_event_loop(None)
    loop.close(all_fds=True)


@pytest.fixture(autouse=True)
def close_sse_connections(request: pytest.FixtureRequest) -> Iterator[None]:
    """Close the raw connections an async test opened while its loop still runs, so nothing leaks.

    Only tests that have an IOLoop get one: a loop made for a synchronous test (the browser tests
    run Playwright's own) would be left behind as the thread's current loop.
    """
    # Asked for here, not at teardown, so that the loop is torn down after this fixture.
    io_loop = request.getfixturevalue("io_loop") if "io_loop" in request.fixturenames else None
    yield
    leftover = list(sse_client.OPEN_CONNECTIONS)
    sse_client.OPEN_CONNECTIONS.clear()
    if leftover and io_loop is not None:
        io_loop.run_sync(lambda: asyncio.gather(*(c.aclose() for c in leftover)), timeout=10)


class _ErrorRecords(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        # The service logs its requests as orchestrator.access; tornado.access is the test doubles'
        # (the fake model server answering 500 on purpose).
        if record.name != "tornado.access":
            self.records.append(record)


@pytest.fixture(autouse=True)
def no_unexpected_errors(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test during which the service logged an ERROR it did not expect.

    A crashed run or a failed write only logs; without this every test would still pass. A test
    that provokes errors on purpose names them: `@pytest.mark.expect_errors("regex", ...)`.
    """
    expected = [re.compile(p) for m in request.node.iter_markers("expect_errors") for p in m.args]
    handler = _ErrorRecords()
    logging.getLogger().addHandler(handler)
    yield
    logging.getLogger().removeHandler(handler)
    unexpected = [
        f"{r.name}: {r.getMessage()}" + (f" ({r.exc_info[1]!r})" if r.exc_info and r.exc_info[1] else "")
        for r in handler.records
        if not any(p.search(r.getMessage()) for p in expected)
    ]
    if unexpected:
        pytest.fail("the service logged unexpected errors:\n" + "\n".join(unexpected), pytrace=False)


@pytest.fixture
def config_overrides() -> dict[str, Any]:
    """Override in a test module (or parametrize) to change the server's settings."""
    return {}


# Tests fire requests far faster than any client should: rate limits are tested where they are named.
NO_RATE_LIMITS = {"rate_limit": "", "create_rate_limit": ""}


@pytest.fixture
def config(config_overrides: dict[str, Any]) -> Settings:
    return settings_for_tests(**{**NO_RATE_LIMITS, **config_overrides})


@pytest.fixture
def provider() -> LessonProvider:
    """The provider the server uses; tests swap in doubles from tests/providers.py."""
    return BuiltinProvider(pace=0)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the whole run (started when a test first needs it; skips without one).
    Tests never see each other's data: each has a key prefix of its own (`redis_prefix`)."""
    server = RedisServer(tmp_path_factory.mktemp("redis"), executable=require_redis_server()).start()
    yield server
    server.stop()


@pytest.fixture
def redis_prefix() -> str:
    return f"test:{uuid.uuid4().hex[:12]}:"


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store(request: pytest.FixtureRequest, io_loop: Any, tmp_path: Path) -> Iterator[SessionStore]:
    """Every test that runs the service runs it on every store."""
    if request.param == "memory":
        yield MemoryStore()
        return
    opened: SessionStore
    if request.param == "sqlite":
        opened = io_loop.run_sync(lambda: SQLiteStore.open(tmp_path / "orchestrator.db", commit_window=0))
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        prefix: str = request.getfixturevalue("redis_prefix")
        opened = io_loop.run_sync(lambda: RedisStore.open(server.url, prefix=prefix, instance="tests"))
    yield opened
    io_loop.run_sync(opened.close)


@pytest.fixture
def engine(config: Settings, provider: LessonProvider, store: SessionStore, io_loop: Any) -> Iterator[Engine]:
    engine = Engine(store, provider, config.engine_options())
    yield engine
    if engine.accepting:  # stopped as server.py stops it, unless the test did: nothing left pending
        io_loop.run_sync(lambda: engine.shutdown(0), timeout=30)


@pytest.fixture
def app(config: Settings, engine: Engine) -> Any:
    return make_app(config, engine)


@pytest.fixture
def fake(io_loop: IOLoop) -> Iterator[FakeOpenAI]:
    """A fake OpenAI-compatible model server on a free port (tests/fake_openai.py)."""
    fake = FakeOpenAI()
    server = HTTPServer(fake.app())
    sock, port = tornado.testing.bind_unused_port()
    server.add_socket(sock)
    fake.url = f"http://127.0.0.1:{port}/v1"
    yield fake
    server.stop()
    io_loop.run_sync(server.close_all_connections, timeout=10)


@pytest.fixture
def model(engine: Engine, fake: FakeOpenAI, config: Settings, io_loop: IOLoop) -> Iterator[FakeOpenAI]:
    """Point the engine's providers at the fake server, as server.py would with these settings."""
    settings = dataclasses.replace(config.llm_config(), base_url=fake.url)
    prompts = Prompts.load(config.prompts_path)
    client = make_client(settings)
    engine.provider = OpenAICompatibleProvider(settings, prompts, client)
    if config.image_provider == "openai":
        engine.images = ModelImages(settings, prompts, client)
    yield fake
    io_loop.run_sync(engine.close_providers, timeout=10)


class API:
    """JSON requests against the test server that return (status, body, headers) and never raise."""

    def __init__(self, client: tornado.httpclient.AsyncHTTPClient, base_url: str) -> None:
        self.client, self.base_url = client, base_url

    async def request(
        self, method: str, path: str, body: Any = None, raw: bytes | None = None, **kwargs: Any
    ) -> tuple[int, Any, Any]:
        if raw is None and body is not None:
            raw = ujson.dumps(body).encode()
        if raw is None and method in ("POST", "PUT"):
            raw = b""
        if raw:  # as every JSON client does; a body of another type is a 415
            kwargs["headers"] = {"Content-Type": "application/json", **kwargs.get("headers", {})}
        response = await self.client.fetch(
            self.base_url + path, method=method, body=raw, raise_error=False, request_timeout=15, **kwargs
        )
        text = response.body or b""
        content_type = response.headers.get("Content-Type", "")
        parsed = ujson.loads(text) if text and content_type.startswith("application/json") else text
        return response.code, parsed, response.headers

    async def create(self, topic: str = "photosynthesis") -> str:
        status, body, _ = await self.request("POST", "/api/sessions", {"topic": topic})
        assert status == 201, body
        return body["id"]

    async def wait_for_status(
        self, session_id: str, wanted: Callable[[str], bool], timeout: float = 15
    ) -> dict:
        async with asyncio.timeout(timeout):
            while True:
                _, session, _ = await self.request("GET", f"/api/sessions/{session_id}")
                if wanted(session["status"]):
                    return session
                await asyncio.sleep(0.02)


@pytest.fixture
def api(http_client: tornado.httpclient.AsyncHTTPClient, base_url: str, app: Any) -> API:
    # `app` is named so that pytest sees the settings behind it (pytest-tornado looks it up by name).
    return API(http_client, base_url)
