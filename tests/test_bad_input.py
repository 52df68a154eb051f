"""Bad input gets a clear JSON error, and the service keeps working afterwards."""

from __future__ import annotations

import asyncio

import pytest


async def post_raw(port: int, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    """POST /api/sessions over a raw socket, so any framing (chunked, lying lengths) can be sent."""
    async with asyncio.timeout(15):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        head = "".join(f"{k}: {v}\r\n" for k, v in {"Content-Type": "application/json", **headers}.items())
        writer.write(f"POST /api/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}\r\n".encode() + body)
        await writer.drain()
        response = await reader.read()  # the server closes after a 413
        writer.close()
    status = int(response.split(b" ", 2)[1])
    return status, response.split(b"\r\n\r\n", 1)[1]


@pytest.mark.gen_test
@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"topic": "machine', "not valid JSON"),
        (b"not json at all", "not valid JSON"),
        (b'{"topic": "caf\xe9"}', "not valid UTF-8"),
        (b"", "empty"),
        (b"[]", "must be a JSON object"),
        (b'"machine learning"', "must be a JSON object"),
        (b"{}", "topic must be a non-blank string"),
        (b'{"topic": 42}', "topic must be a non-blank string"),
        (b'{"topic": null}', "topic must be a non-blank string"),
        (b'{"topic": ["a"]}', "topic must be a non-blank string"),
        (b'{"topic": "   \\n\\t "}', "topic must be a non-blank string"),
        (b'{"topic": "' + b"x" * 501 + b'"}', "at most 500 characters"),
    ],
)
async def test_create_session_with_a_bad_body_is_a_400_that_says_why(api, raw, message):
    status, body, headers = await api.request("POST", "/api/sessions", raw=raw)
    assert status == 400
    assert headers["Content-Type"].startswith("application/json")
    assert body["status"] == 400 and message in body["error"]
    assert "Traceback" not in body["error"]
    # The service is still there and still takes good requests.
    status, _, _ = await api.request("POST", "/api/sessions", {"topic": "still working"})
    assert status == 201


@pytest.mark.gen_test
@pytest.mark.parametrize("config_overrides", [{"max_topic_length": 10, "max_body_size": 1024}])
async def test_limits_come_from_the_settings(api):
    status, body, _ = await api.request("POST", "/api/sessions", {"topic": "x" * 11})
    assert status == 400 and "at most 10 characters" in body["error"]
    status, body, _ = await api.request("POST", "/api/sessions", {"topic": "x" * 2000})
    assert status == 413 and body == {"error": "request body is larger than 1024 bytes", "status": 413}


@pytest.mark.gen_test
async def test_a_body_over_the_limit_is_a_413_by_content_length_without_reading_it(api, http_port):
    declared = 50 * 1024 * 1024
    status, body = await post_raw(
        http_port, b'{"topic": "', {"Content-Type": "application/json", "Content-Length": str(declared)}
    )
    assert status == 413
    assert b'"status":413' in body
    assert (await api.request("GET", "/health"))[0] == 200


@pytest.mark.gen_test
async def test_a_chunked_body_over_the_limit_is_a_413(api, http_port):
    chunk = b"x" * 40000
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(2)) + b"0\r\n\r\n"
    status, body = await post_raw(http_port, chunked, {"Transfer-Encoding": "chunked"})
    assert status == 413
    assert b"larger than 65536 bytes" in body
    assert (await api.request("GET", "/health"))[0] == 200
