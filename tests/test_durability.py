"""Real server processes on a real database file: restarts, kill -9 and SIGTERM mid-run, bad files."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import ujson

from client.sse import parse
from tests.server_process import PROJECT, ServerProcess

TIMEOUT = 30


def sse(response: requests.Response) -> Iterator[tuple[int | None, dict]]:
    """(id, event) pairs from a streamed response; the id is None on an event that carried none."""
    for event in parse(response.iter_content(chunk_size=None)):
        yield (None if event.id is None else int(event.id)), ujson.loads(event.data)


def create(server: ServerProcess, topic: str = "photosynthesis") -> str:
    response = requests.post(f"{server.url}/api/sessions", json={"topic": topic}, timeout=TIMEOUT)
    assert response.status_code == 201
    return response.json()["id"]


def get(server: ServerProcess, path: str) -> requests.Response:
    return requests.get(f"{server.url}{path}", timeout=TIMEOUT)


def run_to_end(server: ServerProcess, session_id: str) -> list[tuple[int | None, dict]]:
    response = requests.post(f"{server.url}/api/sessions/{session_id}/run", stream=True, timeout=TIMEOUT)
    return list(sse(response))


def wait_until_completed(server: ServerProcess, session_id: str, timeout: float = TIMEOUT) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        session = get(server, f"/api/sessions/{session_id}").json()
        if session["status"] not in ("pending", "running", "interrupted"):
            return session
        assert time.monotonic() < deadline, f"session still {session['status']} after {timeout} s"
        time.sleep(0.05)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "data" / "orchestrator.db"


@pytest.fixture
def servers() -> Iterator[list[ServerProcess]]:
    started: list[ServerProcess] = []
    yield started
    for server in started:
        server.kill()


def start(servers: list[ServerProcess], db: Path, *args: str) -> ServerProcess:
    server = ServerProcess(*args, db=db)
    servers.append(server)
    return server


def test_everything_is_still_there_after_a_restart(servers, db):
    first = start(servers, db)
    done = create(first, "the water cycle")
    log = run_to_end(first, done)
    pending = create(first, "tides")
    before = {
        path: get(first, path)
        for path in (
            f"/api/sessions/{done}",
            f"/api/sessions/{done}/result",
            f"/api/sessions/{done}/images/outline-map.svg",
            f"/api/sessions/{done}/images/key-terms.svg",
            f"/api/sessions/{pending}",
        )
    }
    assert first.terminate() == 0

    second = start(servers, db)
    for path, response in before.items():
        again = get(second, path)
        assert again.status_code == 200, path
        assert again.content == response.content, path
        assert again.headers["Content-Type"] == response.headers["Content-Type"]
    replay = list(sse(requests.get(f"{second.url}/api/sessions/{done}/run", stream=True, timeout=TIMEOUT)))
    assert replay[1:] == log[1:]  # every event, same ids, same bytes
    listed = get(second, "/api/sessions").json()["sessions"]
    assert [s["id"] for s in listed] == [pending, done]
    assert get(second, "/health").json()["store"]["kind"] == "sqlite"


def watch_until_mid_content(server: ServerProcess, session_id: str) -> list[tuple[int | None, dict]]:
    """Run the session and read its stream until create-content has streamed a few deltas."""
    response = requests.post(f"{server.url}/api/sessions/{session_id}/run", stream=True, timeout=TIMEOUT)
    seen = []
    for event_id, event in sse(response):
        seen.append((event_id, event))
        deltas = [e for _, e in seen if e["type"] == "step-delta" and e.get("step_id") == "step-3"]
        if len(deltas) >= 3:
            response.close()
            return seen
    raise AssertionError("the stream ended before create-content got going")


def assert_resumed_without_gap(server: ServerProcess, session_id: str, seen: list) -> None:
    last_id = seen[-1][0]
    response = requests.get(
        f"{server.url}/api/sessions/{session_id}/run",
        headers={"Last-Event-ID": str(last_id)},
        stream=True,
        timeout=TIMEOUT,
    )
    rest = [(i, e) for i, e in sse(response) if i is not None]
    ids = [i for i, _ in rest]
    assert ids == list(range(last_id + 1, last_id + 1 + len(ids)))  # no gap, no duplicate
    types = [e["type"] for _, e in rest]
    retry = types.index("step-retry")
    assert rest[retry][1]["step_id"] == "step-3"
    assert types[retry + 1] == "step-start" and rest[retry + 1][1]["step_id"] == "step-3"
    assert types[-1] == "final"
    # Every step completed exactly once across both streams.
    completes = [e["data"]["step_name"] for _, e in seen + rest if e["type"] == "step-complete"]
    assert completes == [
        "analyze-topic",
        "generate-outline",
        "create-content",
        "generate-images",
        "finalize-lesson",
    ]
    lesson = rest[-1][1]["data"]["result"]["lesson"]
    outline = [
        e for _, e in seen if e["type"] == "step-complete" and e["data"]["step_name"] == "generate-outline"
    ]
    sections = [
        line.split(". ", 1)[1] for line in outline[0]["data"]["output"].splitlines() if line[:1].isdigit()
    ]
    for number, title in enumerate(sections, start=1):
        assert f"## {number}. {title}" in lesson
    for heading in (
        "## Key terms",
        "## Common misconceptions",
        "## Check your understanding",
        "### Answers",
        "## Summary",
    ):
        assert heading in lesson
    session = wait_until_completed(server, session_id)
    assert session["status"] == "completed"
    assert session["result"]["lesson"] == lesson


def test_kill_9_mid_step_then_restart_completes_by_itself_and_a_client_resumes_without_gap(servers, db):
    first = start(servers, db, "--pace=400")
    session_id = create(first)
    seen = watch_until_mid_content(first, session_id)
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(TIMEOUT)

    second = start(servers, db)  # pace 0 from here, so the rest is quick
    assert "resumed 1 sessions" in second.log_text()
    assert_resumed_without_gap(second, session_id, seen)


def test_sigterm_mid_step_then_restart_resumes_the_interrupted_session(servers, db):
    first = start(servers, db, "--pace=400", "--shutdown_timeout=0.2")
    session_id = create(first)
    seen = watch_until_mid_content(first, session_id)
    assert first.terminate() == 0
    assert "interrupted 1 sessions" in first.log_text()

    second = start(servers, db)
    assert_resumed_without_gap(second, session_id, seen)


def test_with_resume_off_a_crashed_session_is_marked_interrupted(servers, db):
    first = start(servers, db, "--pace=400")
    session_id = create(first)
    watch_until_mid_content(first, session_id)
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(TIMEOUT)

    second = start(servers, db, "--resume_on_start=false")
    session = get(second, f"/api/sessions/{session_id}").json()
    assert session["status"] == "interrupted"
    assert session["steps"][2]["status"] == "running"  # as far as it got


def start_should_fail(db: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "server.py", "--port=0", "--store=sqlite", f"--db_path={db}"],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env={k: v for k, v in os.environ.items() if not k.startswith("ORCH_")},
    )


def test_a_corrupt_database_stops_the_start_with_a_message_naming_it(db):
    db.parent.mkdir(parents=True)
    db.write_bytes(b"this is not a database, it is a shopping list\n" * 100)
    done = start_should_fail(db)
    assert done.returncode == 1
    assert f"cannot open the database {db}" in done.stderr
    assert "Traceback" not in done.stderr


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[None]:
    """Make a file read-only even for root (which ignores permission bits): immutable, via chattr."""
    if os.geteuid() == 0:
        if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
            pytest.skip("chattr cannot make files immutable here")
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(path)], check=True)
    else:
        path.chmod(0o444)
        path.parent.chmod(0o555)
        try:
            yield
        finally:
            path.parent.chmod(0o755)
            path.chmod(0o644)


def test_a_read_only_database_stops_the_start_with_a_message_naming_it(servers, db):
    server = start(servers, db)
    assert server.terminate() == 0
    for leftover in (Path(f"{db}-wal"), Path(f"{db}-shm")):
        leftover.unlink(missing_ok=True)
    with read_only(db):
        done = start_should_fail(db)
    assert done.returncode == 1
    assert str(db) in done.stderr and "readonly" in done.stderr.replace("-", "").replace(" ", "")


def test_a_database_that_stops_taking_writes_gives_503s_and_the_service_carries_on(servers, db):
    if os.geteuid() != 0:
        pytest.skip("needs root to make the open database immutable")
    server = start(servers, db)
    session_id = create(server)
    files = [db, Path(f"{db}-wal")]
    with contextlib.ExitStack() as stack:
        for path in files:
            stack.enter_context(read_only(path))
        response = requests.post(f"{server.url}/api/sessions", json={"topic": "tides"}, timeout=TIMEOUT)
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == 503 and "store cannot be used right now" in body["error"]
        assert str(db.parent) not in response.text  # where the files live is for the log, not a client
        health = get(server, "/health").json()
        assert health["store"]["writable"] is False
        assert get(server, f"/api/sessions/{session_id}").status_code == 200  # reads still work
    assert create(server, "after the disk came back")
    assert f"cannot write to the database {db}" in server.log_text()


def stored(db: Path, session_id: str) -> tuple[str, list[str]]:
    """The session's status and its event types, read straight from the file."""
    with contextlib.closing(sqlite3.connect(db)) as connection:
        (status,) = connection.execute("SELECT status FROM sessions WHERE id = ?", (session_id,)).fetchone()
        types = [
            row[0]
            for row in connection.execute("SELECT type FROM events WHERE session_id = ?", (session_id,))
        ]
    return status, types


def test_a_start_on_a_busy_port_exits_with_a_message_and_leaves_interrupted_sessions_to_resume(
    servers,
    db,
):
    first = start(servers, db, "--pace=400", "--shutdown_timeout=0.2")
    session_id = create(first)
    watch_until_mid_content(first, session_id)
    first.proc.send_signal(signal.SIGKILL)  # a crash: the session is left running in the file
    first.proc.wait(TIMEOUT)
    before = stored(db, session_id)
    assert before[0] == "running"

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "server.py", f"--port={port}", "--store=sqlite", f"--db_path={db}"],
            cwd=PROJECT,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            env={k: v for k, v in os.environ.items() if not k.startswith("ORCH_")},
        )
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr
    assert stored(db, session_id) == before  # not resumed, not cancelled, no event added

    second = start(servers, db)
    assert wait_until_completed(second, session_id)["status"] == "completed"
