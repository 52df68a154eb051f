"""The service as a real process: the contract's client examples, signals, options and logs."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import ujson

from client.sse import parse
from conf.settings import Settings
from tests.contract_examples import CONTRACT, CONTRACT_PYTHON_EXAMPLE
from tests.server_process import PROJECT, ServerProcess


@pytest.fixture
def server():
    process = ServerProcess()
    yield process
    process.kill()


def test_the_embedded_python_example_is_the_contracts_own():
    if not CONTRACT.exists():
        pytest.skip("the contract is not beside this checkout")
    assert CONTRACT_PYTHON_EXAMPLE in CONTRACT.read_text()


def test_the_contract_python_client_example_runs_as_written(server):
    code = CONTRACT_PYTHON_EXAMPLE.replace("localhost:8080", f"127.0.0.1:{server.port}")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "Event: connected"
    assert lines[-1] == "Event: final"
    assert lines.count("Event: step-start") == 5
    assert lines.count("Event: step-complete") == 5
    assert "Event: step-delta" in lines


def test_the_contract_curl_examples_work(server):
    def curl(*args: str) -> str:
        done = subprocess.run(["curl", "-sS", *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    created = curl(
        "-X",
        "POST",
        f"{server.url}/api/sessions",
        "-H",
        "Content-Type: application/json",
        "-d",
        '{"topic": "machine learning"}',
    )
    session_id = ujson.loads(created)["id"]
    stream = curl("-X", "POST", f"{server.url}/api/sessions/{session_id}/run")
    data = [ujson.loads(event.data) for event in parse([stream.encode()])]
    assert data[0]["type"] == "connected" and data[-1]["type"] == "final"
    result = ujson.loads(curl(f"{server.url}/api/sessions/{session_id}/result"))
    assert result == data[-1]["data"]["result"]


def read_events(response: requests.Response):
    for event in parse(response.iter_content(chunk_size=None)):
        yield ujson.loads(event.data)


def start_watching_a_run(server: ServerProcess):
    """Create and run a session; return its events once its first step has started."""
    created = requests.post(f"{server.url}/api/sessions", json={"topic": "tides"}, timeout=10)
    response = requests.post(f"{server.url}/api/sessions/{created.json()['id']}/run", stream=True, timeout=30)
    events = read_events(response)
    assert next(events)["type"] == "connected"
    assert next(events)["type"] == "step-start"
    return events


def test_sigterm_lets_a_short_run_finish_then_exits_0():
    server = ServerProcess("--pace=3000", "--shutdown_timeout=30")
    try:
        events = start_watching_a_run(server)
        server.proc.send_signal(15)
        rest = [event["type"] for event in events]
        assert rest[-1] == "final"  # the run was allowed to finish
        assert server.proc.wait(30) == 0
        assert "stopped" in server.log_text()
    finally:
        server.kill()


def test_sigterm_mid_run_interrupts_what_is_left_closes_streams_and_exits_0():
    server = ServerProcess("--pace=100", "--shutdown_timeout=1")
    try:
        events = start_watching_a_run(server)
        started = time.monotonic()
        server.proc.send_signal(15)
        rest = [event["type"] for event in events]  # ends cleanly: no exception, no terminal event
        assert "final" not in rest and "error" not in rest
        assert server.proc.wait(30) == 0
        assert time.monotonic() - started < 10
        log = server.log_text()
        assert "interrupted 1 sessions that were still running" in log
        assert "Traceback" not in log
    finally:
        server.kill()


def test_help_lists_every_option():
    done = subprocess.run(
        [sys.executable, "server.py", "--help"], cwd=PROJECT, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0
    for name in Settings.__dataclass_fields__:
        assert f"--{name}" in done.stdout
        assert f"ORCH_{name.upper()}" in done.stdout


@pytest.mark.parametrize(("args", "loop"), [((), "uvloop"), (("--event_loop=asyncio",), "asyncio")])
def test_the_service_runs_on_uvloop_unless_told_to_use_asyncios_own_loop(args, loop):
    server = ServerProcess(*args)
    try:
        assert f", loop {loop})" in server.log_text()
        session_id = requests.post(f"{server.url}/api/sessions", json={"topic": "tides"}, timeout=10).json()[
            "id"
        ]
        with requests.post(f"{server.url}/api/sessions/{session_id}/run", stream=True, timeout=30) as stream:
            events = list(parse(stream.iter_content(chunk_size=None)))
        ids = [int(event.id) for event in events if event.id]  # `connected` has none
        assert ids == list(range(1, len(ids) + 1)) and len(ids) > 100
        assert ujson.loads(events[-1].data)["type"] == "final"
    finally:
        server.kill()


def test_uvloop_asked_for_but_missing_stops_the_start_with_a_message(tmp_path):
    # A uvloop that cannot be imported, first on the path: as if it were not installed.
    (tmp_path / "uvloop.py").write_text("raise ImportError('no uvloop here')\n")
    done = subprocess.run(
        [sys.executable, "server.py", "--event_loop=uvloop", "--port=0"],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=30,
        env={**_clean_env(), "PYTHONPATH": str(tmp_path)},
    )
    assert done.returncode == 2
    assert "event_loop=uvloop, but uvloop cannot be imported: no uvloop here" in done.stderr


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--port=abc"], {}, "port: 'abc' from the command line is not a valid int"),
        (["--log_format=xml"], {}, "log_format: 'xml' from the command line is not one of"),
        ([], {"ORCH_STEP_TIMEOUT": "-1"}, "step_timeout: -1.0 from the environment is below the minimum"),
        (["--config=/nonexistent.toml"], {}, "conf file /nonexistent.toml does not exist"),
    ],
)
def test_a_bad_setting_stops_the_start_with_a_message_naming_it(args, env, message):
    done = subprocess.run(
        [sys.executable, "server.py", *args],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=30,
        env={**_clean_env(), **env},
    )
    assert done.returncode == 2
    assert message in done.stderr


def _clean_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}


def test_json_logs_carry_the_request_id_and_the_session_id():
    server = ServerProcess("--log_format=json")
    try:
        headers = {"X-Request-ID": "req-1234"}
        session_id = requests.post(
            f"{server.url}/api/sessions", json={"topic": "tides"}, headers=headers, timeout=10
        ).json()["id"]
        response = requests.post(f"{server.url}/api/sessions/{session_id}/run", headers=headers, timeout=30)
        assert response.status_code == 200
        server.wait_for_log(f'"session {session_id} completed"')
    finally:
        server.terminate()
    records = [ujson.loads(line) for line in server.lines]
    ours = [r for r in records if r["request_id"] == "req-1234"]
    assert any(r["logger"] == "orchestrator.access" and "POST /api/sessions " in r["message"] for r in ours)
    about_session = [r for r in records if session_id in r["message"]]
    assert about_session and all(r["session_id"] == session_id for r in about_session)
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)


def test_the_default_conf_file_parses(tmp_path: Path):
    from conf.settings import DEFAULT_CONF_FILE, load_settings

    settings = load_settings([], {})
    assert DEFAULT_CONF_FILE.exists()
    assert settings.port == 8080


def test_the_api_key_never_appears_in_logs_or_answers():
    secret = "sk-never-print-this-0123456789"
    server = ServerProcess(
        "--provider=openai",
        "--llm_base_url=http://127.0.0.1:9/v1",  # the discard port: nothing listens there
        "--retries=0",
        env={"ORCH_LLM_API_KEY": secret},
    )
    try:
        session_id = requests.post(f"{server.url}/api/sessions", json={"topic": "tides"}, timeout=10).json()[
            "id"
        ]
        stream = requests.post(f"{server.url}/api/sessions/{session_id}/run", timeout=30).text
        session = requests.get(f"{server.url}/api/sessions/{session_id}", timeout=10).text
    finally:
        server.terminate()
    assert '"status":"failed"' in session and "cannot reach openai provider, model gpt-4o-mini" in stream
    for text in (stream, session, server.log_text()):
        assert secret not in text
