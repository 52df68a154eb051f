"""The generated diagrams: stored per session, served as SVG, and never a way out of the session."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from tests.test_stream import run_to_end

SVG_NS = "{http://www.w3.org/2000/svg}"


@pytest.mark.gen_test
async def test_result_images_are_urls_that_serve_real_svg(api, http_port):
    session_id = await api.create("photosynthesis")
    events = await run_to_end(http_port, session_id)
    images = events[-1].json["data"]["result"]["images"]
    assert images == {
        "outline-map.svg": f"/api/sessions/{session_id}/images/outline-map.svg",
        "key-terms.svg": f"/api/sessions/{session_id}/images/key-terms.svg",
    }
    for url in images.values():
        status, body, headers = await api.request("GET", url)
        assert status == 200
        assert headers["Content-Type"] == "image/svg+xml"
        assert headers["X-Content-Type-Options"] == "nosniff"
        root = ET.fromstring(body)
        assert root.tag == f"{SVG_NS}svg"
        assert root.find(f"{SVG_NS}title") is not None
    lesson = events[-1].json["data"]["result"]["lesson"]
    assert f"(/api/sessions/{session_id}/images/outline-map.svg)" in lesson


@pytest.mark.gen_test
async def test_the_outline_map_shows_every_section_of_the_outline(api, http_port):
    session_id = await api.create("photosynthesis")
    await run_to_end(http_port, session_id)
    _, session, _ = await api.request("GET", f"/api/sessions/{session_id}")
    outline = session["steps"][1]["output"]
    _, svg, _ = await api.request("GET", f"/api/sessions/{session_id}/images/outline-map.svg")
    text = " ".join(ET.fromstring(svg).itertext())
    sections = [line.split(". ", 1)[1] for line in outline.splitlines() if line[:1].isdigit()]
    assert sections
    for title in sections:
        assert title.split()[0] in text


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "name",
    [
        "..%2F..%2Fetc%2Fpasswd",
        "..",
        ".hidden.svg",
        "%2Fetc%2Fpasswd",
        "outline-map.svg%00.png",
        "..%5C..%5Cwin.ini",
        "a" * 100 + ".svg",
    ],
)
async def test_image_names_that_could_escape_are_rejected(api, http_port, name):
    session_id = await api.create()
    await run_to_end(http_port, session_id)
    status, body, _ = await api.request("GET", f"/api/sessions/{session_id}/images/{name}")
    assert status in (400, 404)
    assert body["status"] == status


@pytest.mark.gen_test
async def test_an_image_the_session_does_not_have_is_404(api, http_port):
    session_id = await api.create()
    await run_to_end(http_port, session_id)
    status, body, _ = await api.request("GET", f"/api/sessions/{session_id}/images/missing.svg")
    assert status == 404 and "no image missing.svg" in body["error"]
