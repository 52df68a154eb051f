"""GET /api/sessions/{id}/lesson.html, lesson.md and lesson.zip through a real server, on both stores."""

from __future__ import annotations

import io
import re
import zipfile

import pytest

from tests.test_stream import run_to_end
from workflow.lesson.html import LESSON_STYLE, LESSON_STYLE_HASH


@pytest.mark.gen_test
async def test_the_lesson_html_is_a_standalone_page_rendered_from_the_results_markdown(api, http_port):
    session_id = await api.create("photosynthesis")
    await run_to_end(http_port, session_id)
    status, html, headers = await api.request("GET", f"/api/sessions/{session_id}/lesson.html")
    assert status == 200
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    policy = headers["Content-Security-Policy"]
    assert "script-src" not in policy  # default-src 'none' covers scripts
    assert policy.startswith("default-src 'none'")
    # Only the page's own stylesheet may apply: its hash, not 'unsafe-inline', for <style> elements.
    assert f"style-src '{LESSON_STYLE_HASH}';" in policy and "style-src 'unsafe-inline'" not in policy
    html = html.decode()
    assert html.startswith('<!doctype html>\n<html lang="en">')
    assert '<meta charset="utf-8">' in html and '<meta name="viewport"' in html
    assert "<title>Photosynthesis</title>" in html
    assert html.count("<style>") == 1 and f"<style>{LESSON_STYLE}</style>" in html
    assert "<h1>Photosynthesis</h1>" in html and "<script" not in html
    # Nothing is fetched but the lesson's own images: no stylesheet, font or script links.
    urls = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert urls and all(url.startswith(f"/api/sessions/{session_id}/images/") for url in urls)
    assert f'<img src="/api/sessions/{session_id}/images/outline-map.svg" alt="Lesson map" />' in html
    assert "<h2>Check your understanding</h2>" in html


@pytest.mark.gen_test
async def test_the_lesson_markdown_downloads_as_a_file_named_after_the_topic(api, http_port):
    session_id = await api.create("The French Revolution")
    await run_to_end(http_port, session_id)
    _, result, _ = await api.request("GET", f"/api/sessions/{session_id}/result")
    status, markdown, headers = await api.request("GET", f"/api/sessions/{session_id}/lesson.md")
    assert status == 200
    assert headers["Content-Type"] == "text/markdown; charset=utf-8"
    assert headers["Content-Disposition"] == 'attachment; filename="the-french-revolution.md"'
    assert markdown.decode() == result["lesson"]


@pytest.mark.gen_test
async def test_markup_in_the_topic_is_escaped_in_the_html_and_kept_out_of_the_file_name(api, http_port):
    topic = '<img src=x onerror="alert(1)"> and <script>alert(2)</script>'
    session_id = await api.create(topic)
    await run_to_end(http_port, session_id)
    _, html, _ = await api.request("GET", f"/api/sessions/{session_id}/lesson.html")
    html = html.decode()
    assert "<script" not in html and "<img src=x" not in html
    assert "&lt;script&gt;" in html
    title = re.search(r"<title>(.*)</title>", html)
    assert title and "<" not in title.group(1) and "&lt;script&gt;alert(2)&lt;/script&gt;" in title.group(1)
    _, _, headers = await api.request("GET", f"/api/sessions/{session_id}/lesson.md")
    assert (
        headers["Content-Disposition"]
        == 'attachment; filename="img-src-x-onerror-alert-1-and-script-alert-2-script.md"'
    )


@pytest.mark.gen_test
@pytest.mark.parametrize("name", ["lesson.html", "lesson.md", "lesson.zip"])
async def test_the_lesson_is_a_json_400_until_the_session_has_completed(api, name):
    session_id = await api.create("photosynthesis")
    status, body, headers = await api.request("GET", f"/api/sessions/{session_id}/{name}")
    assert status == 400
    assert headers["Content-Type"].startswith("application/json")
    assert body == {"error": f"session {session_id} is pending; it has no result yet", "status": 400}


@pytest.mark.gen_test
@pytest.mark.parametrize("name", ["lesson.html", "lesson.md", "lesson.zip"])
async def test_the_lesson_of_an_unknown_session_is_a_json_404(api, name):
    status, body, _ = await api.request("GET", f"/api/sessions/no-such-session/{name}")
    assert status == 404
    assert body["error"] == "session no-such-session not found"


@pytest.mark.gen_test
async def test_the_lesson_zip_holds_the_markdown_and_the_page_with_their_images_beside_them(api, http_port):
    session_id = await api.create("The French Revolution")
    await run_to_end(http_port, session_id)
    _, result, _ = await api.request("GET", f"/api/sessions/{session_id}/result")
    status, body, headers = await api.request("GET", f"/api/sessions/{session_id}/lesson.zip")
    assert status == 200
    assert headers["Content-Type"] == "application/zip"
    assert headers["Content-Disposition"] == 'attachment; filename="the-french-revolution.zip"'
    archive = zipfile.ZipFile(io.BytesIO(body))
    assert archive.testzip() is None
    names = set(archive.namelist())
    markdown = archive.read("lesson.md").decode()
    assert "/api/" not in markdown
    assert markdown == result["lesson"].replace(f"/api/sessions/{session_id}/images/", "images/")
    linked = re.findall(r"!\[[^\]]*\]\(([^)\s]+)", markdown)
    assert linked and all(link.startswith("images/") and link in names for link in linked)
    assert {f"images/{name}" for name in result["images"]} | {"lesson.md", "lesson.html"} == names
    for name in result["images"]:
        _, served, _ = await api.request("GET", f"/api/sessions/{session_id}/images/{name}")
        assert archive.read(f"images/{name}") == served
    page = archive.read("lesson.html").decode()
    assert page.startswith("<!doctype html>") and "<title>The French Revolution</title>" in page
    assert re.findall(r'src="([^"]*)"', page) == linked
