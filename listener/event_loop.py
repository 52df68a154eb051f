"""The asyncio event loop the service runs on: uvloop when it is installed, or asyncio's own.

Tornado runs on any asyncio loop; uvloop (libuv underneath) spends less CPU per socket operation and
callback, which is most of what serving streams costs. `event_loop=asyncio` turns it off.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The factory of the loop `choice` names ("auto", "uvloop" or "asyncio"); None for asyncio's.
    "uvloop" without uvloop installed is a RuntimeError that says so."""
    if choice == "asyncio" or (choice == "auto" and importlib.util.find_spec("uvloop") is None):
        return None
    try:
        import uvloop
    except ImportError as exc:
        raise RuntimeError(f"event_loop=uvloop, but uvloop cannot be imported: {exc}") from None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(choice: str, main: Coroutine[Any, Any, T]) -> T:
    """Run `main` to its end on a new loop of the kind `choice` names, as asyncio.run does."""
    try:
        factory = loop_factory(choice)
    except RuntimeError:
        main.close()
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


def loop_name() -> str:
    """What the running loop is, for the start's log line."""
    return "uvloop" if type(asyncio.get_running_loop()).__module__.startswith("uvloop") else "asyncio"
