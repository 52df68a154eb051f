"""workflow/html.py: a lesson's Markdown becomes HTML in which nothing can run, and a topic a file name."""

from __future__ import annotations

import pytest

from workflow.lesson.html import lesson_document, lesson_title, topic_slug
from workflow.lesson.html import lesson_html as render

SESSION = "6f1c2d3e-0000-4000-8000-000000000000"
OTHER = "0a0b0c0d-0000-4000-8000-000000000000"
IMAGE = f"/api/sessions/{SESSION}/images/outline-map.svg"


def lesson_html(markdown: str) -> str:
    return render(markdown, SESSION)


def test_a_script_tag_in_the_lesson_is_shown_as_text():
    html = lesson_html("# Title <script>alert(1)</script>\n\n<script>alert(2)</script>\n")
    assert "<script" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in html


@pytest.mark.parametrize(
    "markdown",
    [
        "<img src=x onerror=alert(1)>",
        "Inline <img src=x onerror=alert(1)> in a paragraph",
        '<a href="#" onclick="alert(1)">click</a>',
        "<div onmouseover='alert(1)'>block</div>",
        "- a list item <svg onload=alert(1)>",
    ],
)
def test_raw_html_with_event_handlers_is_escaped_not_rendered(markdown):
    html = lesson_html(markdown)
    assert "<img src=x" not in html and '<a href="#" onclick' not in html
    assert "<div" not in html and "<svg" not in html
    assert "&lt;" in html


@pytest.mark.parametrize(
    "markdown",
    [
        "# Title <script>alert(1)</script>\n\n<script>alert(2)</script>",
        "# <img src=x onerror=alert(1)>\n\n<svg onload=alert(1)>",
        "# </title><script>alert(1)</script>\n\n<style>body{display:none}</style>",
    ],
)
def test_the_standalone_page_escapes_markup_in_its_title_and_body(markdown):
    page = lesson_document(markdown, SESSION, lesson_title(markdown, "topic"))
    assert page.startswith("<!doctype html>") and page.count("<title>") == 1
    assert page.count("<style>") == 1 and page.count("</title>") == 1
    assert "<script" not in page and "<img src=x" not in page and "<svg" not in page
    assert "&lt;" in page.split("<title>", 1)[1].split("</title>", 1)[0]


def test_the_title_is_the_first_heading_or_else_the_topic():
    assert lesson_title("intro\n# Photosynthesis #\n\n# Later\n", "topic") == "Photosynthesis"
    assert lesson_title("## Only a section\n", " The topic ") == "The topic"
    assert lesson_title("", "") == "Lesson"


def test_the_downloaded_page_links_its_images_relatively():
    page = lesson_document(f"![Lesson map]({IMAGE})\n", SESSION, "t", image_base="images/")
    assert '<img src="images/outline-map.svg" alt="Lesson map" />' in page and "/api/" not in page


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "JaVaScRiPt:alert(1)",
        "&#106;avascript:alert(1)",
        "vbscript:msgbox(1)",
        "data:text/html,x",
    ],
)
def test_links_with_harmful_schemes_lose_their_target(url):
    html = lesson_html(f"[click me]({url})")
    assert "click me" in html
    assert "javascript" not in html.lower() and "vbscript" not in html and "data:" not in html


def test_ordinary_links_are_kept_and_outside_ones_cannot_reach_the_page():
    html = lesson_html("[docs](https://example.org/a?b=1&c=2) and [section](#quiz) and [mail](mailto:a@b.c)")
    assert '<a href="https://example.org/a?b=1&amp;c=2" rel="noopener noreferrer nofollow">docs</a>' in html
    assert '<a href="#quiz">section</a>' in html
    assert '<a href="mailto:a@b.c">mail</a>' in html


def test_only_the_sessions_own_images_are_kept():
    html = lesson_html(f"![Lesson map]({IMAGE})\n\n![Local](outline-map.svg)\n")
    assert f'<img src="{IMAGE}" alt="Lesson map" />' in html
    assert '<span class="image-removed">Local</span>' in html


@pytest.mark.parametrize(
    "url",
    [
        f"api/sessions/{OTHER}/run",
        f"../{OTHER}/run",
        f"/api/sessions/{OTHER}/run",
        f"/api/sessions/{OTHER}/cancel",
        "//evil.example/x",
        "relative/page",
    ],
)
def test_links_into_the_service_are_shown_as_text_so_reading_a_lesson_starts_nothing(url):
    html = lesson_html(f"[start it]({url}) and ![pic](/api/sessions/{OTHER}/images/outline-map.svg)")
    assert "<a" not in html and "<img" not in html
    assert "start it" in html and "href" not in html and OTHER not in html


@pytest.mark.parametrize(
    "url",
    [
        "https://tracker.example/pixel.png",
        "//tracker.example/pixel.png",
        "/\\tracker.example/pixel.png",
        "javascript:alert(1)",
        "data:image/png;base64,AAAA",
        "/api/sessions/x/../../health",
        "/etc/passwd",
    ],
)
def test_images_from_anywhere_else_are_replaced_by_their_alt_text(url):
    html = lesson_html(f"![a diagram]({url})")
    assert "<img" not in html
    assert '<span class="image-removed">a diagram</span>' in html


def test_an_image_title_cannot_break_out_of_its_attribute():
    html = lesson_html(f'![map]({IMAGE} "a\\" onerror=\\"alert(1)")')
    assert 'onerror="' not in html
    assert "&quot; onerror=" in html


def test_headings_lists_emphasis_and_tables_render():
    html = lesson_html(
        "# Photosynthesis\n\n## Key terms\n\n- **Light**: energy\n- *Water*\n\n"
        "1. First\n2. Second\n\n| term | meaning |\n|---|---|\n| ATP | energy carrier |\n"
    )
    assert "<h1>Photosynthesis</h1>" in html and "<h2>Key terms</h2>" in html
    assert "<ul>\n<li><strong>Light</strong>: energy</li>\n<li><em>Water</em></li>\n</ul>" in html
    assert "<ol>\n<li>First</li>\n<li>Second</li>\n</ol>" in html
    assert "<table>" in html and "<th>term</th>" in html and "<td>ATP</td>" in html


def test_single_line_breaks_inside_a_list_item_are_kept():
    # The lessons' quiz puts each choice on its own line under the question.
    html = lesson_html("1. Which one?\n   A. this\n   B. that\n")
    assert "Which one?<br />\nA. this<br />\nB. that" in html


@pytest.mark.parametrize(
    ("topic", "slug"),
    [
        ("photosynthesis", "photosynthesis"),
        ("The French Revolution", "the-french-revolution"),
        ("  C++ & Rust: a comparison!  ", "c-rust-a-comparison"),
        ("Ünïcödé café", "unicode-cafe"),
        ('"><script>alert(1)</script>', "script-alert-1-script"),
        ("../../etc/passwd", "etc-passwd"),
        ("光合作用", "lesson"),
        ("", "lesson"),
    ],
)
def test_a_topic_becomes_a_plain_file_name_stem(topic, slug):
    assert topic_slug(topic) == slug


def test_a_long_topic_gives_a_short_slug_without_a_trailing_dash():
    slug = topic_slug("word " * 40)
    assert len(slug) <= 60 and not slug.endswith("-")
