"""GET /api/sessions/{id}/lesson.html and lesson.md through a real server, on both stores."""

from __future__ import annotations

import pytest

from tests.test_stream import run_to_end


@pytest.mark.gen_test
async def test_the_lesson_html_is_a_fragment_rendered_from_the_results_markdown(api, http_port):
    session_id = await api.create("photosynthesis")
    await run_to_end(http_port, session_id)
    status, html, headers = await api.request("GET", f"/api/sessions/{session_id}/lesson.html")
    assert status == 200
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert "script-src" not in headers["Content-Security-Policy"]  # default-src 'none' covers scripts
    assert headers["Content-Security-Policy"].startswith("default-src 'none'")
    html = html.decode()
    assert html.startswith("<h1>Photosynthesis</h1>") and "<html" not in html
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
    _, _, headers = await api.request("GET", f"/api/sessions/{session_id}/lesson.md")
    assert (
        headers["Content-Disposition"]
        == 'attachment; filename="img-src-x-onerror-alert-1-and-script-alert-2-script.md"'
    )


@pytest.mark.gen_test
@pytest.mark.parametrize("name", ["lesson.html", "lesson.md"])
async def test_the_lesson_is_a_json_400_until_the_session_has_completed(api, name):
    session_id = await api.create("photosynthesis")
    status, body, headers = await api.request("GET", f"/api/sessions/{session_id}/{name}")
    assert status == 400
    assert headers["Content-Type"].startswith("application/json")
    assert body == {"error": f"session {session_id} is pending; it has no result yet", "status": 400}


@pytest.mark.gen_test
@pytest.mark.parametrize("name", ["lesson.html", "lesson.md"])
async def test_the_lesson_of_an_unknown_session_is_a_json_404(api, name):
    status, body, _ = await api.request("GET", f"/api/sessions/no-such-session/{name}")
    assert status == 404
    assert body["error"] == "session no-such-session not found"
