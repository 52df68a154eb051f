"""The web page's reading of a lesson in headless Chromium: Markdown rendered safely as it streams, who
wrote the lesson, the quiz, phones, printing and the controls. Against live server processes."""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
import requests
from playwright.sync_api import Locator, Page, expect

from tests.fake_openai import fake_in_thread
from tests.live import assert_images_loaded, get_json, live_server, run_to_completion, step_outputs
from tests.server_process import ServerProcess
from tests.tcp_proxy import CuttingProxy
from tests.test_web_page import generate, step, step_texts

RUN = 30_000  # ms any run here may take, start to lesson
server = live_server()
# About 3 s a run, so the page can be caught while a step is still being written.
paced_server = live_server("--pace=3000")
MODEL = "fake-tutor-1"
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}
NARROW = {"viewport": {"width": 360, "height": 740}}
HANDLERS = ["onerror", "onclick", "onload", "onmouseover", "onfocus"]
# The attacks of tests/test_lesson_html.py, in a topic, so they come back in every step's Markdown.
XSS_TOPIC = (
    '<img src=x onerror="window.__xss=1"> <script>window.__xss=2</script> '
    '<a href="#" onclick="window.__xss=3">click</a> <svg onload=window.__xss=4> '
    "<div onmouseover='window.__xss=5'>block</div> [run me](javascript:window.__xss=6) "
    "[vb](vbscript:msgbox(1)) [data](data:text/html,x) ![pixel](https://tracker.example/p.png)"
)


@pytest.fixture(scope="module")
def model_server() -> Iterator[ServerProcess]:
    """A server whose lessons a language model writes: a fake one, over real HTTP (tests/fake_openai.py)."""
    with fake_in_thread() as fake:
        process = ServerProcess(
            "--provider=openai",
            f"--llm_base_url={fake.url}",
            f"--llm_model={MODEL}",
            env={"ORCH_LLM_API_KEY": "sk-test"},
        )
        yield process
        process.kill()


def assert_inert(page: Page) -> None:
    """Nothing from a lesson's text became markup that can run or load from elsewhere."""
    for name in HANDLERS:
        assert page.locator(f"[{name}]").count() == 0, name
    assert page.locator("#steps script, #lesson script, #steps svg, #lesson svg, #steps iframe").count() == 0
    assert page.locator('img[src="x"], img[src^="https:"], img[src^="data:"]').count() == 0
    hrefs = page.locator("#steps a, #lesson a").evaluate_all("as => as.map(a => a.getAttribute('href'))")
    assert all(re.match(r"^(https?://[^/\\]|mailto:|#)", href or "", re.IGNORECASE) for href in hrefs), hrefs
    assert page.evaluate("window.__xss") is None


def test_step_text_is_formatted_while_it_streams_and_who_wrote_it_is_said(paced_server, tab):
    page = tab.page
    session_id = generate(page, paced_server.url, "photosynthesis")
    # Headings while create-content is still being written: rendered as they arrive, not at the end.
    writing = page.locator('.step[data-step="create-content"][data-status="running"] .step-text')
    expect(writing.locator("h2").first).to_be_visible(timeout=RUN)
    expect(page.locator("#generate")).to_be_disabled()  # one run at a time: no unseen duplicate
    analysis = step(page, "analyze-topic").locator(".step-text")
    expect(analysis.locator("strong", has_text="Key terms")).to_have_count(1)
    assert "**" not in analysis.text_content()
    # The built-in provider's lesson says plainly what it is, and how to have a model write one.
    note = page.locator("#provider-note")
    expect(note).to_be_visible()
    expect(note).to_contain_text("built-in provider")
    expect(note).to_contain_text("without facts")
    expect(note.locator("code")).to_have_text(re.compile(r"make run ARGS=\"--provider=openai --llm_model="))
    assert get_json(paced_server.url, f"/api/sessions/{session_id}")["metadata"]["provider"] == "builtin"

    expect(page.locator("#run-status")).to_have_text("Completed", timeout=RUN)
    expect(page.locator("#generate")).to_be_enabled()
    expect(page.locator("#announcer")).to_have_text("The lesson is ready.")
    assert page.locator("#announcer").get_attribute("aria-live") == "polite"
    assert step_texts(page) == step_outputs(paced_server.url, session_id)
    expect(page.locator("#provider-note")).to_be_visible()


@pytest.mark.parametrize("tab", [{"bypass_csp": True}], indirect=True)
def test_markup_and_harmful_links_in_a_topic_stay_inert_while_streaming_and_after(paced_server, tab):
    # Without the page's CSP, so that only the rendering stands between the text and the page.
    page = tab.page
    generate(page, paced_server.url, XSS_TOPIC)
    running = page.locator('.step[data-status="running"] .step-text')
    expect(running.filter(has_text="onerror=").first).to_be_visible(timeout=RUN)
    assert_inert(page)
    expect(page.locator("#run-status")).to_have_text("Completed", timeout=RUN)
    assert_inert(page)
    analysis = step(page, "analyze-topic").locator(".step-text")
    expect(analysis).to_contain_text("<script>window.__xss=2</script>")
    expect(page.locator("#lesson h1")).to_contain_text("onerror=")
    assert_images_loaded(page, 2)  # the lesson's own diagrams are kept
    assert tab.dialogs == []


# The attacks tests/test_lesson_html.py gives the server's renderer.
ATTACKS = [
    "# Title <script>window.__xss=1</script>",
    "<img src=x onerror=window.__xss=1>",
    "Inline <img src=x onerror=window.__xss=1> in a paragraph",
    '<a href="#" onclick="window.__xss=1">click</a>',
    "<div onmouseover='window.__xss=1'>block</div>",
    "- a list item <svg onload=window.__xss=1>",
    "[click me](javascript:window.__xss=1)",
    "[click me](JaVaScRiPt:window.__xss=1)",
    "[click me](&#106;avascript:window.__xss=1)",
    "[click me](vbscript:msgbox(1)) [x](data:text/html,x)",
    "[start it](/api/sessions/other/run) [up](../other/run) [far](//evil.example/x) [rel](relative/page)",
    "![a diagram](https://tracker.example/pixel.png) ![b](/api/sessions/other/images/outline-map.svg)",
    "![c](//tracker.example/p.png) ![d](/\\tracker.example/p.png) ![e](data:image/png;base64,AAAA)",
    "![f](/api/sessions/S/../../health) ![g](/etc/passwd)",
    '![map](/api/sessions/S/images/outline-map.svg "a\\" onerror=\\"window.__xss=1")',
    "<iframe src=javascript:window.__xss=1></iframe><style>body{display:none}</style>",
]
RENDER = """md => {
    const box = document.createElement('div');
    box.className = 'rendered';
    box.append(safeFragment(markdownFor('S').parse(md), 'S'));
    document.body.append(box);
    return {
        html: box.innerHTML,
        attributes: [...box.querySelectorAll('*')].flatMap(e => [...e.attributes].map(a => a.name)),
        hrefs: [...box.querySelectorAll('[href]')].map(a => a.getAttribute('href')),
        srcs: [...box.querySelectorAll('[src]')].map(i => i.getAttribute('src')),
    };
}"""


@pytest.mark.parametrize("tab", [{"bypass_csp": True}], indirect=True)
def test_the_pages_renderer_keeps_the_services_escaping_rules(server, tab):
    # The renderer of the step boxes, given what the server's is given, with no CSP behind it.
    page = tab.page
    page.goto(server.url + "/")
    page.wait_for_function("typeof markdownFor === 'function' && typeof DOMPurify === 'function'")
    for markdown in ATTACKS:
        shown = page.evaluate(RENDER, markdown)
        assert not re.search(r"<(script|iframe|style|svg|div)", shown["html"]), shown
        assert not [name for name in shown["attributes"] if name.startswith("on")], shown
        assert shown["hrefs"] == [], shown
        assert set(shown["srcs"]) <= {"/api/sessions/S/images/outline-map.svg"}, shown
    assert page.evaluate("window.__xss") is None
    assert tab.dialogs == []


def test_outside_links_are_kept_and_cannot_reach_the_page(server, tab):
    page = tab.page
    page.goto(server.url + "/")
    page.wait_for_function("typeof markdownFor === 'function'")
    html = page.evaluate(
        "md => { const d = document.createElement('div');"
        " d.append(safeFragment(markdownFor('S').parse(md), 'S')); return d.innerHTML; }",
        "[docs](https://example.org/a?b=1&c=2) [section](#quiz) [mail](mailto:a@b.c) **bold**",
    )
    assert '<a href="https://example.org/a?b=1&amp;c=2" rel="noopener noreferrer nofollow">docs</a>' in html
    assert '<a href="#quiz">section</a>' in html and '<a href="mailto:a@b.c">mail</a>' in html
    assert "<strong>bold</strong>" in html


def choice(question: Locator, letter: str) -> Locator:
    return question.locator(f'.quiz-choice[data-letter="{letter}"]')


def quiz_answers(base_url: str, session_id: str) -> list[str]:
    lesson = get_json(base_url, f"/api/sessions/{session_id}/result")["lesson"]
    return re.findall(r"^\d+\. \*\*([A-H])\*\*", lesson.split("### Answers", 1)[1], re.MULTILINE)


def test_the_quiz_hides_its_answers_until_one_is_picked_or_asked_for_and_printing_shows_the_lesson_alone(
    server, tab
):
    page = tab.page
    session_id = generate(page, server.url, "binary search")
    expect(page.locator("#run-status")).to_have_text("Completed", timeout=RUN)
    answers = quiz_answers(server.url, session_id)
    questions = page.locator(".quiz-question")
    expect(questions).to_have_count(len(answers))
    assert len(answers) >= 3
    expect(page.locator("#lesson .quiz-key").first).to_be_hidden()  # the answer key is not on screen
    expect(page.locator(".quiz-feedback").filter(visible=True)).to_have_count(0)

    first, second, third = questions.nth(0), questions.nth(1), questions.nth(2)
    wrong = next(letter for letter in "ABCD" if letter != answers[0])
    choice(first, wrong).click()
    expect(choice(first, wrong)).to_have_attribute("data-result", "wrong")
    expect(choice(first, answers[0])).to_have_attribute("data-result", "right")
    expect(first.locator(".quiz-feedback")).to_contain_text(f"Not quite: the answer is {answers[0]}.")
    expect(first.locator(".quiz-choice").first).to_be_disabled()

    choice(second, answers[1]).click()
    expect(second).to_have_attribute("data-answered", "right")
    expect(second.locator(".quiz-feedback")).to_contain_text("Right.")

    expect(third.locator(".quiz-feedback")).to_be_hidden()
    third.get_by_role("button", name="Show the answer").click()
    expect(third.locator(".quiz-feedback")).to_contain_text("The answer:")
    expect(choice(third, answers[2])).to_have_attribute("data-result", "right")
    expect(third.locator('.quiz-choice[data-result="wrong"]')).to_have_count(0)

    # Printed: the lesson alone, with its answer key and none of the page around it.
    page.emulate_media(media="print")
    expect(page.locator("#lesson")).to_be_visible()
    expect(page.locator("#lesson h1")).to_be_visible()
    around = ["#topic-form", "#steps", "#run-status", "#provider-note", ".recent", ".topbar", ".result-bar"]
    for hidden in around:
        expect(page.locator(hidden)).to_be_hidden()
    expect(page.locator("#lesson .quiz-key").first).to_be_visible()
    expect(page.locator(".quiz-reveal").filter(visible=True)).to_have_count(0)
    page.emulate_media(media="screen")
    expect(page.locator("#topic-form")).to_be_visible()


def assert_fits(page: Page) -> None:
    """Nothing wider than the screen: a phone would otherwise zoom the whole page out to fit it."""
    viewport = page.viewport_size
    assert viewport is not None
    width = viewport["width"]
    assert page.evaluate("innerWidth") == width
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    box = page.locator("#generate").bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width
    # The button's label is whole, not cut to "Gene".
    assert page.locator("#generate").evaluate("b => b.scrollWidth <= b.clientWidth")


@pytest.mark.parametrize("tab", [NARROW], indirect=True)
def test_a_60_character_word_does_not_widen_a_360_pixel_page(server, tab):
    page = tab.page
    word = "Pneumonoultramicroscopicsilicovolcanoconiosis" + "x" * 15
    assert len(word) == 60
    page.goto(server.url + "/")
    page.fill("#topic", word)
    assert_fits(page)
    page.click("#generate")
    expect(page.locator("#run-status")).to_have_text("Completed", timeout=RUN)
    assert_images_loaded(page, 2)
    expect(page.locator(".recent-item").first).to_contain_text(word[:10])
    assert_fits(page)


@pytest.mark.parametrize("tab", [PHONE], indirect=True)
def test_on_a_phone_a_pasted_url_fits_recent_lessons_are_one_tap_away_and_diagrams_enlarge(server, tab):
    page = tab.page
    earlier = run_to_completion(server.url, "how vaccines work")
    url = "https://en.wikipedia.org/wiki/Photosynthesis_in_C4_plants_and_the_Calvin_cycle?x=1"
    generate(page, server.url, url)
    expect(page.locator("#run-status")).to_have_text("Completed", timeout=RUN)
    assert_images_loaded(page, 2)
    assert_fits(page)

    jump = page.get_by_role("link", name="Recent lessons")
    expect(jump).to_be_in_viewport()
    jump.click()
    expect(page.locator(f'.recent-item[data-session="{earlier}"]')).to_be_in_viewport()
    assert parse_qs(urlparse(page.url).query)["session"][0] != earlier  # the address still names the lesson

    diagram = page.locator("#lesson .figure-zoom").first
    diagram.scroll_into_view_if_needed()
    diagram.tap()
    dialog = page.locator("#figure-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator("h2")).to_have_text("Lesson map")
    shown = page.locator("#figure-image")
    assert shown.evaluate("i => i.decode().then(() => i.naturalWidth)") > 0
    width = "i => i.getBoundingClientRect().width"
    assert shown.evaluate(width) > page.locator("#lesson img").first.evaluate(width)
    dialog.get_by_role("button", name="Close").click()
    expect(dialog).to_be_hidden()
    assert_fits(page)


def test_a_blank_topic_says_so_and_starts_nothing(server, tab):
    page = tab.page
    page.goto(server.url + "/")
    page.fill("#topic", "   ")
    page.click("#generate")
    expect(page.locator("#form-error")).to_have_text(re.compile(r"^Type a topic first"))
    expect(page.locator("#topic")).to_be_focused()
    expect(page.locator("#run")).to_be_hidden()
    expect(page).to_have_url(server.url + "/")


def test_a_model_written_lesson_names_its_model_and_carries_no_offline_notice(model_server, tab):
    page = tab.page
    session_id = generate(page, model_server.url, "tides")
    expect(page.locator("#run-status")).to_have_text("Completed", timeout=RUN)
    expect(page.locator("#lesson h1")).to_have_text("Tides and the Moon")
    note = page.locator("#provider-note")
    expect(note).to_have_attribute("data-provider", "openai")
    expect(note).to_have_text(
        f"Written by the language model {MODEL}, through the service's openai provider. "
        "Models can be wrong: check what matters."
    )
    expect(note).not_to_contain_text("built-in")
    metadata = get_json(model_server.url, f"/api/sessions/{session_id}")["metadata"]
    assert (metadata["provider"], metadata["model"]) == ("openai", MODEL)


def test_the_downloaded_archive_opens_offline_with_working_diagrams(server, tab, tmp_path: Path):
    page = tab.page
    generate(page, server.url, "photosynthesis")
    expect(page.locator("#run-status")).to_have_text("Completed", timeout=RUN)
    with page.expect_download() as download:
        page.locator("#downloads a", has_text="Lesson (.zip)").click()
    assert download.value.suggested_filename == "photosynthesis.zip"
    with zipfile.ZipFile(download.value.path()) as archive:
        names = sorted(archive.namelist())
        archive.extractall(tmp_path)
    images = [name for name in names if name.startswith("images/")]
    assert names == sorted(["lesson.md", "lesson.html", *images]) and len(images) == 2, names
    markdown = (tmp_path / "lesson.md").read_text()
    assert "/api/sessions/" not in markdown  # nothing left that needs the service
    for name in images:
        assert f"]({name})" in markdown
    # The web page in the archive, opened from disk with the service out of reach, shows its diagrams.
    offline = tab.context.new_page()
    offline.goto((tmp_path / "lesson.html").as_uri())
    expect(offline).to_have_title("Photosynthesis")
    expect(offline.locator("h1")).to_have_text("Photosynthesis")
    shown = offline.locator("img")
    expect(shown).to_have_count(2)
    for image in shown.all():
        assert image.evaluate("i => i.decode().then(() => i.naturalWidth)") > 0


def test_a_long_lesson_has_contents_that_take_the_reader_to_each_section(server, tab):
    page = tab.page
    generate(page, server.url, "the water cycle")
    expect(page.locator("#run-status")).to_have_text("Completed", timeout=RUN)
    # "Completed" comes before the lesson is fetched and shown: wait for its last section.
    expect(page.locator("#lesson h2").last).to_have_text("Summary")
    sections = page.locator("#lesson h2").all_text_contents()
    assert len(sections) >= 5, sections
    toc = page.get_by_role("navigation", name="Contents")
    expect(toc).to_be_visible()
    expect(toc.locator("a")).to_have_text(sections)
    address = page.url
    toc.get_by_role("link", name="Summary").click()
    summary = page.locator("#lesson h2").last
    expect(summary).to_be_in_viewport()
    expect(summary).to_be_focused()
    expect(toc).not_to_be_in_viewport()  # the page really moved down to it
    assert page.url == address  # the address still names the session
    page.emulate_media(media="print")
    expect(toc).to_be_hidden()  # printed, the lesson alone


def test_the_recent_list_follows_a_lesson_written_elsewhere_without_a_refresh(server, tab):
    page = tab.page
    # Made by another client and not started yet: it waits, as "Starting", until someone starts it.
    session_id = requests.post(
        f"{server.url}/api/sessions", json={"topic": "plate tectonics"}, timeout=10
    ).json()["id"]
    page.goto(server.url + "/")
    pill = page.locator(f'.recent-item[data-session="{session_id}"] .pill')
    expect(pill).to_have_text("Starting")
    requests.post(f"{server.url}/api/sessions/{session_id}/start", timeout=10).raise_for_status()
    expect(pill).to_have_text("Completed", timeout=RUN)  # nobody pressed Refresh


ANNOUNCEMENTS = """() => {
    window.__announced = [];
    document.addEventListener('DOMContentLoaded', () => {
        const announcer = document.getElementById('announcer');
        new MutationObserver(() => {
            if (announcer.textContent) window.__announced.push(announcer.textContent);
        }).observe(announcer, { childList: true, characterData: true, subtree: true });
    });
}"""


def test_each_step_is_announced_to_screen_readers_as_it_completes(server, tab):
    page = tab.page
    page.add_init_script(f"({ANNOUNCEMENTS})()")
    generate(page, server.url, "photosynthesis")
    expect(page.locator("#run-status")).to_have_text("Completed", timeout=RUN)
    expect(page.locator("#announcer")).to_have_text("The lesson is ready.")
    titles = page.locator(".step-title").all_text_contents()
    announced = page.evaluate("window.__announced")
    assert len(announced) == 6, announced
    for number, (title, said) in enumerate(zip(titles, announced, strict=False), start=1):
        assert re.fullmatch(rf"Step {number} of 5, {re.escape(title)}: done in \d+(\.\d)? m?s\.", said), said
    assert announced[-1] == "The lesson is ready."


def test_cancel_cannot_be_pressed_while_the_service_is_out_of_reach(paced_server, tab):
    page = tab.page
    proxy = CuttingProxy(paced_server.port, cut_after=0, cuts=0)
    try:
        session_id = generate(page, proxy.url, "the French Revolution")
        expect(step(page, "analyze-topic")).to_have_attribute("data-status", "running", timeout=RUN)
        expect(page.locator("#cancel")).to_be_enabled()
    finally:
        proxy.close()  # the service is out of reach from the page from now on
    expect(page.locator("#connection")).to_have_text("Connection lost. Reconnecting…")
    expect(page.locator("#cancel")).to_be_disabled()
    expect(page.locator("#cancel")).to_have_attribute("title", "Not connected to the service just now")
    # The run goes on without the page, and nothing was cancelled.
    assert get_json(paced_server.url, f"/api/sessions/{session_id}")["status"] in ("running", "completed")
