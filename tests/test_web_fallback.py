"""The web page behind a proxy that buffers event streams: it falls back to long polling by itself."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.live import assert_images_loaded, live_server, step_outputs
from tests.tcp_proxy import BufferingProxy
from tests.test_web_page import RUN, generate, step, step_texts

# About 7 s a run: longer than the page waits (4 s) for a stream's first event before it polls, so
# the buffered stream cannot have ended, and let the run through, by then.
server = live_server("--pace=1500")


def request_lines(proxy: BufferingProxy) -> list[str]:
    return [head.split("\r\n", 1)[0] for head in proxy.requests]


def test_a_buffered_stream_is_given_up_for_polling_and_the_run_completes(server, tab):
    page = tab.page
    with BufferingProxy(server.port) as proxy:
        session_id = generate(page, proxy.url, "photosynthesis")
        expect(page.locator("#connection")).to_have_text(
            "Live updates via polling: the event stream is not getting through.", timeout=RUN
        )
        expect(page.locator("#run-status")).to_have_text("Completed", timeout=RUN)
        expect(page.locator('.step[data-status="completed"]')).to_have_count(5)
        assert step_texts(page) == step_outputs(server.url, session_id)
        expect(page.locator("#lesson h1")).to_have_text("Photosynthesis")
        assert_images_loaded(page, 2)
        expect(page.locator("#connection")).to_be_hidden()

        lines = request_lines(proxy)
        streams = [
            n for n, line in enumerate(lines) if line.startswith(f"GET /api/sessions/{session_id}/run")
        ]
        polls = [
            n for n, line in enumerate(lines) if line.startswith(f"GET /api/sessions/{session_id}/events?")
        ]
        assert len(streams) == 1 and polls, lines
        # The page polled while the stream was still held back: the buffering is why it saw nothing.
        assert not proxy.released or polls[0] < proxy.released[0]
        assert f"POST /api/sessions/{session_id}/start HTTP/1.1" not in lines  # the stream's GET started it


def test_cancel_works_while_polling_and_the_next_lesson_is_started_and_polled_at_once(server, tab):
    page = tab.page
    with BufferingProxy(server.port) as proxy:
        generate(page, proxy.url, "photosynthesis")
        expect(page.locator("#connection")).to_contain_text("via polling", timeout=RUN)
        expect(page.locator("#cancel")).to_be_enabled()
        page.click("#cancel")
        expect(page.locator("#run-status")).to_have_text("Cancelled", timeout=RUN)
        expect(page.locator("#banner")).to_have_text("This lesson was cancelled.")

        # Streams do not get through here: the next lesson is polled from the start, so the page
        # starts it itself, and opens no stream for it.
        page.fill("#topic", "binary search")
        page.click("#generate")
        expect(page.locator("#run-topic")).to_have_text("binary search")
        expect(step(page, "analyze-topic")).to_have_attribute("data-status", "running", timeout=RUN)
        expect(page.locator("#connection")).to_contain_text("via polling")
        session_id = page.evaluate("new URLSearchParams(location.search).get('session')")
        lines = request_lines(proxy)
        assert f"POST /api/sessions/{session_id}/start HTTP/1.1" in lines
        assert not any(line.startswith(f"GET /api/sessions/{session_id}/run") for line in lines)
