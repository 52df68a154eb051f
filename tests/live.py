"""What the browser, CLI and screenshot code share: live server fixtures, HTTP helpers, image checks."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from playwright.sync_api import Page, expect

from client.sse import parse
from tests.server_process import ServerProcess


def live_server(*args: str) -> Callable[[], Iterator[ServerProcess]]:
    """A module-scoped fixture: one server.py process with these options for a whole test module."""

    @pytest.fixture(scope="module")
    def server() -> Iterator[ServerProcess]:
        process = ServerProcess(*args)
        yield process
        process.kill()

    return server


def run_to_completion(base_url: str, topic: str) -> str:
    """Create a session and read its stream to the end; its id."""
    with requests.Session() as http:
        session_id = http.post(f"{base_url}/api/sessions", json={"topic": topic}, timeout=10).json()["id"]
        with http.get(f"{base_url}/api/sessions/{session_id}/run", stream=True, timeout=30) as stream:
            for event in parse(stream.iter_content(chunk_size=None)):
                if json.loads(event.data)["type"] == "final":
                    return session_id
    raise AssertionError(f"the session for {topic!r} ended without a lesson")


def get_json(base_url: str, path: str) -> Any:
    response = requests.get(base_url + path, timeout=10)
    response.raise_for_status()
    return response.json()


def step_outputs(base_url: str, session_id: str) -> dict[str, str]:
    """Each step's final output, by step name, as the service stored it."""
    session = get_json(base_url, f"/api/sessions/{session_id}")
    return {step["name"]: step["output"] for step in session["steps"]}


def assert_images_loaded(page: Page, count: int) -> None:
    """The lesson shows `count` images, and every one of them has really loaded."""
    images = page.locator("#lesson img")
    expect(images).to_have_count(count)
    for image in images.all():
        # decode() settles once the image has loaded, and rejects if it cannot be.
        assert image.evaluate("i => i.decode().then(() => i.naturalWidth)") > 0
