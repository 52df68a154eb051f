"""`python -m client` run as a person or a script would, against a live server process, without a terminal."""

from __future__ import annotations

import http.server
import json
import os
import queue
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest
import requests
from markdown_it import MarkdownIt

from client.sse import parse
from tests.live import get_json, live_server, run_to_completion, step_outputs
from tests.server_process import PROJECT, ServerProcess
from tests.tcp_proxy import CuttingProxy

STEPS = ["analyze-topic", "generate-outline", "create-content", "generate-images", "finalize-lesson"]

server = live_server()
# Slow enough that a cut lands mid-run; a short retry hint so the resume does not wait 3 s.
paced_server = live_server("--pace=4000", "--sse_retry=100")
failing_server = live_server("--step_timeout=0.01", "--pace=50")
API_KEY = "secret-key-1"


@pytest.fixture(scope="module")
def keyed_server() -> Iterator[ServerProcess]:
    """A server that wants `Authorization: Bearer secret-key-1` on every API request."""
    process = ServerProcess(env={"ORCH_API_KEYS": f"tester:{API_KEY}"})
    yield process
    process.kill()


def cli_env(env_extra: dict[str, str] | None = None, columns: int | None = None) -> dict[str, str]:
    # Pipes, not a terminal: what CI, a cron job or `| tee` sees. No colour forced from outside, and
    # no API key from outside either; the width is rich's 80 columns unless COLUMNS says otherwise.
    dropped = ("FORCE_COLOR", "TTY_COMPATIBLE", "COLUMNS", "LINES", "ORCH_API_KEY")
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env["PYTHONIOENCODING"] = "utf-8"
    if columns is not None:
        env["COLUMNS"] = str(columns)
    env.update(env_extra or {})
    return env


def run_cli(
    *args: str, timeout: float = 60, env_extra: dict[str, str] | None = None, columns: int | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "client", *args],
        cwd=PROJECT,
        env=cli_env(env_extra, columns),
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


def markdown_words(markdown: str) -> list[str]:
    """The words a reader sees in rendered Markdown, in order: its text without the markup."""
    words: list[str] = []
    for token in MarkdownIt().enable("strikethrough").enable("table").parse(markdown):
        if token.type in ("fence", "code_block"):
            words += token.content.split()
        # An inline's text, its markup (strong, em, links) left out: "**Model**:" is the word "Model:".
        pieces = {"text": None, "code_inline": None, "softbreak": " ", "hardbreak": " "}
        text = [pieces[c.type] or c.content for c in token.children or [] if c.type in pieces]
        words += "".join(text).split()
    return words


def screen_words(screen: str) -> list[str]:
    """The words on the screen, less what rich draws for a list: its bullets and its item numbers."""
    return [word for word in screen.split() if word != "•" and not word.isdigit()]


@pytest.mark.parametrize("columns", [60, 120])
def test_the_cli_renders_each_steps_markdown_wrapped_between_words_and_saves_the_lesson(
    server, tmp_path, columns
):
    done = run_cli("photosynthesis", "--url", server.url, "--out", str(tmp_path), columns=columns)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "\x1b[" not in out  # no terminal: no colours, no cursor moves, no progress bars redrawn
    assert out.startswith("Lesson: photosynthesis\nsession ")
    session_id = out.split("session ", 1)[1].split("\n", 1)[0]
    lines = out.splitlines()
    # Wrapped at the width, with no blanks padding a line out to it; only a path longer than a line
    # (one word) is left longer, whole.
    for line in lines:
        assert line == line.rstrip()
        assert len(line) <= columns or " " not in line, line
    # The Markdown is rendered: no markup left.
    assert "**" not in out and "`" not in out
    assert not [line for line in lines if line.lstrip().startswith(("#", "- "))]
    outputs = step_outputs(server.url, session_id)
    position = 0
    for index, name in enumerate(STEPS, start=1):
        start = out.index(f"▶ {index}/5 {name}\n", position)
        done_line = out.index(f"✓ {name} done in ", start)
        # Each step's text is all there, in order, each word whole: a word broken across two lines
        # would be two words here, and any markup a word of its own or stuck to one.
        shown = out[start:done_line].split("\n", 1)[1]
        expected = [w for w in markdown_words(outputs[name]) if not w.isdigit()]
        assert screen_words(shown) == expected, name
        position = done_line
    assert "Lesson ready in " in out
    assert " ".join(out.split()).endswith(
        f"Lesson saved to {tmp_path / 'photosynthesis.md'} "
        f"Image saved to {tmp_path / 'photosynthesis-outline-map.svg'} "
        f"Image saved to {tmp_path / 'photosynthesis-key-terms.svg'}"
    )
    assert done.stderr == ""


def test_quiet_shows_the_progress_and_where_the_files_went_but_none_of_the_lesson(server, tmp_path):
    done = run_cli("photosynthesis", "--quiet", "--url", server.url, "--out", str(tmp_path), columns=200)
    assert done.returncode == 0, done.stderr
    session_id = done.stdout.split("session ", 1)[1].split("\n", 1)[0]
    steps = [line for name in STEPS for line in (f"▶ {STEPS.index(name) + 1}/5 {name}", f"✓ {name} done in")]
    lines = [line for line in done.stdout.splitlines() if line]
    assert lines[:2] == ["Lesson: photosynthesis", f"session {session_id}"]
    assert [line.split(" in ")[0] + (" in" if " done in " in line else "") for line in lines[2:12]] == steps
    assert lines[12].startswith("Lesson ready in ")
    assert lines[13].startswith("Written offline by the built-in provider: a study scaffold, without facts.")
    assert lines[-3:] == [
        f"Lesson saved to {tmp_path / 'photosynthesis.md'}",
        f"Image saved to {tmp_path / 'photosynthesis-outline-map.svg'}",
        f"Image saved to {tmp_path / 'photosynthesis-key-terms.svg'}",
    ]
    assert (tmp_path / "photosynthesis.md").is_file()


def test_the_saved_markdown_points_at_the_images_saved_beside_it(server, tmp_path):
    done = run_cli("The Water Cycle", "--url", server.url, "--out", str(tmp_path / "lessons"))
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "lessons"
    assert sorted(p.name for p in folder.iterdir()) == [
        "the-water-cycle-key-terms.svg",
        "the-water-cycle-outline-map.svg",
        "the-water-cycle.md",
    ]
    session_id = done.stdout.split("session ", 1)[1].split("\n", 1)[0]
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


# -- a service with API keys ----------------------------------------------------------------------


def keyed_get(base_url: str, path: str) -> requests.Response:
    response = requests.get(base_url + path, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10)
    response.raise_for_status()
    return response


def test_with_an_api_key_the_cli_runs_a_lesson_to_the_end_and_saves_it(keyed_server, tmp_path):
    done = run_cli(
        "photosynthesis", "--api-key", API_KEY, "--url", keyed_server.url, "--out", str(tmp_path), columns=200
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert f"Lesson saved to {tmp_path / 'photosynthesis.md'}" in done.stdout
    session_id = done.stdout.split("session ", 1)[1].split("\n", 1)[0]
    # What was saved is what the service holds, images included (fetched with the key too).
    result = keyed_get(keyed_server.url, f"/api/sessions/{session_id}/result").json()
    markdown = result["lesson"]
    for name, url in result["images"].items():
        assert (tmp_path / f"photosynthesis-{name}").read_bytes() == keyed_get(keyed_server.url, url).content
        markdown = markdown.replace(f"]({url})", f"](photosynthesis-{name})")
    assert (tmp_path / "photosynthesis.md").read_text(encoding="utf-8") == markdown


def test_the_api_key_can_come_from_the_environment(keyed_server, tmp_path):
    done = run_cli(
        "binary search",
        "--json",
        "--url",
        keyed_server.url,
        "--out",
        str(tmp_path),
        env_extra={"ORCH_API_KEY": API_KEY},
    )
    assert done.returncode == 0, done.stderr
    kinds = [event["type"] for event in json_events(done.stdout)]
    assert kinds[0] == "connected" and kinds[-1] == "final"
    assert (tmp_path / "binary-search.md").is_file()


def test_without_an_api_key_the_cli_exits_1_and_says_an_api_key_is_needed(keyed_server, tmp_path):
    done = run_cli("photosynthesis", "--url", keyed_server.url, "--out", str(tmp_path))
    assert done.returncode == 1
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1
    assert "API key" in done.stderr and "--api-key" in done.stderr and "ORCH_API_KEY" in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
    assert list(tmp_path.iterdir()) == []


def test_a_wrong_api_key_exits_1_and_says_the_key_was_not_accepted(keyed_server, tmp_path):
    wrong = ("--api-key", "not-the-key", "--url", keyed_server.url, "--out", str(tmp_path))
    done = run_cli("photosynthesis", *wrong)
    assert done.returncode == 1
    assert "did not accept the API key" in done.stderr
    assert "not-the-key" not in done.stderr  # the key itself is never echoed
    # Attaching with a wrong key is refused the same way.
    attached = run_cli("--session", "6f1c", *wrong)
    assert attached.returncode == 1 and "API key" in attached.stderr
    assert list(tmp_path.iterdir()) == []


class Refusing(http.server.BaseHTTPRequestHandler):
    """A service that refuses every request as a keyed one does without the right key."""

    def do_GET(self) -> None:
        self.refuse()

    def do_POST(self) -> None:
        self.refuse()

    def refuse(self) -> None:
        body = b'{"error": "missing or invalid API key", "status": 401}'
        self.send_response(401)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("WWW-Authenticate", "Bearer")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        type(self).seen.append(self.headers.get("Authorization"))

    def log_message(self, format: str, *args: object) -> None:
        pass

    seen: list[str | None] = []


@pytest.mark.parametrize(
    ("args", "env_extra", "says"),
    [
        ((), {}, "the service needs an API key (401 missing or invalid API key); give it with --api-key"),
        (("--api-key", "k1"), {}, "the service did not accept the API key (401 missing or invalid API key)"),
        ((), {"ORCH_API_KEY": "k2"}, "the service did not accept the API key"),
        (("--session", "abc"), {}, "the service needs an API key"),
    ],
)
def test_a_401_exits_1_with_a_message_about_the_api_key(args, env_extra, says, tmp_path):
    # Against a stand-in, so the client's side of the contract is checked whatever the server does.
    Refusing.seen = []
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refusing) as stub:
        threading.Thread(target=stub.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{stub.server_address[1]}"
        topic = () if "--session" in args else ("photosynthesis",)
        done = run_cli(*topic, *args, "--url", url, "--out", str(tmp_path), env_extra=env_extra)
        stub.shutdown()
    assert done.returncode == 1
    assert done.stderr.startswith("error: " + says) and done.stderr.count("\n") == 1
    assert done.stdout == ""
    key = "k1" if "k1" in args else env_extra.get("ORCH_API_KEY")
    assert Refusing.seen == [f"Bearer {key}" if key else None]


def test_the_cli_sends_the_key_on_every_request_it_makes(keyed_server, tmp_path):
    # Through a proxy that records every request head: the create, the stream, the lesson, the images.
    with CuttingProxy(keyed_server.port, cut_after=10**9) as proxy:
        done = run_cli("photosynthesis", "--api-key", API_KEY, "--url", proxy.url, "--out", str(tmp_path))
        assert done.returncode == 0, done.stderr
        heads = list(proxy.requests)
    assert len(heads) >= 5  # POST /api/sessions, GET /run, lesson.md, two images
    for head in heads:
        assert f"\r\nAuthorization: Bearer {API_KEY}\r\n" in head, head.split("\r\n", 1)[0]


def test_an_api_key_with_spaces_or_control_characters_is_a_usage_error():
    done = run_cli("photosynthesis", "--api-key", "two words")
    assert done.returncode == 2
    assert "API key" in done.stderr


# -- what a new user ran into: the output folder, existing files, a blank topic, Ctrl-C ------------

DEADLINE = 15.0  # every wait below ends by then at the latest


def session_ids(base_url: str) -> list[str]:
    return [session["id"] for session in get_json(base_url, "/api/sessions?limit=100")["sessions"]]


@pytest.mark.parametrize("where", ["a file", "a folder under a file", "a read-only folder"])
def test_an_output_folder_that_cannot_be_written_is_refused_before_any_session_is_made(
    server, tmp_path, where
):
    in_the_way = tmp_path / "notes.txt"
    in_the_way.write_text("not a folder")
    out = {"a file": in_the_way, "a folder under a file": in_the_way / "lessons"}.get(where, tmp_path / "ro")
    if where == "a read-only folder":
        if os.geteuid() == 0:
            pytest.skip("root writes into a read-only folder all the same")
        out.mkdir(mode=0o500)
    before = session_ids(server.url)
    done = run_cli("photosynthesis", "--url", server.url, "--out", str(out))
    assert done.returncode == 2
    assert (
        done.stderr.startswith(f"error: cannot write the lesson into {out}") and done.stderr.count("\n") == 1
    )
    assert done.stdout == ""
    assert session_ids(server.url) == before  # nothing was started for a lesson that could not be saved


def test_an_existing_lesson_file_is_not_overwritten_without_force(server, tmp_path):
    existing = tmp_path / "photosynthesis.md"
    existing.write_text("my notes\n")
    done = run_cli("photosynthesis", "--quiet", "--url", server.url, "--out", str(tmp_path))
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: {existing} already exists")
    assert existing.read_text() == "my notes\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photosynthesis.md"]  # no image written either
    # It says how to save the lesson anyway, from the session the service keeps: that command works.
    session_id = done.stdout.split("session ", 1)[1].split("\n", 1)[0]
    command = next(line.strip() for line in done.stderr.splitlines() if "--session" in line)
    assert f"--session {session_id}" in command and command.endswith("--force")
    again = subprocess.run(
        shlex.split(command),
        cwd=PROJECT,
        env=cli_env(),
        capture_output=True,
        encoding="utf-8",
        timeout=60,
    )
    assert again.returncode == 0, again.stderr
    assert existing.read_text(encoding="utf-8") == saved_lesson(server.url, session_id, "photosynthesis")
    assert len(list(tmp_path.iterdir())) == 3


def test_with_force_existing_lesson_files_are_overwritten(server, tmp_path):
    (tmp_path / "binary-search.md").write_text("old\n")
    (tmp_path / "binary-search-key-terms.svg").write_text("old\n")
    done = run_cli("binary search", "--force", "--json", "--url", server.url, "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    session_id = session_id_of(json_events(done.stdout))
    assert (tmp_path / "binary-search.md").read_text(encoding="utf-8") == saved_lesson(
        server.url, session_id, "binary-search"
    )
    assert (tmp_path / "binary-search-key-terms.svg").read_text() != "old\n"


@pytest.mark.parametrize("topic", ["", " \t\n"])
def test_a_blank_topic_is_a_usage_error_that_says_so(topic):
    done = run_cli(topic, "--url", "http://127.0.0.1:9")  # never asked: nothing listens there
    assert done.returncode == 2
    assert "the topic is blank" in done.stderr
    assert "cannot reach" not in done.stderr


def read_lines(pipe: IO[str], into: queue.Queue[str]) -> None:
    for line in pipe:
        into.put(line)


def test_ctrl_c_stops_watching_and_prints_the_command_that_attaches_again(paced_server, tmp_path):
    with subprocess.Popen(
        [sys.executable, "-m", "client", "photosynthesis", "--quiet", "--url", paced_server.url],
        cwd=tmp_path,  # --out defaults to here
        env={**cli_env(), "PYTHONUNBUFFERED": "1"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        encoding="utf-8",
    ) as cli:
        assert cli.stdout is not None and cli.stderr is not None
        lines: queue.Queue[str] = queue.Queue()
        reader = threading.Thread(target=read_lines, args=(cli.stdout, lines), daemon=True)
        reader.start()
        try:
            shown: list[str] = []
            deadline = time.monotonic() + DEADLINE
            while not any(line.startswith("▶ 1/5") for line in shown):
                try:
                    shown.append(lines.get(timeout=max(0.01, deadline - time.monotonic())))
                except queue.Empty:
                    raise AssertionError(f"no first step within {DEADLINE} s: {shown}") from None
            cli.send_signal(signal.SIGINT)
            code = cli.wait(DEADLINE)
            stderr = cli.stderr.read()
        finally:
            cli.kill()
            reader.join(DEADLINE)  # it reads to the end of the pipe before the pipe is closed
    assert code == 130, stderr
    session_id = next(line for line in shown if line.startswith("session ")).split()[1]
    assert "Traceback" not in stderr
    assert "the session goes on" in stderr
    command = stderr.strip().splitlines()[-1].strip()
    assert command == shlex.join(
        [sys.executable, "-m", "client", "--session", session_id, "--url", paced_server.url, "--quiet"]
    )
    # The session goes on without it (the existing-file test above runs such a command to its end).
    assert get_json(paced_server.url, f"/api/sessions/{session_id}")["status"] in ("running", "completed")


def test_orchestrate_is_an_installed_command():
    command = Path(sys.executable).parent / "orchestrate"
    assert command.is_file(), f"{command} is missing: `make install` installs it (pip install --no-deps -e .)"
    # From another folder, and without the project on the path: the installed command itself.
    done = subprocess.run(
        [str(command), "--help"], cwd="/", env=cli_env(), capture_output=True, encoding="utf-8", timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: ") and "orchestrate" in done.stdout.split("\n", 1)[0]
    for flag in ("--quiet", "--force", "--transport", "--session", "exit status:"):
        assert flag in done.stdout


# -- --transport=poll: the same events by long polling ----------------------------------------------


def recorded_events(base_url: str, session_id: str) -> list[dict]:
    """A finished session's events as its stream replays them, each with its id (no `connected`)."""
    events = []
    with requests.get(f"{base_url}/api/sessions/{session_id}/run", stream=True, timeout=DEADLINE) as stream:
        for message in parse(stream.iter_content(chunk_size=None)):
            if message.id is not None:
                events.append({"id": int(message.id), **json.loads(message.data)})
    return events


class LongPolling(http.server.BaseHTTPRequestHandler):
    """GET /events as its contract says, over a finished session's recorded events: the first poll is
    held and answered empty, later ones hand out a few events at a time, each repeating the last event
    the client already has. The rest is the real service's (the session, its lesson, its images)."""

    upstream = ""
    events: list[dict] = []
    polls: list[str] = []
    starts = 0

    def do_POST(self) -> None:
        if self.path.endswith("/start"):
            type(self).starts += 1
            self.reply(409, {"error": "session already started", "status": 409})
        else:
            self.reply(404, {"error": "not here", "status": 404})

    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        if not path.endswith("/events"):
            upstream = requests.get(self.upstream + self.path, timeout=DEADLINE)
            self.send_response(upstream.status_code)
            for name in ("Content-Type", "Content-Disposition"):
                if name in upstream.headers:
                    self.send_header(name, upstream.headers[name])
            self.send_header("Content-Length", str(len(upstream.content)))
            self.end_headers()
            self.wfile.write(upstream.content)
            return
        type(self).polls.append(query)
        after = int(dict(pair.split("=") for pair in query.split("&"))["after"])
        batch = [] if len(self.polls) == 1 else [e for e in self.events if e["id"] >= after][:8]
        done = bool(batch) and batch[-1]["type"] in ("final", "error")
        next_after = batch[-1]["id"] if batch else after
        self.reply(200, {"events": batch, "done": done, "status": "running", "next_after": next_after})

    def reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_the_poll_transport_shows_and_saves_what_the_stream_does(server, tmp_path):
    # Against a stand-in for the endpoint, so the client's side of the contract is checked whatever
    # the server does: every event once and in order, through empty and overlapping answers.
    session_id = run_to_completion(server.url, "photosynthesis")
    LongPolling.upstream, LongPolling.events, LongPolling.polls, LongPolling.starts = (
        server.url,
        recorded_events(server.url, session_id),
        [],
        0,
    )
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), LongPolling) as stub:
        threading.Thread(target=stub.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{stub.server_address[1]}"
        common = ("--session", session_id, "--transport=poll", "--url", url)
        shown = run_cli(*common, "--json", "--out", str(tmp_path / "json"))
        screen = run_cli(*common, "--out", str(tmp_path / "screen"), columns=120)
        stub.shutdown()
    assert shown.returncode == 0, shown.stderr
    assert json_events(shown.stdout) == LongPolling.events  # each once, in order, as sent
    assert LongPolling.starts == 2  # it asks to start the session first; 409 (started already) is fine
    assert LongPolling.polls[:2] == ["after=0&wait=25", "after=0&wait=25"]
    assert screen.returncode == 0, screen.stderr
    assert screen.stdout.count("✓ ") == 5 and "Lesson ready in " in screen.stdout
    for folder in ("json", "screen"):
        saved = (tmp_path / folder / "photosynthesis.md").read_text(encoding="utf-8")
        assert saved == saved_lesson(server.url, session_id, "photosynthesis")


def test_the_poll_transport_runs_a_new_topic_on_the_real_service(server, tmp_path):
    probe = requests.get(f"{server.url}/api/sessions/no-such-session/events", timeout=DEADLINE)
    if probe.status_code == 404 and "endpoint" in probe.text:
        pytest.skip("the server has no GET /api/sessions/{id}/events (long polling) yet")
    done = run_cli("binary search", "--transport=poll", "--json", "--url", server.url, "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    events = json_events(done.stdout)
    assert [event["id"] for event in events] == list(range(1, len(events) + 1))
    assert events[-1]["type"] == "final"
    session_id = session_id_of(events)
    assert events == recorded_events(server.url, session_id)  # the stream's events, the same
    saved = (tmp_path / "binary-search.md").read_text(encoding="utf-8")
    assert saved == saved_lesson(server.url, session_id, "binary-search")
