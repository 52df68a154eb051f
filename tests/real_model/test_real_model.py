"""The service against a real llama.cpp model server: llama-cpp-python's, with SmolLM2-135M (make test-model).

What is asserted is the wire, never what the tiny model writes: one step-delta per token of a
grammar-constrained JSON answer, the server's refusal of json_schema turned into a fast, clear
failure, a model server killed mid-answer and started again, an interrupting server's cut-short
answers never taken for whole ones, the idle timeout while the server is busy, and a full session
through a small subscriber buffer ending in `final` or a clear schema error.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.real_model.harness import (
    DISCONNECTED,
    MODEL_ALIAS,
    Event,
    ModelServer,
    cancel,
    create,
    describe,
    events,
    reasons,
    run_session,
    running_service,
    terminal,
)
from tests.server_process import ServerProcess

# A lesson takes 35-200 s on two idle cores (the model's JSON answers run from ~100 to ~1500
# tokens); the deadlines leave room for a machine busy with other work too.
pytestmark = [pytest.mark.real_model, pytest.mark.timeout(480)]
SESSION_DEADLINE = 420

INTERRUPTED = "ended without a finish_reason"
SCHEMA = "does not match the schema"
# The model ran out of llm_json_max_tokens before its JSON was complete: its content, not the wire.
JSON_CUT_OFF = "before its JSON was complete"
IDLE = "no token for"
# Reasons that say the wire (or the service) failed, not what the model wrote.
TRANSPORT = (
    "cannot reach",
    "broke mid-answer",
    "answered 5",
    "failed mid-answer",
    IDLE,
    INTERRUPTED,
    "internal",
    "Traceback",
)


def step_events(seen: list[Event], step_id: str, *kinds: str) -> list[Event]:
    return [e for e in seen if e.step_id == step_id and (not kinds or e.type in kinds)]


def test_json_object_is_accepted_and_analyze_topic_streams_one_delta_per_token(
    model_server: ModelServer, start_service
):
    service = start_service(model_server)
    mark = model_server.mark()
    session_id = create(service, "binary search")
    seen: list[Event] = []
    with contextlib.closing(events(service, session_id, timeout=SESSION_DEADLINE)) as stream:
        for event in stream:
            seen.append(event)
            if event.step_id == "step-1" and event.type in ("step-complete", "step-error"):
                break
    cancel(service, session_id)  # the rest of the lesson is not needed here

    step = step_events(seen, "step-1")
    assert step[-1].type in ("step-complete", "step-error"), describe(seen)
    # Each call of the step (a schema re-ask is a second one) prints its timings when it ends.
    calls = 1 + len(step_events(seen, "step-1", "step-retry"))
    model_server.wait_for(lambda: len(model_server.eval_runs(mark)) >= calls, f"{calls} answers' timings")
    tokens = sum(model_server.eval_runs(mark)[:calls])
    log = model_server.since(mark)
    assert log.count('"POST /v1/chat/completions HTTP/1.1" 200 OK') >= calls  # json_object is accepted
    assert '"POST /v1/chat/completions HTTP/1.1" 4' not in log
    assert '"POST /v1/chat/completions HTTP/1.1" 5' not in log

    deltas = [e.data["delta"] for e in step if e.type == "step-delta"]
    text = "".join(deltas)
    assert len(deltas) >= 10, describe(seen)
    # llama.cpp counts an answer's evaluated tokens: its last one is never evaluated, and a prompt
    # whose every token but one was cached counts that one; so within one per call.
    assert abs(len(deltas) - tokens) <= calls, (len(deltas), tokens, calls)
    assert max(len(d) for d in deltas) <= 32 and max(len(d) for d in deltas) < len(text) / 4, deltas


def test_json_schema_fails_fast_saying_the_server_does_not_accept_it(
    model_server: ModelServer, start_service
):
    # A retry schedule of 2 + 4 + 8 s: a transient failure would take over 14 s to become an error.
    service = start_service(
        model_server,
        "--llm_json_mode=json_schema",
        "--retries=3",
        "--retry_initial_delay=2",
        "--retry_max_delay=8",
    )
    mark = model_server.mark()
    started = time.monotonic()
    seen = run_session(service, "tides", timeout=60)
    elapsed = time.monotonic() - started

    last = terminal(seen)
    assert last.type == "error", describe(seen)
    assert not [e for e in seen if e.type == "step-retry"], describe(seen)
    error = next(e for e in seen if e.type == "step-error").data["error"]
    assert "does not accept json_schema" in error and "llm_json_mode=json_object" in error, error
    assert elapsed < 5, f"the failure took {elapsed:.1f} s"
    model_server.wait_for(lambda: model_server.chat_requests(mark) >= 1, "the request's access log line")
    assert model_server.chat_requests(mark) == 1  # asked once, not once per retry
    # llama-cpp-python answers json_schema with a 500 (a request validation error), not a 4xx.
    assert '"POST /v1/chat/completions HTTP/1.1" 500' in model_server.since(mark)


def test_a_model_server_killed_mid_answer_and_started_again_is_retried_and_the_session_ends_final(
    model_server: ModelServer, start_service
):
    # Backoff of 0.5, 1, 2, 2... s over 8 retries: about 13 s, longer than the model server's restart.
    service = start_service(model_server, "--retries=8", "--retry_initial_delay=0.5", "--retry_max_delay=2")
    seen: list[Event] = []
    killed_at = None
    restart_seconds = 0.0
    for event in events(service, create(service, "binary search"), timeout=SESSION_DEADLINE):
        seen.append(event)
        # Three deltas in: past the section's heading (the service's own text), into the model's tokens.
        if killed_at is None and len(step_events(seen, "step-3", "step-delta")) == 3:
            model_server.kill()
            killed_at = len(seen)
            started = time.monotonic()
            model_server.start()
            restart_seconds = time.monotonic() - started
    assert killed_at is not None, f"the session never reached create-content: {describe(seen)}"

    after = seen[killed_at:]
    retries = [e for e in after if e.type == "step-retry"]
    assert retries, f"no step-retry after the kill: {describe(seen)}"
    assert retries[0].step_id == "step-3" and SCHEMA not in retries[0].data["reason"], describe(after)
    assert step_events(after, "step-3", "step-complete"), describe(after)
    assert terminal(seen).type == "final", f"restart took {restart_seconds:.1f} s; {describe(seen)}"


def test_an_interrupting_server_never_has_a_cut_short_answer_taken_for_a_whole_one(
    start_model_server, start_service
):
    interrupting = start_model_server("--interrupt_requests", label="interrupting model server")
    # JSON answers of 64 tokens at most: the sessions fight over analyze-topic, then each ends soon
    # after one of its answers runs to its end (cut off: a clear error, the model's, not the wire's).
    service = start_service(interrupting, "--llm_json_max_tokens=64")
    mark = interrupting.mark()
    # One topic for both: the same prompt, which the server finds in its cache on every attempt
    # (a different one would be evaluated afresh, 3-8 s, each time the two sessions take turns).
    session_ids = [create(service, "tides"), create(service, "tides")]
    with ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(lambda sid: list(events(service, sid, timeout=SESSION_DEADLINE)), session_ids))

    noticed = 0
    for seen in runs:
        last = terminal(seen)
        if last.type == "error":
            error = last.data["error"]
            assert any(clear in error for clear in (INTERRUPTED, SCHEMA, JSON_CUT_OFF)), describe(seen)
        for event in seen:
            if event.type == "step-retry":
                reason = event.data["reason"]
                # Every retry here is an interruption, or a schema re-ask of what the model wrote.
                assert INTERRUPTED in reason or "did not match the schema" in reason, describe(seen)
        # An interrupted attempt is a step-retry, or the step-error if it was the last (which the
        # session's error then repeats).
        noticed += sum(
            INTERRUPTED in (e.data.get("reason") or e.data.get("error") or "")
            for e in seen
            if e.type in ("step-retry", "step-error")
        )
    interruptions = interrupting.since(mark).count(DISCONNECTED)
    assert interruptions >= 1, "two sessions at once never interrupted each other"
    assert noticed >= 1, [describe(s) for s in runs]
    # llama.cpp prints an answer's timings only when its generation ran to the end, so an answer
    # asked for and never timed was cut short: the service must have noticed every one of them.
    # (The server also counts a cut that came after an answer's finish chunk: harmless.)
    interrupting.wait_for(
        lambda: noticed >= interrupting.chat_requests(mark) - len(interrupting.eval_runs(mark)),
        f"every answer cut short noticed ({noticed} noticed)",
        timeout=5,
    )
    assert noticed <= interruptions, (noticed, interruptions)


class BusyAnswer:
    """A long streamed answer straight from the model server (min_tokens: no early stop), read in a thread."""

    def __init__(self, model: ModelServer, tokens: int = 600) -> None:
        self.started = threading.Event()
        self.ended = threading.Event()
        self._stop = threading.Event()
        body = {
            "model": MODEL_ALIAS,
            "messages": [{"role": "user", "content": "Count from 1 to 1000, one number a line."}],
            "max_tokens": tokens,
            "min_tokens": tokens,
            "stream": True,
        }
        self._thread = threading.Thread(target=self._read, args=(model, body), daemon=True)
        self._thread.start()

    def _read(self, model: ModelServer, body: dict) -> None:
        try:
            url = f"{model.base_url}/chat/completions"
            with requests.post(url, json=body, stream=True, timeout=(5, 30)) as response:
                for chunk in response.iter_content(chunk_size=None):
                    if b'"content"' in chunk:
                        self.started.set()
                    if self._stop.is_set():
                        return
        finally:
            self.ended.set()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(40)


@contextlib.contextmanager
def busy_answer(model: ModelServer) -> Iterator[BusyAnswer]:
    busy = BusyAnswer(model)
    try:
        assert busy.started.wait(60), "the model server never started the long answer"
        yield busy
    finally:
        busy.stop()


def test_the_idle_timeout_fires_while_the_server_is_busy_with_another_answer(
    model_server: ModelServer, start_service
):
    service = start_service(model_server, "--llm_idle_timeout=2", "--retries=1")
    seen: list[Event] = []
    with busy_answer(model_server) as busy:
        session_id = create(service, "tides")
        with contextlib.closing(events(service, session_id, timeout=60)) as stream:
            for event in stream:
                seen.append(event)
                if any(IDLE in r for r in reasons(seen)):
                    break
        busy_while_timed_out = not busy.ended.is_set()
        cancel(service, session_id)
    timed_out = [r for r in reasons(seen) if IDLE in r]
    assert timed_out, describe(seen)
    assert busy_while_timed_out, "the long answer had ended before the idle timeout fired"
    assert "2 s" in timed_out[0], timed_out[0]


@pytest.fixture(scope="module")
def full_session(model_server: ModelServer) -> Iterator[tuple[list[Event], ServerProcess]]:
    """One whole session, read through a subscriber buffer of 64 events, for the two tests below."""
    with running_service(model_server, "--subscriber_buffer=64") as service:
        yield run_session(service, "photosynthesis", timeout=SESSION_DEADLINE), service


def test_a_small_subscriber_buffer_never_cuts_a_live_stream(full_session):
    seen, service = full_session
    terminal(seen)  # the stream ended with final or error, not cut off mid-way
    assert "fell too far behind" not in service.log_text()
    assert not [r for r in reasons(seen) if "fell too far behind" in r]


def test_a_full_session_ends_final_or_with_a_clear_schema_error(full_session):
    seen, _ = full_session
    last = terminal(seen)
    if last.type == "error":
        error = last.data["error"]
        assert SCHEMA in error or JSON_CUT_OFF in error, describe(seen)
    for reason in reasons(seen):
        assert not any(wire in reason for wire in TRANSPORT), describe(seen)
