"""Signed webhooks from a real service process to a real receiver process: Standard Webhooks signatures,
retries while the receiver is down, delivery after a crash, 410, step events, and the SSRF guard."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from standardwebhooks.webhooks import Webhook

from tests.server_process import PROJECT, ServerProcess
from tests.test_metrics import Scrape

SECRET = "whsec_" + base64.b64encode(b"a test secret of thirty-two byte").decode()
FAST = ("--webhook_allow_private=true", "--webhook_retry_delay=0.2", f"--webhook_secret={SECRET}")


class Receiver:
    """tests/webhook_receiver.py as a child process; `record` holds one JSON line per request."""

    def __init__(self, record: Path, port: int = 0, answer: int = 200) -> None:
        self.record = record
        command = [sys.executable, "-m", "tests.webhook_receiver", f"--port={port}", f"--secret={SECRET}"]
        command += [f"--record={record}", f"--answer={answer}"]
        self.proc = subprocess.Popen(command, cwd=PROJECT, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # the child prints it once it listens, or exits
        match = re.search(r"listening on (http://127\.0\.0\.1:(\d+))", line)
        assert match, f"the receiver did not start: {line!r}"
        self.url, self.port = match.group(1) + "/hooks", int(match.group(2))

    def answer(self, status: int) -> None:
        self.record.with_suffix(".answer").write_text(str(status))

    def received(self) -> list[dict[str, Any]]:
        if not self.record.exists():
            return []
        return [json.loads(line) for line in self.record.read_text().splitlines()]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    started = Receiver(tmp_path / "received.jsonl")
    yield started
    started.stop()


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def create(url: str, **body: Any) -> requests.Response:
    return requests.post(f"{url}/api/sessions", json={"topic": "tides", "start": True, **body}, timeout=10)


def session(url: str, session_id: str) -> dict[str, Any]:
    return requests.get(f"{url}/api/sessions/{session_id}", timeout=10).json()


def delivered(url: str, session_id: str) -> list[dict[str, Any]]:
    hooks = session(url, session_id).get("webhooks", [])
    return hooks if hooks and all(h["status"] != "pending" for h in hooks) else []


def test_a_finished_session_sends_one_signed_message_that_the_standard_library_verifies(receiver):
    with_service = ServerProcess(*FAST)
    try:
        answer = create(with_service.url, webhook_url=receiver.url)
        assert answer.status_code == 202
        session_id = answer.json()["id"]
        hooks = wait_for(lambda: delivered(with_service.url, session_id), 30, "the delivery")
        shown = [(h["type"], h["status"], h["attempts"]) for h in hooks]
        assert shown == [("session.completed", "delivered", 1)]
        text = requests.get(f"{with_service.url}/metrics", timeout=10).text
        assert Scrape(text).value("orchestrator_webhook_attempts_total", outcome="delivered") == 1
    finally:
        with_service.kill()
    (got,) = receiver.received()
    assert got["verified"] and got["id"] == hooks[0]["id"]
    # Any Standard Webhooks SDK verifies it from the headers and the body as sent.
    headers = {
        "webhook-id": got["id"],
        "webhook-timestamp": got["timestamp"],
        "webhook-signature": got["signature"],
    }
    message = Webhook(SECRET).verify(got["body"], headers)
    assert message["type"] == "session.completed"
    data = message["data"]
    assert data["session_id"] == session_id and data["status"] == "completed" and data["topic"] == "tides"
    assert data["result_url"] == f"/api/sessions/{session_id}/result" and data["summary"]
    with pytest.raises(Exception, match="No matching signature"):
        Webhook("whsec_" + base64.b64encode(b"another secret of thirty-two by!").decode()).verify(
            got["body"], headers
        )


def test_a_receiver_that_is_down_gets_each_message_once_when_it_comes_back(tmp_path):
    receiver = Receiver(tmp_path / "received.jsonl")
    port = receiver.port
    receiver.stop()  # down: connections are refused until it comes back on the same port
    service = ServerProcess(*FAST)
    try:
        url = f"http://127.0.0.1:{port}/hooks"
        ids = [create(service.url, webhook_url=url).json()["id"] for _ in range(2)]

        def failed_attempts() -> bool:
            hooks = [h for i in ids for h in session(service.url, i).get("webhooks", [])]
            return len(hooks) == 2 and all(h["attempts"] >= 2 and h["last_error"] for h in hooks)

        wait_for(failed_attempts, 30, "retries while the receiver is down")
        receiver = Receiver(tmp_path / "received.jsonl", port=port)
        for session_id in ids:
            wait_for(lambda i=session_id: delivered(service.url, i), 30, "delivery once it is back")
    finally:
        service.kill()
        receiver.stop()
    got = receiver.received()
    assert sorted(g["id"] for g in got) == sorted({g["id"] for g in got})  # each message once
    assert len(got) == 2 and all(g["verified"] for g in got)


def test_messages_pending_when_the_service_is_killed_are_delivered_after_the_restart(tmp_path, receiver):
    db = tmp_path / "orchestrator.db"
    receiver.answer(503)
    service = ServerProcess(*FAST, db=db)
    try:
        session_id = create(service.url, webhook_url=receiver.url).json()["id"]
        wait_for(lambda: receiver.received(), 30, "a first, refused attempt")
        hook = session(service.url, session_id)["webhooks"][0]
        assert hook["status"] == "pending" and hook["last_error"] == "the receiver answered 503"
    finally:
        service.kill()  # SIGKILL: nothing is flushed on the way out
    refused = len(receiver.received())
    receiver.answer(200)
    service = ServerProcess(*FAST, db=db)
    try:
        hooks = wait_for(lambda: delivered(service.url, session_id), 30, "delivery after the restart")
        assert hooks[0]["status"] == "delivered" and hooks[0]["attempts"] >= 2
    finally:
        service.kill()
    got = receiver.received()
    assert [g["status"] for g in got[refused:]] == [200]  # delivered once, after the restart
    assert len({g["id"] for g in got}) == 1  # the same message each time


def test_410_stops_deliveries_and_step_events_are_sent_only_when_asked_for(receiver):
    service = ServerProcess(*FAST, f"--webhook_url={receiver.url}", "--webhook_events=session.completed")
    try:
        steps = create(service.url, webhook_url=receiver.url, webhook_events=["step.completed"]).json()["id"]
        hooks = wait_for(lambda: [h for h in [delivered(service.url, steps)] if len(h) == 6], 30, "six")[0]
        types = sorted(h["type"] for h in hooks)
        assert types == ["session.completed"] + ["step.completed"] * 5  # its own, and the service's
        receiver.answer(410)
        gone = create(service.url).json()["id"]  # only the service-wide target
        hooks = wait_for(lambda: delivered(service.url, gone), 30, "the 410")
        assert [(h["status"], h["attempts"]) for h in hooks] == [("gone", 1)]
    finally:
        service.kill()


def test_private_destinations_are_refused_unless_allowed(receiver):
    service = ServerProcess(f"--webhook_secret={SECRET}", "--webhook_retry_delay=0.2")
    try:
        literal = create(service.url, webhook_url=receiver.url)
        assert literal.status_code == 400 and "private, loopback or link-local" in literal.json()["error"]
        # A name is resolved at delivery, and only public addresses are connected to.
        named = create(service.url, webhook_url=f"http://localhost:{receiver.port}/hooks")
        assert named.status_code == 202
        hooks = wait_for(lambda: delivered(service.url, named.json()["id"]), 30, "the refusal")
        assert hooks[0]["status"] == "failed" and "refused" in hooks[0]["last_error"]
    finally:
        service.kill()
    assert receiver.received() == []


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"webhook_url": 7}, "http(s) URL"),
        ({"webhook_url": "ftp://example.org/"}, "must be http:// or https://"),
        ({"webhook_url": "https://user:pw@example.org/"}, "credentials"),
        ({"webhook_url": "https://example.org/", "webhook_events": ["session.exploded"]}, "webhook_events"),
        ({"webhook_url": "https://example.org/", "webhook_events": "session.completed"}, "webhook_events"),
        ({"webhook_events": ["session.completed"]}, "needs a webhook_url"),
    ],
)
def test_bad_webhook_fields_are_400_with_what_is_wrong(body, error, webhook_service):
    answer = create(webhook_service.url, **body)
    assert answer.status_code == 400 and error in answer.json()["error"]


@pytest.fixture(scope="module")
def webhook_service() -> Iterator[ServerProcess]:
    service = ServerProcess(f"--webhook_secret={SECRET}")
    yield service
    service.kill()


def test_without_a_webhook_secret_a_webhook_url_is_refused():
    service = ServerProcess()
    try:
        answer = create(service.url, webhook_url="https://example.org/hooks")
        assert answer.status_code == 400 and "no webhook_secret" in answer.json()["error"]
    finally:
        service.kill()
