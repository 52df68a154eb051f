"""The webhook outbox in both stores: written in the commit of its event, due in order, kept after
each attempt, gone with its session; and the messages the policy makes from a session's events."""

from __future__ import annotations

import dataclasses
import sqlite3

import pytest
import ujson

from core import events as ev
from core.errors import SessionNotFound
from core.events import make_event
from core.models import Session, SessionStatus
from core.store import Delivery
from store.schema import SCHEMA_VERSION
from store.sqlite import SQLiteStore
from workflow.webhooks import WebhookPolicy, WebhookTarget


def delivery(session_id: str, name: str, due: float) -> Delivery:
    return Delivery(
        id=f"msg_{name}",
        session_id=session_id,
        event_type="session.completed",
        url="https://example.org/hooks",
        payload=b'{"type":"session.completed"}',
        created_at=due,
        next_attempt_at=due,
    )


@pytest.mark.gen_test
async def test_deliveries_are_committed_with_their_event_and_come_due_oldest_first(store):
    session = Session.new("tides")
    await store.create(session)
    event = make_event(1, ev.FINAL, session.id, {"result": {}})
    await store.append_events(
        session.id, [event], session, [delivery(session.id, "b", 20), delivery(session.id, "a", 10)]
    )
    assert [d.id for d in await store.due_deliveries(15, 10)] == ["msg_a"]
    assert [d.id for d in await store.due_deliveries(25, 10)] == ["msg_a", "msg_b"]
    assert await store.next_delivery_at() == 10

    first = (await store.due_deliveries(25, 1))[0]
    done = dataclasses.replace(first, attempts=1, status="delivered", delivered_at=30.0)
    await store.record_attempt(done)
    assert [d.id for d in await store.due_deliveries(25, 10)] == ["msg_b"]
    kept = {d.id: d for d in await store.deliveries(session.id)}
    assert kept["msg_a"] == done and kept["msg_b"].payload == b'{"type":"session.completed"}'


@pytest.mark.gen_test
async def test_no_delivery_outlives_its_session_or_is_written_for_one_that_is_gone(store):
    session = Session.new("tides")
    await store.create(session)
    await store.append_events(
        session.id, [make_event(1, ev.FINAL, session.id, {})], session, [delivery(session.id, "a", 1)]
    )
    await store.delete(session.id)
    assert await store.due_deliveries(100, 10) == [] and await store.next_delivery_at() is None
    with pytest.raises(SessionNotFound):
        await store.append_events(
            session.id, [make_event(2, ev.FINAL, session.id, {})], None, [delivery(session.id, "b", 1)]
        )
    assert await store.deliveries(session.id) == []
    await store.record_attempt(dataclasses.replace(delivery(session.id, "a", 1), attempts=1))  # no error


@pytest.mark.gen_test
async def test_a_version_2_database_gets_the_outbox_at_start(tmp_path):
    path = tmp_path / "old.db"
    store = await SQLiteStore.open(path)
    await store.close()
    with sqlite3.connect(path) as connection:
        connection.execute("DROP TABLE deliveries")
        connection.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    store = await SQLiteStore.open(path)
    try:
        assert await store.next_delivery_at() is None
    finally:
        await store.close()
    with sqlite3.connect(path) as connection:
        version = connection.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    assert version == (str(SCHEMA_VERSION),)


def test_the_policy_makes_one_message_per_target_that_wants_the_event():
    session = Session.new(
        "tides", {"webhooks": [WebhookTarget("https://a.example/", ("step.failed",)).to_json()]}
    )
    session.status = SessionStatus.FAILED
    policy = WebhookPolicy(
        WebhookTarget("https://all.example/", ("session.failed",)), "https://lessons.example/"
    )
    failed = make_event(
        9, ev.ERROR, session.id, {"status": "failed", "error": "create-content: boom", "step": "x"}
    )
    (message,) = policy.outbox(failed, session)
    assert message.url == "https://all.example/" and message.event_type == "session.failed"
    body = ujson.loads(message.payload)
    assert body["type"] == "session.failed" and body["timestamp"].endswith("Z")
    assert body["data"] == {
        "session_id": session.id,
        "topic": "tides",
        "status": "failed",
        "event_id": 9,
        "result_url": f"https://lessons.example/api/sessions/{session.id}/result",
        "error": "create-content: boom",
    }
    step_failed = make_event(
        5, ev.STEP_ERROR, session.id, {"step_name": "create-content", "error": "boom"}, "step-3"
    )
    (step_message,) = policy.outbox(step_failed, session)
    assert step_message.url == "https://a.example/"
    assert ujson.loads(step_message.payload)["data"]["error"] == "boom"
    assert policy.outbox(make_event(6, ev.STEP_DELTA, session.id, {"delta": "x"}, "step-3"), session) == ()
