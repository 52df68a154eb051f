"""The contract's JavaScript client example, run as written in a real browser against a live server."""

from __future__ import annotations

import pytest

from tests.browser import chromium
from tests.contract_examples import CONTRACT, CONTRACT_JS_EXAMPLE
from tests.server_process import ServerProcess


def test_the_embedded_javascript_example_is_the_contracts_own():
    if not CONTRACT.exists():
        pytest.skip("the contract is not beside this checkout")
    assert CONTRACT_JS_EXAMPLE in CONTRACT.read_text()


@pytest.fixture
def server():
    process = ServerProcess()
    yield process
    process.kill()


def test_the_contract_javascript_example_streams_a_whole_session_in_chromium(server):
    with chromium() as browser:
        page = browser.new_page()
        logged: list[str] = []
        page.on("console", lambda message: logged.append(message.text))
        page.goto(server.url + "/")
        # The example uses top-level await, as a module or the console allows: run it as one.
        with page.expect_console_message(lambda m: m.text.startswith("Event: final"), timeout=30_000):
            page.evaluate(f"async () => {{\n{CONTRACT_JS_EXAMPLE}\n}}")
        kinds = [text.split()[1] for text in logged if text.startswith("Event:")]
        assert kinds[0] == "connected"
        assert kinds.count("step-start") == 5 and kinds.count("step-complete") == 5
        assert kinds[-1] == "final"
