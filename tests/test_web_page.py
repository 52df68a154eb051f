"""The web page at / in headless Chromium, against live server processes, used as a person would."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import requests
from playwright.sync_api import Page, Request, expect

from tests.live import assert_images_loaded, get_json, live_server, run_to_completion, step_outputs
from tests.server_process import ServerProcess
from tests.tcp_proxy import CuttingProxy

RUN = 30_000  # ms any run here may take, start to lesson
server = live_server()
# About 3 s a run (a short retry hint so a resumed stream does not wait the default 3 s).
paced_server = live_server("--pace=3000", "--sse_retry=200")
failing_server = live_server("--step_timeout=0.01", "--pace=50")
API_KEY = "secret-key-1"
KEY_HEADER = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture(scope="module")
def keyed_server() -> Iterator[ServerProcess]:
    """A server with API keys, paced like `paced_server` so a run can be caught midway."""
    process = ServerProcess("--pace=3000", "--sse_retry=200", env={"ORCH_API_KEYS": f"tester:{API_KEY}"})
    yield process
    process.kill()


def generate(page: Page, base_url: str, topic: str) -> str:
    """Type a topic, press Generate, and return the new session's id once its address shows it."""
    page.goto(base_url + "/")
    page.fill("#topic", topic)
    page.click("#generate")
    expect(page).to_have_url(re.compile(r"\?session="))
    return parse_qs(urlparse(page.url).query)["session"][0]


def step_texts(page: Page) -> dict[str, str]:
    """Each step's Markdown as the page received it (kept whole beside its rendering)."""
    texts = page.locator(".step .step-source").all_text_contents()
    names = page.locator(".step").evaluate_all("steps => steps.map(s => s.dataset.step)")
    return dict(zip(names, texts, strict=True))


def step(page: Page, name: str):  # type: ignore[no-untyped-def]
    return page.locator(f'.step[data-step="{name}"]')


def test_a_full_run_shows_five_completed_steps_then_the_lesson_with_its_images(server, tab):
    page = tab.page
    session_id = generate(page, server.url, "photosynthesis")
    expect(page.locator("#run-status")).to_have_text("Completed", timeout=RUN)
    expect(page.locator('.step[data-status="completed"]')).to_have_count(5)
    for state in page.locator(".step-state").all_text_contents():
        assert re.fullmatch(r"Done · \d+(\.\d)? m?s", state), state
    expect(page.locator(".step-bar-fill").first).to_have_attribute("style", "width: 100%;")
    assert step_texts(page) == step_outputs(server.url, session_id)

    result = get_json(server.url, f"/api/sessions/{session_id}/result")
    # The summary is shown once: as the lesson's last section.
    expect(page.locator("#lesson h2").last).to_have_text("Summary")
    expect(page.locator("#lesson > p").last).to_have_text(result["summary"])
    expect(page.get_by_text(result["summary"], exact=True).filter(visible=True)).to_have_count(1)
    expect(page.locator("#total-time")).to_have_text(re.compile(r"^\d+(\.\d)? m?s$"))
    expect(page.locator("#lesson h1")).to_have_text("Photosynthesis")
    expect(page.locator("#lesson h2").first).to_have_text("Learning objectives")
    assert_images_loaded(page, 2)
    expect(page.locator("#lesson figcaption")).to_have_text(["Lesson map", "Key terms"])
    links = page.locator("#downloads a").evaluate_all(
        "as => as.map(a => [a.getAttribute('href'), a.download])"
    )
    assert links == [
        [f"/api/sessions/{session_id}/lesson.zip", ""],
        [f"/api/sessions/{session_id}/lesson.md", ""],
    ] + [[url, ""] for url in result["images"].values()]
    recent = page.locator(f'.recent-item[data-session="{session_id}"]')
    expect(recent).to_contain_text("photosynthesis")
    expect(recent).to_have_attribute("aria-current", "true")
    expect(page).to_have_title("photosynthesis · Orchestrator")


@pytest.mark.parametrize("tab", [{"bypass_csp": True}], indirect=True)
def test_markup_in_a_topic_is_shown_as_text_and_never_runs(server, tab):
    # The page's CSP would stop inline handlers anyway; bypassing it tests that nothing gets that far.
    page = tab.page
    topic = '<img src=x onerror="window.__xss=1;alert(1)"><script>window.__xss=2</script>'
    generate(page, server.url, topic)
    expect(page.locator("#run-status")).to_have_text("Completed", timeout=RUN)
    expect(page.locator("#run-topic")).to_have_text(topic)
    expect(page.locator("#lesson h1")).to_contain_text("onerror=")
    expect(page.locator(".recent-item").first).to_contain_text(topic)
    assert page.locator('img[src="x"]').count() == 0 and page.locator("#lesson script").count() == 0
    assert_images_loaded(page, 2)  # the lesson's own diagrams still show
    assert page.evaluate("window.__xss") is None
    assert tab.dialogs == []


def test_a_connection_cut_mid_run_is_resumed_without_repeating_any_text(paced_server, tab):
    page = tab.page
    with CuttingProxy(paced_server.port, cut_after=15_000) as proxy:
        session_id = generate(page, proxy.url, "photosynthesis")
        expect(page.locator("#run-status")).to_have_text("Completed", timeout=RUN)
        assert proxy.cuts_made == 1
        streams = proxy.stream_requests()
        assert len(streams) == 2 and re.search(r"Last-Event-ID: \d+\r\n", streams[1])
        assert step_texts(page) == step_outputs(paced_server.url, session_id)
        assert_images_loaded(page, 2)
        expect(page.locator("#connection")).to_be_hidden()


def test_reloading_mid_run_rebuilds_the_view_from_the_replay(paced_server, tab):
    page = tab.page
    session_id = generate(page, paced_server.url, "photosynthesis")
    expect(step(page, "create-content")).to_have_attribute("data-status", "running", timeout=RUN)
    page.reload()
    expect(page.locator("#run-topic")).to_have_text("photosynthesis")
    expect(step(page, "analyze-topic")).to_have_attribute("data-status", "completed")
    expect(page.locator("#run-status")).to_have_text("Completed", timeout=RUN)
    assert step_texts(page) == step_outputs(paced_server.url, session_id)
    assert_images_loaded(page, 2)


def test_cancel_stops_the_run_and_shows_it_cancelled(paced_server, tab):
    page = tab.page
    session_id = generate(page, paced_server.url, "the French Revolution")
    expect(step(page, "create-content")).to_have_attribute("data-status", "running", timeout=RUN)
    page.click("#cancel")
    expect(page.locator("#run-status")).to_have_text("Cancelled")
    expect(page.locator("#banner")).to_have_text("This lesson was cancelled.")
    expect(page.locator("#cancel")).to_be_hidden()
    expect(step(page, "analyze-topic")).to_have_attribute("data-status", "completed")
    expect(step(page, "create-content")).to_have_attribute("data-status", "stopped")
    expect(step(page, "finalize-lesson")).to_have_attribute("data-status", "skipped")
    expect(page.locator("#result")).to_be_hidden()
    assert get_json(paced_server.url, f"/api/sessions/{session_id}")["status"] == "cancelled"


def test_a_failed_step_and_the_sessions_error_are_shown_plainly(failing_server, tab):
    page = tab.page
    session_id = generate(page, failing_server.url, "photosynthesis")
    expect(page.locator("#run-status")).to_have_text("Failed", timeout=RUN)
    error = get_json(failing_server.url, f"/api/sessions/{session_id}")["steps"][0]["error"]
    expect(step(page, "analyze-topic")).to_have_attribute("data-status", "failed")
    expect(step(page, "analyze-topic").locator(".step-note")).to_have_text(error)
    expect(page.locator("#banner")).to_have_text(f"The lesson could not be written (analyze-topic): {error}")
    expect(step(page, "generate-outline")).to_have_attribute("data-status", "skipped")


def test_a_finished_session_opened_from_the_recent_list_replays_and_shows_its_lesson(server, tab):
    page = tab.page
    session_id = run_to_completion(server.url, "how vaccines work")
    page.goto(server.url + "/")
    page.locator(f'.recent-item[data-session="{session_id}"]').click()
    expect(page).to_have_url(f"{server.url}/?session={session_id}")
    expect(page.locator("#run-status")).to_have_text("Completed", timeout=RUN)
    expect(page.locator("#run-topic")).to_have_text("how vaccines work")
    assert step_texts(page) == step_outputs(server.url, session_id)
    assert_images_loaded(page, 2)
    page.go_back()
    expect(page.locator("#intro")).to_be_visible()
    expect(page.locator("#run")).to_be_hidden()


def test_an_unknown_session_in_the_address_says_so(server, tab):
    tab.page.goto(server.url + "/?session=no-such-session")
    expect(tab.page.locator("#banner")).to_have_text(
        "There is no session with this id (it may have been deleted)."
    )
    # Not a failed run: no steps that never were, just "not found".
    expect(tab.page.locator("#run-status")).to_have_text("Not found")
    expect(tab.page.locator("#run-topic")).to_have_text("Session not found")
    expect(tab.page.locator("#steps")).to_be_hidden()
    expect(tab.page.locator("#generate")).to_be_enabled()


@pytest.mark.parametrize("tab", [{"viewport": {"width": 360, "height": 740}}], indirect=True)
def test_a_finished_lesson_fits_a_360_pixel_phone_without_sideways_scrolling(server, tab):
    page = tab.page
    generate(page, server.url, "photosynthesis")
    expect(page.locator("#run-status")).to_have_text("Completed", timeout=RUN)
    assert_images_loaded(page, 2)
    assert page.evaluate("document.documentElement.scrollWidth") <= 360


# -- a service with API keys ----------------------------------------------------------------------


def keyed_json(base_url: str, path: str) -> Any:
    response = requests.get(base_url + path, headers=KEY_HEADER, timeout=10)
    response.raise_for_status()
    return response.json()


def record_api_requests(page: Page) -> list[Request]:
    seen: list[Request] = []
    page.on("request", lambda request: seen.append(request) if "/api/" in request.url else None)
    return seen


def give_key(page: Page, key: str) -> None:
    dialog = page.get_by_role("dialog", name="API key needed")
    expect(dialog).to_be_visible()
    expect(page.get_by_label("API key", exact=True)).to_be_focused()
    page.get_by_label("API key", exact=True).fill(key)
    dialog.get_by_role("button", name="Use this key").click()


def test_with_api_keys_the_page_asks_for_the_key_once_then_runs_a_lesson_to_the_end(keyed_server, tab):
    page = tab.page
    requests_made = record_api_requests(page)
    page.goto(keyed_server.url + "/")
    # A wrong key is refused and asked for again, saying so; the right one is kept for the tab.
    give_key(page, "not-the-key")
    expect(page.locator("#key-error")).to_have_text("That key was not accepted. Check it and try again.")
    give_key(page, API_KEY)
    expect(page.locator("#key-dialog")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('orchestrator.apiKey')") == API_KEY

    with page.expect_response(
        lambda r: r.url.endswith("/api/sessions") and r.request.method == "POST"
    ) as made:
        page.fill("#topic", "photosynthesis")
        page.click("#generate")
    created = made.value.json()
    expect(page).to_have_url(re.compile(r"\?session="))
    session_id = parse_qs(urlparse(page.url).query)["session"][0]
    assert created["id"] == session_id
    expect(page.locator("#run-status")).to_have_text("Completed", timeout=RUN)
    expect(page.locator("#key-dialog")).to_be_hidden()  # asked once: never again in this run
    session = keyed_json(keyed_server.url, f"/api/sessions/{session_id}")
    assert step_texts(page) == {step["name"]: step["output"] for step in session["steps"]}
    expect(page.locator("#lesson h1")).to_have_text("Photosynthesis")
    assert_images_loaded(page, 2)  # fetched with the key, since an <img> cannot send it
    # A download link cannot send the key either: the page fetches the file with it and saves that.
    with page.expect_download() as download:
        page.locator("#downloads a", has_text="Markdown").click()
    assert download.value.suggested_filename == "photosynthesis.md"
    lesson = requests.get(
        f"{keyed_server.url}/api/sessions/{session_id}/lesson.md", headers=KEY_HEADER, timeout=10
    )
    assert Path(download.value.path()).read_bytes() == lesson.content
    assert tab.dialogs == []  # no window.prompt or alert

    # The stream is read from the stream_url the create answered (EventSource cannot send a header);
    # every other API request carries the key.
    streams = [r for r in requests_made if "/run" in urlparse(r.url).path]
    assert len(streams) == 1 and "token=" in streams[0].url
    assert streams[0].url == keyed_server.url + created["stream_url"]
    sent = [r.headers.get("authorization") for r in requests_made if r not in streams]
    assert sent[:2] == [None, "Bearer not-the-key"]  # the two refused: no key, then the wrong one
    assert len(sent) > 4 and set(sent[2:]) == {f"Bearer {API_KEY}"}


def test_with_api_keys_a_reload_mid_run_keeps_the_key_and_streams_from_the_sessions_stream_url(
    keyed_server, tab
):
    page = tab.page
    page.goto(keyed_server.url + "/")
    give_key(page, API_KEY)
    page.fill("#topic", "the water cycle")
    page.click("#generate")
    expect(page).to_have_url(re.compile(r"\?session="))
    session_id = parse_qs(urlparse(page.url).query)["session"][0]
    expect(step(page, "create-content")).to_have_attribute("data-status", "running", timeout=RUN)

    requests_made = record_api_requests(page)
    page.reload()
    expect(page.locator("#run-topic")).to_have_text("the water cycle")
    expect(page.locator("#run-status")).to_have_text("Completed", timeout=RUN)
    expect(page.locator("#key-dialog")).to_be_hidden()  # the tab kept the key: not asked again
    session = keyed_json(keyed_server.url, f"/api/sessions/{session_id}")
    assert step_texts(page) == {step["name"]: step["output"] for step in session["steps"]}
    assert_images_loaded(page, 2)
    paths = [urlparse(r.url).path for r in requests_made]
    stream = next(r for r in requests_made if urlparse(r.url).path.endswith("/run"))
    # The session was read first (with the key), and the stream opened with the token it carried.
    assert paths.index(f"/api/sessions/{session_id}") < paths.index(f"/api/sessions/{session_id}/run")
    assert "token=" in stream.url and "authorization" not in stream.headers
    assert tab.dialogs == []


def test_with_api_keys_cancelling_the_key_dialog_leaves_a_plain_message(keyed_server, tab):
    page = tab.page
    page.goto(keyed_server.url + "/")
    page.get_by_role("dialog", name="API key needed").get_by_role("button", name="Cancel").click()
    expect(page.locator("#key-dialog")).to_be_hidden()
    page.fill("#topic", "photosynthesis")
    page.click("#generate")
    # Generate asks again; cancelling says plainly what is missing and starts nothing.
    page.get_by_role("dialog", name="API key needed").press("Escape")
    expect(page.locator("#form-error")).to_have_text("This service needs an API key.")
    expect(page.locator("#run")).to_be_hidden()
    assert tab.dialogs == []


def test_without_api_keys_the_page_never_asks_for_one(server, tab):
    page = tab.page
    requests_made = record_api_requests(page)
    generate(page, server.url, "photosynthesis")
    expect(page.locator("#run-status")).to_have_text("Completed", timeout=RUN)
    expect(page.locator("#key-dialog")).to_be_hidden()
    assert all("authorization" not in r.headers for r in requests_made)
    assert page.evaluate("sessionStorage.length") == 0
