"""`python -m client` run as a person or a script would, against a live server process, without a terminal."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import requests

from tests.live import get_json, live_server, run_to_completion, step_outputs
from tests.server_process import PROJECT
from tests.tcp_proxy import CuttingProxy

STEPS = ["analyze-topic", "generate-outline", "create-content", "generate-images", "finalize-lesson"]

server = live_server()
# Slow enough that a cut lands mid-run; a short retry hint so the resume does not wait 3 s.
paced_server = live_server("--pace=4000", "--sse_retry=100")
failing_server = live_server("--step_timeout=0.01", "--pace=50")


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    # Pipes, not a terminal: what CI, a cron job or `| tee` sees. No colour forced from outside.
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "COLUMNS")}
    env["PYTHONIOENCODING"] = "utf-8"
    return subprocess.run(
        [sys.executable, "-m", "client", *args],
        cwd=PROJECT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        encoding="utf-8",
        timeout=timeout,
    )


def json_events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines()]


def session_id_of(events: list[dict]) -> str:
    return events[0]["session_id"]


def saved_lesson(base_url: str, session_id: str, stem: str) -> str:
    """The lesson as the client should save it: its image links pointed at the files beside it."""
    result = get_json(base_url, f"/api/sessions/{session_id}/result")
    lesson = result["lesson"]
    for name, url in result["images"].items():
        lesson = lesson.replace(f"]({url})", f"]({stem}-{name})")
    return lesson


def test_the_cli_shows_each_step_with_its_text_and_saves_the_lesson(server, tmp_path):
    done = run_cli("photosynthesis", "--url", server.url, "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "\x1b[" not in out  # no terminal: no colours, no cursor moves, no progress bars redrawn
    assert out.startswith("Lesson: photosynthesis\n")
    session_id = out.split("session ", 1)[1].split(" ", 1)[0]
    outputs = step_outputs(server.url, session_id)
    position = 0
    for index, name in enumerate(STEPS, start=1):
        start = out.index(f"▶ {index}/5 {name}\n", position)
        done_line = out.index(f"✓ {name} done in ", start)
        # The step's text is printed as it streams, whole and in order, between its start and end.
        assert out[start:done_line].split("\n", 1)[1] == outputs[name].rstrip("\n") + "\n"
        position = done_line
    assert "Lesson ready in " in out
    assert out.rstrip().endswith(
        f"Lesson saved to {tmp_path / 'photosynthesis.md'}\n"
        f"Image saved to {tmp_path / 'photosynthesis-outline-map.svg'}\n"
        f"Image saved to {tmp_path / 'photosynthesis-key-terms.svg'}"
    )
    assert done.stderr == ""


def test_the_saved_markdown_points_at_the_images_saved_beside_it(server, tmp_path):
    done = run_cli("The Water Cycle", "--url", server.url, "--out", str(tmp_path / "lessons"))
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "lessons"
    assert sorted(p.name for p in folder.iterdir()) == [
        "the-water-cycle-key-terms.svg",
        "the-water-cycle-outline-map.svg",
        "the-water-cycle.md",
    ]
    session_id = done.stdout.split("session ", 1)[1].split(" ", 1)[0]
    for name, url in get_json(server.url, f"/api/sessions/{session_id}/result")["images"].items():
        served = requests.get(server.url + url, timeout=10).content
        assert (folder / f"the-water-cycle-{name}").read_bytes() == served
    markdown = (folder / "the-water-cycle.md").read_text(encoding="utf-8")
    assert markdown == saved_lesson(server.url, session_id, "the-water-cycle")
    assert "/api/sessions/" not in markdown
    assert "![Lesson map](the-water-cycle-outline-map.svg)" in markdown


def test_json_mode_prints_every_event_once_as_one_json_object_per_line(server, tmp_path):
    done = run_cli("binary search", "--json", "--url", server.url, "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    events = json_events(done.stdout)
    kinds = [event["type"] for event in events]
    assert kinds[0] == "connected" and kinds[-1] == "final"
    assert kinds.count("step-start") == 5 and kinds.count("step-complete") == 5
    assert [event["id"] for event in events[1:]] == list(range(1, len(events)))
    assert all(event["session_id"] == session_id_of(events) for event in events)
    # The progress UI is not there; what is not an event goes to stderr.
    assert "Lesson saved to" not in done.stdout
    assert f"Lesson saved to {tmp_path / 'binary-search.md'}" in done.stderr


def test_the_cli_resumes_a_dropped_stream_and_finishes_with_no_event_twice(paced_server, tmp_path):
    with CuttingProxy(paced_server.port, cut_after=12_000) as proxy:
        done = run_cli("photosynthesis", "--json", "--url", proxy.url, "--out", str(tmp_path))
        assert done.returncode == 0, done.stderr
        assert proxy.cuts_made == 1
        reconnect = proxy.stream_requests()[1]
    events = json_events(done.stdout)
    ids = [event["id"] for event in events if event["type"] != "connected"]
    assert ids == list(range(1, len(ids) + 1))  # nothing missed, nothing repeated
    assert [event["type"] for event in events].count("connected") == 2
    assert (
        f"Last-Event-ID: {events[[e['type'] for e in events].index('connected', 1) - 1]['id']}" in reconnect
    )
    assert "resuming after event" in done.stderr
    session_id = session_id_of(events)
    # The run went on while the client was away: it finished, and the whole lesson was saved.
    outputs = step_outputs(paced_server.url, session_id)
    deltas: dict[str, str] = {}
    names = {e["step_id"]: e["data"]["step_name"] for e in events if e["type"] == "step-start"}
    for event in events:
        if event["type"] == "step-delta":
            deltas[names[event["step_id"]]] = deltas.get(names[event["step_id"]], "") + event["data"]["delta"]
    assert deltas == outputs
    saved = (tmp_path / "photosynthesis.md").read_text(encoding="utf-8")
    assert saved == saved_lesson(paced_server.url, session_id, "photosynthesis")


def test_a_failed_session_exits_with_status_1_and_says_which_step_failed(failing_server, tmp_path):
    done = run_cli("photosynthesis", "--url", failing_server.url, "--out", str(tmp_path))
    assert done.returncode == 1
    assert done.stderr.startswith("error: the session was failed at analyze-topic: ")
    assert "✗ analyze-topic failed: " in done.stdout
    assert list(tmp_path.iterdir()) == []


def test_an_unreachable_server_exits_with_status_3_and_a_short_reason(tmp_path):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = run_cli("photosynthesis", "--url", f"http://127.0.0.1:{port}", "--out", str(tmp_path), timeout=30)
    assert done.returncode == 3
    assert done.stderr == f"error: cannot reach http://127.0.0.1:{port}: [Errno 111] Connection refused\n"
    assert done.stdout == ""


def test_an_http_error_exits_with_status_3_and_the_services_message(server, tmp_path):
    done = run_cli("--session", "no-such-session", "--url", server.url, "--out", str(tmp_path))
    assert done.returncode == 3
    assert done.stderr == "error: GET /api/sessions/no-such-session: 404 session no-such-session not found\n"


def test_attaching_to_a_finished_session_replays_it_and_saves_its_lesson(server, tmp_path):
    session_id = run_to_completion(server.url, "how vaccines work")
    done = run_cli("--session", session_id, "--url", server.url, "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Lesson: how vaccines work\n")
    assert done.stdout.count("✓ ") == 5
    assert (tmp_path / "how-vaccines-work.md").is_file()


def test_a_topic_and_a_session_together_are_a_usage_error(tmp_path):
    done = run_cli("photosynthesis", "--session", "abc")
    assert done.returncode == 2
    assert "give a topic, or --session ID" in done.stderr


def test_the_help_shows_examples_and_exit_statuses():
    done = run_cli("--help")
    assert done.returncode == 0
    assert "--json" in done.stdout and "--out" in done.stdout and "exit status:" in done.stdout


def test_the_client_does_not_load_the_services_code():
    # The client must not pull in the server's modules: it runs where only requests and rich are.
    code = "import sys, client.__main__; print([m for m in ('tornado', 'workflow') if m in sys.modules])"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT, capture_output=True, encoding="utf-8", timeout=30
    )
    assert done.stdout.strip() == "[]", done.stderr
