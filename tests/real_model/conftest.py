"""Fixtures of the real_model tests (make test-model); the harness itself is in harness.py.

A failing test shows the end of the log of every model server and service it used.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from tests.real_model.harness import (
    LOG_TAIL,
    LOGS,
    MODEL_ALIAS,
    ModelServer,
    free_port,
    running_service,
    tail,
)
from tests.server_process import ServerProcess


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    report = yield
    if report.failed:
        for label, log in list(LOGS.items()):
            report.sections.append((f"{label} (last {LOG_TAIL} lines)", tail(log())))
    return report


@pytest.fixture(scope="module")
def model_server() -> Iterator[ModelServer]:
    """The module's model server: not interrupting, on a free loopback port, killed at the end."""
    server = ModelServer(free_port()).start()
    models = requests.get(f"{server.base_url}/models", timeout=10).json()
    assert [m["id"] for m in models["data"]] == [MODEL_ALIAS], models
    yield server
    server.close()


@pytest.fixture
def start_model_server() -> Iterator[Callable[..., ModelServer]]:
    """Start a model server of the test's own (`"--interrupt_requests"` for an interrupting one)."""
    started: list[ModelServer] = []

    def start(*options: str, label: str = "own model server") -> ModelServer:
        server = ModelServer(free_port(), *options, label=label)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.close()


@pytest.fixture
def start_service() -> Iterator[Callable[..., ServerProcess]]:
    """Start server.py against a model server, for this test only."""
    with contextlib.ExitStack() as stack:
        yield lambda model, *options: stack.enter_context(running_service(model, *options))
