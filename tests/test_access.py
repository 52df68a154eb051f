"""Access as a stranger meets it: API keys, ownership, stream tokens, CSRF, Host, rate limits."""

from __future__ import annotations

import time

import pytest

from tests.sse_client import open_sse
from tests.test_stream import run_to_end

KEYS = "alice:alice-key,bob:bob-key,root:root-key:admin"
ALICE = {"Authorization": "Bearer alice-key"}
BOB = {"Authorization": "Bearer bob-key"}
ROOT = {"Authorization": "Bearer root-key"}
with_keys = pytest.mark.parametrize("config_overrides", [{"api_keys": KEYS}])


async def create_as(api, headers: dict[str, str], topic: str = "tides") -> dict:
    status, body, _ = await api.request("POST", "/api/sessions", {"topic": topic}, headers=headers)
    assert status == 201, body
    return body


# -- API keys and ownership ------------------------------------------------------------------------


@with_keys
@pytest.mark.gen_test
async def test_with_keys_a_request_without_one_or_with_a_wrong_one_is_a_401_that_says_so(api):
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic YWxpY2U6eA=="}):
        status, body, response_headers = await api.request("GET", "/api/sessions", headers=headers)
        assert (status, body["status"]) == (401, 401)
        assert response_headers["WWW-Authenticate"].startswith("Bearer")
        assert "key" in body["error"]
    status, body, _ = await api.request("POST", "/api/sessions", {"topic": "tides"})
    assert status == 401


@with_keys
@pytest.mark.gen_test
async def test_a_session_belongs_to_its_key_and_another_key_cannot_tell_it_exists(api, http_port):
    session_id = (await create_as(api, ALICE))["id"]
    for method, path in [
        ("GET", ""),
        ("GET", "/result"),
        ("GET", "/lesson.html"),
        ("GET", "/images/outline-map.svg"),
        ("POST", "/cancel"),
        ("DELETE", ""),
    ]:
        status, body, _ = await api.request(method, f"/api/sessions/{session_id}{path}", headers=BOB)
        assert status == 404, (method, path, body)
    stream = await open_sse(http_port, f"/api/sessions/{session_id}/run", "POST", headers=BOB)
    assert stream.status == 404
    _, listing, _ = await api.request("GET", "/api/sessions", headers=BOB)
    assert listing["sessions"] == []
    _, listing, _ = await api.request("GET", "/api/sessions", headers=ALICE)
    assert [s["id"] for s in listing["sessions"]] == [session_id]
    _, listing, _ = await api.request("GET", "/api/sessions", headers=ROOT)  # an admin sees all
    assert [s["id"] for s in listing["sessions"]] == [session_id]
    status, _, _ = await api.request("GET", f"/api/sessions/{session_id}", headers=ROOT)
    assert status == 200
    events = await run_to_end(http_port, session_id, headers=ALICE)
    assert events[-1].type == "final"


@with_keys
@pytest.mark.gen_test
async def test_health_shows_liveness_to_anyone_figures_to_a_key_and_the_database_path_to_an_admin(api, store):
    status, body, _ = await api.request("GET", "/health")
    assert status == 200 and set(body) == {"status", "timestamp"}
    _, body, _ = await api.request("GET", "/health", headers=ALICE)
    assert "sessions" in body and "path" not in body["store"]
    _, body, _ = await api.request("GET", "/health", headers=ROOT)
    if store.kind == "sqlite":
        assert body["store"]["path"] == str(store.inner.path if hasattr(store, "inner") else store.path)


# -- stream tokens ---------------------------------------------------------------------------------


@with_keys
@pytest.mark.gen_test
async def test_the_stream_url_carries_a_token_that_opens_that_sessions_stream_and_nothing_else(
    api, http_port
):
    created = await create_as(api, ALICE)
    mine, url = created["id"], created["stream_url"]
    assert url.startswith(f"/api/sessions/{mine}/run?token=")
    token = url.split("token=", 1)[1]
    stream = await open_sse(http_port, url, "GET")  # EventSource: no header, only the URL
    assert stream.status == 200
    assert (await stream.read_all())[-1].type == "final"

    other = (await create_as(api, ALICE, "volcanoes"))["id"]
    for path in (f"/api/sessions/{other}/run?token={token}", f"/api/sessions/{mine}/run?token=x{token}"):
        assert (await open_sse(http_port, path, "GET")).status == 401
    for path in (f"/api/sessions/{mine}?token={token}", f"/api/sessions/{mine}/result?token={token}"):
        assert (await api.request("GET", path))[0] == 401
    assert (await open_sse(http_port, f"/api/sessions/{mine}/run?token={token}", "POST")).status == 401


def test_a_stream_token_expires_and_cannot_be_moved_to_another_session():
    from core.tokens import StreamTokens

    tokens = StreamTokens("s3cret", ttl=60)
    token = tokens.sign("a", now=1000)
    assert tokens.valid("a", token, now=1059)
    assert not tokens.valid("a", token, now=1061)
    assert not tokens.valid("b", token, now=1000)
    assert not StreamTokens("other", ttl=60).valid("a", token, now=1000)
    assert not tokens.valid("a", "not base64 ☃", now=1000)
    assert tokens.valid("a", tokens.sign("a")) and time.time() > 0


# -- protected mode, Host and Origin ---------------------------------------------------------------


@pytest.mark.gen_test
async def test_without_keys_only_the_names_of_this_machine_are_answered(api):
    for host in ("127.0.0.1", "localhost:8080", "[::1]:9"):
        assert (await api.request("GET", "/health", headers={"Host": host}))[0] == 200
    for path in ("/health", "/api/sessions", "/"):
        status, body, _ = await api.request("GET", path, headers={"Host": "rebound.evil.example"})
        assert (status, body["status"]) == (403, 403)


@with_keys
@pytest.mark.gen_test
async def test_with_keys_any_host_name_is_answered(api):
    assert (await api.request("GET", "/health", headers={"Host": "orchestrator.internal"}))[0] == 200


@pytest.mark.gen_test
@pytest.mark.parametrize("config_overrides", [{"cors_origins": "https://app.example"}])
async def test_a_state_change_from_an_origin_cors_does_not_allow_is_refused(api, http_port):
    session_id = await api.create()
    evil = {"Origin": "https://evil.example"}
    for method, path in [
        ("POST", f"/api/sessions/{session_id}/cancel"),
        ("DELETE", f"/api/sessions/{session_id}"),
    ]:
        status, body, _ = await api.request(method, path, headers=evil)
        assert (status, body["status"]) == (403, 403)
    status, _, _ = await api.request("POST", "/api/sessions", {"topic": "x"}, headers=evil)
    assert status == 403
    assert (await open_sse(http_port, f"/api/sessions/{session_id}/run", "GET", headers=evil)).status == 403
    cross_site = {"Sec-Fetch-Site": "cross-site"}
    assert (await api.request("POST", f"/api/sessions/{session_id}/cancel", headers=cross_site))[0] == 403
    _, session, _ = await api.request("GET", f"/api/sessions/{session_id}")
    assert session["status"] == "pending"
    # The allowed origin and the service's own page may.
    own = {"Origin": f"http://localhost:{http_port}"}  # where the test client sends its requests
    assert (await api.request("POST", "/api/sessions", {"topic": "x"}, headers=own))[0] == 201
    allowed = {"Origin": "https://app.example"}
    assert (await api.request("POST", f"/api/sessions/{session_id}/cancel", headers=allowed))[0] == 200


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", ""]
)
async def test_a_body_that_is_not_json_is_a_415_so_no_form_or_text_post_can_create_anything(
    api, content_type
):
    headers = {"Content-Type": content_type} if content_type else {"Content-Type": ""}
    status, body, _ = await api.request("POST", "/api/sessions", raw=b'{"topic": "x"}', headers=headers)
    assert (status, body["status"]) == (415, 415)
    assert (await api.request("GET", "/api/sessions"))[1]["count"] == 0
    ok = {"Content-Type": "application/json; charset=utf-8"}
    assert (await api.request("POST", "/api/sessions", raw=b'{"topic": "x"}', headers=ok))[0] == 201


def test_loopback_means_this_machine_only():
    from server import is_loopback

    assert all(map(is_loopback, ["127.0.0.1", "127.3.4.5", "::1", "[::1]", "localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "", "::", "10.0.0.1", "example.org"]))


# -- rate limits -----------------------------------------------------------------------------------


@pytest.mark.gen_test
@pytest.mark.parametrize("config_overrides", [{"api_keys": KEYS, "create_rate_limit": "2/minute"}])
async def test_creating_over_the_rate_limit_is_a_429_with_retry_after_and_ratelimit_headers(api):
    for _ in range(2):
        status, _, headers = await api.request("POST", "/api/sessions", {"topic": "x"}, headers=ALICE)
        assert status == 201
    status, body, headers = await api.request("POST", "/api/sessions", {"topic": "x"}, headers=ALICE)
    assert (status, body["status"]) == (429, 429) and "2 per 1 minute" in body["error"]
    assert 0 < int(headers["Retry-After"]) <= 60
    # Each key has its own bucket.
    assert (await api.request("POST", "/api/sessions", {"topic": "x"}, headers=BOB))[0] == 201


@pytest.mark.gen_test
@pytest.mark.parametrize("config_overrides", [{"rate_limit": "3/minute"}])
async def test_every_request_counts_against_the_request_limit_and_says_how_much_is_left(api):
    remaining = []
    for _ in range(3):
        status, _, headers = await api.request("GET", "/api/sessions")
        assert status == 200
        assert headers["RateLimit-Policy"] == '"requests-0";q=3;w=60'
        remaining.append(headers["RateLimit"])
    assert [r.split(";")[1] for r in remaining] == ["r=2", "r=1", "r=0"]
    status, _, headers = await api.request("GET", "/api/sessions")
    assert status == 429 and "Retry-After" in headers and "RateLimit" in headers
    assert (await api.request("GET", "/health"))[0] == 200  # probes are not limited


def test_listening_beyond_loopback_without_keys_refuses_to_start_and_says_what_to_do():
    import os
    import subprocess
    import sys

    from tests.server_process import PROJECT

    done = subprocess.run(
        [sys.executable, "server.py", "--host=0.0.0.0", "--port=0", "--store=memory"],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=30,
        env={k: v for k, v in os.environ.items() if not k.startswith("ORCH_")},
    )
    assert done.returncode == 2
    assert "refusing to listen on 0.0.0.0 with no API keys" in done.stderr
    assert "allow_anonymous" in done.stderr and "Traceback" not in done.stderr


def test_a_keys_file_holds_only_hashes_and_a_made_key_matches_its_line(tmp_path, capsys):
    from conf.keys import KeyRing, main

    main(["carol", "--admin"])
    printed = capsys.readouterr().out.splitlines()
    key = printed[0].rsplit(" ", 1)[1]
    line = printed[1].split(": ", 1)[1]
    (tmp_path / "keys").write_text(f"# the team's keys\n{line}\n\n", encoding="utf-8")
    ring = KeyRing.load(tmp_path / "keys", "")
    identity = ring.identify(key)
    assert identity is not None and identity.name == "carol" and identity.admin
    assert ring.identify(key + "x") is None and key not in (tmp_path / "keys").read_text()


@pytest.mark.parametrize(
    ("text", "problem"),
    [("carol deadbeef\n", "line 1"), ("carol " + "a" * 64 + " root\n", "line 1"), ("\n\nx\n", "line 3")],
)
def test_a_malformed_keys_file_stops_the_start_naming_the_line(tmp_path, text, problem):
    from conf.keys import KeyRing
    from core.errors import SettingsError

    (tmp_path / "keys").write_text(text, encoding="utf-8")
    with pytest.raises(SettingsError, match=problem):
        KeyRing.load(tmp_path / "keys", "")


def test_a_malformed_key_in_the_environment_is_refused_without_echoing_it():
    from conf.keys import KeyRing
    from core.errors import SettingsError

    with pytest.raises(SettingsError) as caught:
        KeyRing.load(None, "alice:s3cret-value:root")
    assert "s3cret-value" not in str(caught.value)
