"""The model provider against a fake OpenAI-compatible server: streaming, retries, schemas, budgets."""

from __future__ import annotations

import time
from typing import Any

import pytest
import ujson

from tests.fake_openai import GOOD_JSON, Reply
from tests.test_stream import run_to_end

BASE = {
    "provider": "openai",
    "llm_model": "fake-model",
    "llm_api_key": "sk-test-secret",
    "retry_initial_delay": 0.01,
    "retry_max_delay": 0.05,
    "llm_idle_timeout": 5,
}


def llm(**extra: Any) -> list[dict[str, Any]]:
    """config_overrides for a test: the model provider, quick retries, and the test's own settings."""
    return [{**BASE, **extra}]


def of_type(events, kind: str) -> list[dict]:
    return [e.json for e in events if e.type == kind]


async def run(api, http_port, topic: str = "tides") -> tuple[str, list, dict]:
    session_id = await api.create(topic)
    events = await run_to_end(http_port, session_id)
    _, session, _ = await api.request("GET", f"/api/sessions/{session_id}")
    return session_id, events, session


@pytest.mark.gen_test
@pytest.mark.parametrize("config_overrides", llm())
async def test_a_model_run_streams_every_token_and_builds_the_lesson_from_the_answers(api, http_port, model):
    _session_id, events, session = await run(api, http_port)
    assert events[-1].type == "final"
    result = events[-1].json["data"]["result"]
    assert result["lesson"].startswith("# Tides and the Moon")
    for section in GOOD_JSON["lesson_outline"]["sections"]:
        assert section["title"] in result["lesson"]
    assert "harbour at dawn" in result["lesson"] and "What mainly causes tides?" in result["lesson"]
    assert result["summary"].startswith("You now know why the sea rises")
    # The deltas are the model's tokens as they came: analyze-topic's are the JSON it wrote.
    analysis_deltas = "".join(
        e["data"]["delta"] for e in of_type(events, "step-delta") if e["step_id"] == "step-1"
    )
    assert ujson.loads(analysis_deltas) == GOOD_JSON["topic_analysis"]
    progress = [e["data"]["progress"] for e in of_type(events, "step-delta")]
    assert all(0 <= p <= 100 for p in progress)
    assert model.kinds() == [
        "topic_analysis",
        "lesson_outline",
        "section",
        "section",
        "section",
        "quiz",
        "summary",
    ]
    assert session["status"] == "completed"

    first = model.requests[0]
    assert first.headers["Authorization"] == "Bearer sk-test-secret"
    assert first.body["model"] == "fake-model" and first.body["stream"] is True
    assert first.body["stream_options"] == {"include_usage": True}
    assert first.body["max_tokens"] == 1536 and first.body["temperature"] == 0.7  # a JSON answer
    schema_format = first.body["response_format"]
    assert schema_format["type"] == "json_schema" and schema_format["json_schema"]["strict"] is True
    assert "tides" in first.body["messages"][-1]["content"]
    assert "response_format" not in model.requests[2].body  # a section is prose


@pytest.mark.gen_test
@pytest.mark.parametrize("config_overrides", llm(llm_prompt_price=1.0, llm_completion_price=2.0))
async def test_token_usage_from_the_usage_chunk_is_kept_per_step_and_per_session_with_cost(
    api, http_port, model
):
    _session_id, events, session = await run(api, http_port)
    completes = {e["data"]["step_name"]: e["data"] for e in of_type(events, "step-complete")}
    analysis_usage = completes["analyze-topic"]["usage"]
    assert analysis_usage["prompt_tokens"] == 11
    assert analysis_usage["total_tokens"] == 11 + analysis_usage["completion_tokens"]
    assert analysis_usage["cost"] == pytest.approx(
        (11 * 1.0 + analysis_usage["completion_tokens"] * 2.0) / 1e6
    )
    assert "usage" not in completes["generate-images"]  # the diagrams use no model
    steps_total = sum(c["usage"]["total_tokens"] for c in completes.values() if "usage" in c)
    totals = session["metadata"]["usage"]
    assert totals["total_tokens"] == steps_total
    assert totals["prompt_tokens"] == 11 * len(model.requests)
    result = events[-1].json["data"]["result"]
    assert result["metadata"]["usage"] == totals
    # Which provider and model wrote it, with the session and with the lesson.
    assert (session["metadata"]["provider"], session["metadata"]["model"]) == ("openai", "fake-model")
    assert (result["metadata"]["provider"], result["metadata"]["model"]) == ("openai", "fake-model")
    assert session["steps"][0]["metadata"]["usage"] == analysis_usage


@pytest.mark.gen_test
@pytest.mark.parametrize("config_overrides", llm())
async def test_an_empty_answer_fails_the_step_clearly_instead_of_a_blank_lesson(api, http_port, model):
    model.script(Reply(text=""), when="section")
    session_id, events, session = await run(api, http_port)
    step_error = of_type(events, "step-error")[0]
    assert step_error["data"]["step_name"] == "create-content"
    assert "returned an empty answer" in step_error["data"]["error"]
    assert "openai provider, model fake-model" in step_error["data"]["error"]
    assert events[-1].type == "error" and events[-1].json["data"]["status"] == "failed"
    assert session["status"] == "failed" and session["steps"][2]["status"] == "failed"
    assert not of_type(events, "step-retry")  # an empty answer is not worth repeating
    status, _, _ = await api.request("GET", f"/api/sessions/{session_id}/result")
    assert status == 400


@pytest.mark.gen_test
@pytest.mark.parametrize("config_overrides", llm())
async def test_a_malformed_json_answer_is_asked_again_with_the_error_then_accepted(api, http_port, model):
    model.script(Reply(text='{"title": "Tides", "category": '), when="topic_analysis")
    _session_id, events, session = await run(api, http_port)
    retry = of_type(events, "step-retry")[0]
    assert retry["step_id"] == "step-1" and "did not match the schema" in retry["data"]["reason"]
    assert model.kinds()[:2] == ["topic_analysis", "topic_analysis"]
    again = model.requests[1].body["messages"]
    assert again[-2] == {"role": "assistant", "content": '{"title": "Tides", "category": '}
    assert "not valid" in again[-1]["content"] and "it is not JSON" in again[-1]["content"]
    # After the retry the step's deltas start afresh: what follows it is the good answer alone.
    events_after = [e.json for e in events[events.index(next(e for e in events if e.type == "step-retry")) :]]
    deltas = "".join(
        e["data"]["delta"] for e in events_after if e["type"] == "step-delta" and e["step_id"] == "step-1"
    )
    assert ujson.loads(deltas) == GOOD_JSON["topic_analysis"]
    assert session["status"] == "completed"


@pytest.mark.gen_test
@pytest.mark.parametrize("config_overrides", llm())
async def test_an_answer_that_breaks_the_schema_twice_fails_the_step_with_the_validation_error(
    api, http_port, model
):
    bad = ujson.dumps({**GOOD_JSON["lesson_outline"], "sections": []})
    model.script(Reply(text=bad), when="lesson_outline", times=2)
    _, events, session = await run(api, http_port)
    error = of_type(events, "step-error")[0]["data"]["error"]
    assert "does not match the schema twice" in error and "at sections" in error
    assert session["status"] == "failed" and session["steps"][1]["error"] == error


@pytest.mark.gen_test
@pytest.mark.parametrize("config_overrides", llm())
async def test_a_429_with_retry_after_is_retried_after_the_wait_the_server_asked_for(api, http_port, model):
    model.script(Reply.error(429, "slow down", Retry_After="1"))
    _, events, session = await run(api, http_port)
    retry = of_type(events, "step-retry")[0]["data"]
    assert retry["delay"] == 1 and retry["attempt"] == 2 and "answered 429: slow down" in retry["reason"]
    first, second = model.requests[:2]
    assert second.at - first.at >= 0.9
    assert session["status"] == "completed"


@pytest.mark.gen_test
@pytest.mark.parametrize("config_overrides", llm())
async def test_a_500_twice_is_retried_with_backoff_then_succeeds(api, http_port, model):
    model.script(Reply.error(500, "boom"), times=2)
    _, events, session = await run(api, http_port)
    retries = [e["data"] for e in of_type(events, "step-retry")]
    assert [r["attempt"] for r in retries] == [2, 3]
    assert all("answered 500: boom" in r["reason"] and 0 <= r["delay"] <= 0.05 for r in retries)
    assert session["status"] == "completed"
    assert session["steps"][0]["status"] == "completed"


@pytest.mark.gen_test
@pytest.mark.parametrize("config_overrides", llm(retries=1))
async def test_retries_are_bounded_and_then_the_step_fails(api, http_port, model):
    model.script(Reply.error(503, "overloaded"), times=5)
    _, events, session = await run(api, http_port)
    assert len(of_type(events, "step-retry")) == 1
    assert len(model.requests) == 2
    assert "answered 503: overloaded" in of_type(events, "step-error")[0]["data"]["error"]
    assert session["status"] == "failed"


@pytest.mark.gen_test
@pytest.mark.parametrize("config_overrides", llm())
async def test_an_error_sent_mid_stream_voids_the_partial_text_and_is_retried(api, http_port, model):
    model.script(Reply(error_mid_stream=True), when="summary")
    _, events, session = await run(api, http_port)
    retry = of_type(events, "step-retry")[0]
    assert retry["step_id"] == "step-5" and "failed mid-answer: the model crashed" in retry["data"]["reason"]
    assert session["status"] == "completed"
    assert events[-1].json["data"]["result"]["summary"].startswith("You now know")


@pytest.mark.gen_test
@pytest.mark.parametrize("config_overrides", llm(llm_idle_timeout=0.3))
async def test_a_stream_that_stalls_trips_the_idle_timeout_and_is_retried(api, http_port, model):
    model.script(Reply(stall=True), when="section")
    started = time.monotonic()
    _, events, session = await run(api, http_port)
    retry = of_type(events, "step-retry")[0]["data"]
    assert retry["step_name"] == "create-content" and "sent no token for 0.3 s" in retry["reason"]
    assert session["status"] == "completed"
    assert time.monotonic() - started < 10


@pytest.mark.gen_test
@pytest.mark.parametrize("config_overrides", llm())
async def test_a_401_fails_at_once_naming_the_provider_and_model(api, http_port, model):
    model.script(Reply.error(401, "Incorrect API key provided"))
    _, events, session = await run(api, http_port)
    assert len(model.requests) == 1 and not of_type(events, "step-retry")
    error = of_type(events, "step-error")[0]["data"]["error"]
    assert error == (
        f"analyze-topic failed: openai provider, model fake-model at {model.url} answered 401: "
        "Incorrect API key provided"
    )
    assert session["status"] == "failed" and session["metadata"]["error"].startswith("analyze-topic:")


@pytest.mark.gen_test
@pytest.mark.parametrize("config_overrides", llm(token_budget=200))
async def test_a_session_that_would_exceed_its_token_budget_is_stopped_with_a_clear_error(
    api, http_port, model
):
    _, events, session = await run(api, http_port)
    error = events[-1].json["data"]
    assert error["status"] == "failed" and "budget of 200" in error["error"]
    assert session["status"] == "failed"
    assert session["metadata"]["usage"]["total_tokens"] > 0
    # No call was ever allowed more tokens than the budget had left.
    assert all(seen.body["max_tokens"] <= 200 for seen in model.requests)


@pytest.mark.gen_test
@pytest.mark.parametrize("config_overrides", llm(image_provider="openai", retries=1))
async def test_a_failing_optional_image_step_leaves_a_partial_lesson(api, http_port, model):
    model.script(Reply.error(500, "image backend down"), when="image", times=2)
    _session_id, events, session = await run(api, http_port)
    assert events[-1].type == "final"
    result = events[-1].json["data"]["result"]
    assert result["partial"] is True and result["images"] == {}
    assert "![" not in result["lesson"]
    step = session["steps"][3]
    assert step["status"] == "failed" and "image backend down" in step["error"]
    assert session["status"] == "completed"
    assert of_type(events, "step-error")[0]["data"]["step_name"] == "generate-images"


@pytest.mark.gen_test
@pytest.mark.parametrize("config_overrides", llm(image_provider="openai"))
async def test_an_image_from_the_model_is_stored_and_served_beside_the_diagrams(api, http_port, model):
    _session_id, events, _ = await run(api, http_port)
    images = events[-1].json["data"]["result"]["images"]
    assert list(images) == ["illustration.png", "outline-map.svg", "key-terms.svg"]
    status, body, headers = await api.request("GET", images["illustration.png"])
    assert status == 200 and headers["Content-Type"] == "image/png" and body.startswith(b"\x89PNG")
    image_request = next(seen for seen in model.requests if seen.kind == "image")
    assert image_request.body["model"] == "gpt-image-1" and "response_format" not in image_request.body
    assert "partial" not in events[-1].json["data"]["result"]


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "config_overrides",
    [
        *llm(llm_json_mode="json_object"),
        *llm(llm_json_mode="prompt"),
    ],
)
async def test_other_json_modes_send_the_schema_the_way_those_servers_take_it(api, http_port, model, config):
    _, _events, session = await run(api, http_port)
    assert session["status"] == "completed"
    body = model.requests[0].body
    prompt = body["messages"][-1]["content"]
    if config.llm_json_mode == "json_object":
        assert body["response_format"]["type"] == "json_object"
        assert body["response_format"]["schema"]["required"][0] == "title"
    else:
        assert "response_format" not in body
    assert '"additionalProperties":false' in prompt  # the schema is in the prompt for both


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "config_overrides",
    llm(
        llm_step_options={
            "create-content": {
                "max_tokens": 777,
                "json_max_tokens": 555,
                "temperature": 0.1,
                "model": "big-model",
            }
        }
    ),
)
async def test_model_temperature_and_max_tokens_can_be_set_per_step(api, http_port, model):
    await run(api, http_port)
    by_kind = {seen.kind: seen.body for seen in model.requests}
    assert (
        by_kind["section"]["model"],
        by_kind["section"]["max_tokens"],
        by_kind["section"]["temperature"],
    ) == (
        "big-model",
        777,
        0.1,
    )
    assert (by_kind["summary"]["model"], by_kind["summary"]["max_tokens"]) == ("fake-model", 1024)
    assert (by_kind["quiz"]["model"], by_kind["quiz"]["max_tokens"]) == ("big-model", 555)  # JSON's own limit
    assert by_kind["topic_analysis"]["max_tokens"] == 1536
