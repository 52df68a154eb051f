"""The session endpoints through a real server: create, show, list, result, cancel, delete, health."""

from __future__ import annotations

import re

import pytest

from tests.sse_client import open_sse
from tests.test_stream import RFC3339, UUID, run_to_end


@pytest.mark.gen_test
async def test_create_session_returns_201_an_id_and_a_location(api):
    status, body, headers = await api.request("POST", "/api/sessions", {"topic": "machine learning"})
    assert status == 201
    assert list(body) == ["id", "stream_url"] and UUID.match(body["id"])
    assert body["stream_url"] == f"/api/sessions/{body['id']}/run"  # no keys configured: no token
    assert headers["Location"] == f"/api/sessions/{body['id']}"
    assert headers["Content-Type"].startswith("application/json")


@pytest.mark.gen_test
async def test_create_session_stores_a_pending_session_with_five_pending_steps(api):
    session_id = await api.create("  machine learning  ")
    status, session, _ = await api.request("GET", f"/api/sessions/{session_id}")
    assert status == 200
    assert session["id"] == session_id
    assert session["topic"] == "machine learning"  # surrounding blanks trimmed
    assert session["status"] == "pending"
    assert RFC3339.match(session["created_at"]) and RFC3339.match(session["updated_at"])
    assert [(s["id"], s["name"], s["status"]) for s in session["steps"]] == [
        ("step-1", "analyze-topic", "pending"),
        ("step-2", "generate-outline", "pending"),
        ("step-3", "create-content", "pending"),
        ("step-4", "generate-images", "pending"),
        ("step-5", "finalize-lesson", "pending"),
    ]
    assert "result" not in session
    assert session["metadata"]["provider"] == "builtin" and session["metadata"]["model"] is None


@pytest.mark.gen_test
async def test_list_sessions_is_newest_first_with_limit_and_status(api, http_port):
    ids = [await api.create(f"topic {i}") for i in range(4)]
    await run_to_end(http_port, ids[1])
    status, body, _ = await api.request("GET", "/api/sessions")
    assert status == 200
    assert [s["id"] for s in body["sessions"]] == ids[::-1]
    assert body["count"] == 4
    _, body, _ = await api.request("GET", "/api/sessions?limit=2")
    assert [s["id"] for s in body["sessions"]] == ids[:1:-1]
    _, body, _ = await api.request("GET", "/api/sessions?status=completed")
    assert [s["id"] for s in body["sessions"]] == [ids[1]]
    _, body, _ = await api.request("GET", "/api/sessions?status=pending&limit=1")
    assert [s["id"] for s in body["sessions"]] == [ids[3]]


@pytest.mark.gen_test
@pytest.mark.parametrize("query", ["limit=0", "limit=101", "limit=ten", "status=done"])
async def test_list_sessions_rejects_a_bad_query_with_400(api, query):
    status, body, _ = await api.request("GET", f"/api/sessions?{query}")
    assert status == 400
    assert body["status"] == 400 and body["error"]


@pytest.mark.gen_test
async def test_result_before_completion_is_400_and_after_is_200(api, http_port):
    session_id = await api.create()
    status, body, _ = await api.request("GET", f"/api/sessions/{session_id}/result")
    assert status == 400
    assert body == {"error": f"session {session_id} is pending; it has no result yet", "status": 400}
    await run_to_end(http_port, session_id)
    status, result, _ = await api.request("GET", f"/api/sessions/{session_id}/result")
    assert status == 200
    assert "## Key terms" in result["lesson"] and "## Check your understanding" in result["lesson"]


@pytest.mark.gen_test
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/sessions/{id}"),
        ("GET", "/api/sessions/{id}/result"),
        ("POST", "/api/sessions/{id}/cancel"),
        ("DELETE", "/api/sessions/{id}"),
        ("GET", "/api/sessions/{id}/images/outline-map.svg"),
    ],
)
async def test_unknown_session_is_404_everywhere(api, method, path):
    unknown = "123e4567-e89b-12d3-a456-426614174000"
    status, body, _ = await api.request(method, path.format(id=unknown))
    assert status == 404
    assert body == {"error": f"session {unknown} not found", "status": 404}


@pytest.mark.gen_test
async def test_unknown_endpoint_and_wrong_method_answer_json(api):
    status, body, _ = await api.request("GET", "/api/nothing-here")
    assert (status, body["status"]) == (404, 404)
    status, body, _ = await api.request("PUT", "/api/sessions", {"topic": "x"})
    assert (status, body["status"]) == (405, 405)


@pytest.mark.gen_test
async def test_cancel_a_pending_session_makes_it_cancelled_and_its_stream_ends(api, http_port):
    session_id = await api.create()
    status, session, _ = await api.request("POST", f"/api/sessions/{session_id}/cancel")
    assert status == 200 and session["status"] == "cancelled"
    assert {s["status"] for s in session["steps"]} == {"skipped"}
    events = await run_to_end(http_port, session_id, method="GET")
    assert [e.type for e in events] == ["connected", "error"]
    assert events[-1].json["data"]["status"] == "cancelled"
    stream = await open_sse(http_port, f"/api/sessions/{session_id}/run", "POST")
    assert stream.status == 409


@pytest.mark.gen_test
async def test_delete_session_forgets_it(api, http_port):
    session_id = await api.create()
    await run_to_end(http_port, session_id)
    status, body, _ = await api.request("DELETE", f"/api/sessions/{session_id}")
    assert status == 204 and body == b""
    status, _, _ = await api.request("GET", f"/api/sessions/{session_id}")
    assert status == 404
    status, _, _ = await api.request("GET", f"/api/sessions/{session_id}/images/outline-map.svg")
    assert status == 404


@pytest.mark.gen_test
async def test_health_reports_status_timestamp_and_session_count(api, http_port, store):
    status, body, _ = await api.request("GET", "/health")
    assert status == 200
    assert body["status"] == "healthy" and RFC3339.match(body["timestamp"]) and body["sessions"] == 0
    session_id = await api.create()
    await run_to_end(http_port, session_id)
    await api.create()
    _, body, _ = await api.request("GET", "/health")
    assert body["sessions"] == 2
    assert body["sessions_by_status"] == {"completed": 1, "pending": 1}
    assert body["running"] == 0
    assert body["store"]["kind"] == store.kind and body["store"]["writable"] is True
    if store.kind == "sqlite":
        # Where the database lives is for an admin key's eyes (there are no keys here) and the log.
        assert "path" not in body["store"] and body["store"]["size_bytes"] > 0


@pytest.mark.gen_test
async def test_every_answer_carries_a_request_id_and_keeps_a_sane_incoming_one(api):
    _, _, headers = await api.request("GET", "/health")
    assert re.match(r"^[0-9a-f]{32}$", headers["X-Request-ID"])
    _, _, headers = await api.request("GET", "/health", headers={"X-Request-ID": "trace-42"})
    assert headers["X-Request-ID"] == "trace-42"
    _, _, headers = await api.request("GET", "/nope", headers={"X-Request-ID": "<script> id"})
    assert headers["X-Request-ID"] != "<script> id" and len(headers["X-Request-ID"]) == 32


@pytest.mark.expect_errors("Uncaught exception GET", "500 GET")
@pytest.mark.gen_test
async def test_an_unexpected_failure_is_a_json_500_with_the_request_id_and_no_traceback(api, engine):
    async def broken(session_id):
        raise RuntimeError("disk on fire")

    engine.store.get = broken
    status, body, headers = await api.request("GET", "/api/sessions/abc", headers={"X-Request-ID": "r-500"})
    assert status == 500
    assert body == {"error": "internal server error (request id r-500)", "status": 500}
    assert headers["X-Request-ID"] == "r-500"
    status, _, _ = await api.request("GET", "/health")
    assert status == 200
