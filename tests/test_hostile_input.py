"""Inputs a hostile client sends, each once a 500 or an HTML page: every one gets a clean JSON 4xx."""

from __future__ import annotations

import asyncio

import pytest

from tests.sse_client import open_sse
from tests.test_stream import run_to_end


async def raw_request(port: int, head: str, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    """Send a request head as it is (no client library normalizes it) and read the whole answer."""
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(head.encode("utf-8", "surrogateescape") + b"Connection: close\r\n\r\n")
        await writer.drain()
        response = await reader.read()
        writer.close()
        await writer.wait_closed()
    head_bytes, _, body = response.partition(b"\r\n\r\n")
    lines = head_bytes.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


@pytest.mark.gen_test
@pytest.mark.parametrize("topic", ["ab\ud800cd", "\udfff", "nul\x00inside"])
async def test_a_topic_with_a_lone_surrogate_or_a_nul_is_a_400_and_the_list_keeps_working(api, topic):
    escaped = '{"topic": "' + "".join(f"\\u{ord(c):04x}" if ord(c) > 127 or ord(c) < 32 else c for c in topic)
    status, body, _ = await api.request("POST", "/api/sessions", raw=(escaped + '"}').encode())
    assert (status, body["status"]) == (400, 400) and "topic" in body["error"]
    status, listing, _ = await api.request("GET", "/api/sessions")
    assert status == 200 and listing["count"] == 0


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "value",
    [str(2**63), "9" * 4301, "²", "①", "\uff11", "\u0661\u0662", "-1", "1e3", " 12 34", "0x10"],
)
async def test_a_last_event_id_that_is_not_plain_ascii_digits_below_2_63_is_a_400(api, http_port, value):
    session_id = await api.create()
    await run_to_end(http_port, session_id)
    stream = await open_sse(
        http_port, f"/api/sessions/{session_id}/run", "GET", headers={"Last-Event-ID": value}
    )
    assert stream.status == 400
    assert b"Last-Event-ID" in await stream.body()
    from urllib.parse import quote

    status, body, _ = await api.request("GET", f"/api/sessions/{session_id}/run?last_event_id={quote(value)}")
    assert (status, body["status"]) == (400, 400)


@pytest.mark.gen_test
@pytest.mark.parametrize("value", ["²", "\u0661", "9" * 30])
async def test_a_page_size_in_other_digits_is_a_400(api, value):
    from urllib.parse import quote

    status, body, _ = await api.request("GET", f"/api/sessions?limit={quote(value)}")
    assert (status, body["status"]) == (400, 400)


@pytest.mark.gen_test
@pytest.mark.parametrize("path", ["/web/app.js%00.png", "/web/%00", "/web/../server.py", "/web/no-such.js"])
async def test_the_static_files_answer_bad_paths_with_json(api, http_port, path):
    status, headers, body = await raw_request(http_port, f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    assert 400 <= status < 500
    assert headers["content-type"].startswith("application/json")
    assert b'"status":%d' % status in body and b"Traceback" not in body


@pytest.mark.gen_test
async def test_head_on_the_lesson_endpoints_answers_like_get_without_a_body(api, http_port):
    session_id = await api.create()
    await run_to_end(http_port, session_id)
    for path in ("lesson.html", "lesson.md", "images/outline-map.svg"):
        status, headers, body = await raw_request(
            http_port, f"HEAD /api/sessions/{session_id}/{path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        )
        assert status == 200 and body == b"", path
        assert int(headers["content-length"]) > 0


@pytest.mark.gen_test
async def test_no_answer_names_the_server_software_and_the_page_cannot_be_framed(api, http_port):
    for path in ("/", "/health", "/api/sessions", "/nowhere"):
        _, headers, _ = await raw_request(http_port, f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        assert "server" not in headers, path
        assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff"
    _, headers, _ = await raw_request(http_port, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    assert "frame-ancestors 'none'" in headers["content-security-policy"]


@pytest.mark.gen_test
@pytest.mark.parametrize("cursor", ["%00", "%ED%A0%80", "x" * 300])
async def test_a_paging_cursor_of_control_characters_or_bad_utf8_is_ignored_or_a_404_never_a_500(api, cursor):
    await api.create()
    status, body, _ = await api.request("GET", f"/api/sessions?before={cursor}")
    # Tornado drops control characters from arguments (an empty cursor lists from the newest) and
    # refuses bad UTF-8 (400); a cursor naming no session is a 404. Before, a NUL here was a 500.
    assert (status, body.get("count")) == (200, 1) or (status in (400, 404) and body["status"] == status)
