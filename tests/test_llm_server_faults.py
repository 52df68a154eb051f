"""What real model servers (llama.cpp's among them) do that a well-behaved one does not, against the fake:
answers cut short, pings without tokens, unsupported response formats, runaway strings, restarts."""

from __future__ import annotations

import time
from typing import Any

import pytest
import ujson

from tests.fake_openai import GOOD_JSON, Reply
from tests.test_llm_provider import llm, of_type, run

SECTION_TITLES = [s["title"] for s in GOOD_JSON["lesson_outline"]["sections"]]


def step_events(events: list, step_id: str) -> list[dict[str, Any]]:
    return [e.json for e in events if e.json.get("step_id") == step_id]


def text_after_last_retry(events: list, step_id: str) -> str:
    """What a client shows of a step: its deltas since the step's last step-retry."""
    shown: list[str] = []
    for event in step_events(events, step_id):
        if event["type"] == "step-retry":
            shown = []
        elif event["type"] == "step-delta":
            shown.append(event["data"]["delta"])
    return "".join(shown)


def walk(schema: Any) -> list[dict[str, Any]]:
    """Every sub-schema of a JSON schema."""
    found: list[dict[str, Any]] = []
    if isinstance(schema, dict):
        found.append(schema)
        for value in schema.values():
            found += walk(value)
    elif isinstance(schema, list):
        for value in schema:
            found += walk(value)
    return found


# 1. A schema re-ask sends what the step had kept as one delta, never as a burst.
@pytest.mark.gen_test
@pytest.mark.parametrize("config_overrides", llm(subscriber_buffer=40))
async def test_a_schema_reask_resends_the_kept_text_as_one_delta_and_cuts_no_live_stream(
    api, http_port, model
):
    # Sections of ~60 tokens each: a stream keeps up with them as they come, but not with all of
    # them again at once.
    model.chunk_delay = 0.002
    long_section = "The sea rises and falls twice a day as the Moon pulls on it. " * 7
    model.script(Reply(text=long_section), when="section", times=len(SECTION_TITLES))
    out_of_range = ujson.loads(ujson.dumps(GOOD_JSON["quiz"]))
    out_of_range["quiz"][0]["answer"] = 3_578_241_960_000
    model.script(Reply(text=ujson.dumps(out_of_range)), when="quiz")
    _, events, session = await run(api, http_port)
    assert events[-1].type == "final", "the live stream was cut off"
    step = step_events(events, "step-3")
    retry = next(i for i, e in enumerate(step) if e["type"] == "step-retry")
    assert "did not match the schema" in step[retry]["data"]["reason"]
    resent = step[retry + 1]
    assert resent["type"] == "step-delta"
    # One delta carries every section written before the quiz, headings included.
    for number, title in enumerate(SECTION_TITLES, start=1):
        assert f"## {number}. {title}" in resent["data"]["delta"]
    assert resent["data"]["delta"].endswith("## Quiz\n\n")
    assert resent["data"]["progress"] >= 60  # the sections' share of the step is kept
    assert (
        ujson.loads(text_after_last_retry(events, "step-3").split("## Quiz\n\n", 1)[1]) == GOOD_JSON["quiz"]
    )
    assert session["status"] == "completed"


# 2. A stream that ends without a finish_reason was cut short: retried, never accepted.
@pytest.mark.gen_test
@pytest.mark.parametrize("config_overrides", llm())
async def test_an_answer_that_ends_without_a_finish_reason_is_retried_and_never_kept(api, http_port, model):
    model.script(Reply(text="The Moon pulls on the sea and the wat", finish_reason=None), when="section")
    model.script(Reply(text="", finish_reason=None), when="topic_analysis")
    _, events, session = await run(api, http_port)
    reasons = [e["data"]["reason"] for e in of_type(events, "step-retry")]
    assert len(reasons) == 2 and all("ended without a finish_reason" in r for r in reasons)
    assert "--interrupt_requests False" in reasons[0]
    lesson = events[-1].json["data"]["result"]["lesson"]
    assert "the wat" not in lesson
    assert session["status"] == "completed"
    # Only the cut call was asked again, not the step: section 1 once, after one cut attempt.
    assert model.kinds()[:4] == ["topic_analysis", "topic_analysis", "lesson_outline", "section"]
    assert model.kinds().count("section") == len(SECTION_TITLES) + 1


@pytest.mark.gen_test
@pytest.mark.parametrize("config_overrides", llm())
async def test_json_cut_off_at_max_tokens_is_an_error_that_says_so(api, http_port, model):
    model.script(Reply(text='{"title": "Tides", "categ', finish_reason="length"), when="topic_analysis")
    _, events, session = await run(api, http_port)
    error = of_type(events, "step-error")[0]["data"]["error"]
    assert "cut off at max_tokens=1536" in error and "llm_json_max_tokens" in error
    assert len(model.requests) == 1 and not of_type(events, "step-retry")
    assert session["status"] == "failed"


@pytest.mark.gen_test
@pytest.mark.parametrize("config_overrides", llm())
async def test_text_cut_off_at_max_tokens_is_kept_with_a_warning(api, http_port, model):
    model.script(Reply(text="A section that stops in the middle of", finish_reason="length"), when="section")
    _, events, session = await run(api, http_port)
    assert events[-1].type == "final"
    assert "stops in the middle of" in events[-1].json["data"]["result"]["lesson"]
    warnings = session["steps"][2]["metadata"]["warnings"]
    assert warnings == ["section 1 of 3 was cut off at max_tokens=1024"]


# 3 and 4. Ranges as enums, a fixed number of choices, bounded strings, a smaller max_tokens for JSON.
@pytest.mark.gen_test
@pytest.mark.parametrize("config_overrides", llm(llm_json_mode="json_object"))
async def test_schemas_sent_to_grammar_servers_bound_every_string_and_range(api, http_port, model):
    _, _, session = await run(api, http_port)
    assert session["status"] == "completed"
    sent = {seen.kind: seen.body for seen in model.requests}
    for kind in ("topic_analysis", "lesson_outline", "quiz"):
        schema = sent[kind]["response_format"]["schema"]
        parts = walk(schema)
        assert all("maxLength" in part for part in parts if part.get("type") == "string"), kind
        # llama.cpp's grammar ignores minimum and maximum: no range may rely on them.
        assert not [part for part in parts if "minimum" in part or "maximum" in part], kind
        assert sent[kind]["max_tokens"] == 1536
    question = sent["quiz"]["response_format"]["schema"]["properties"]["quiz"]["items"]["properties"]
    assert question["answer"] == {"type": "integer", "enum": [0, 1, 2, 3]}
    assert question["choices"]["minItems"] == question["choices"]["maxItems"] == 4
    assert sent["section"]["max_tokens"] == 1024 and sent["summary"]["max_tokens"] == 1024


@pytest.mark.gen_test
@pytest.mark.parametrize("config_overrides", llm())
async def test_strict_json_schema_requests_use_only_what_openai_strict_mode_accepts(api, http_port, model):
    await run(api, http_port)
    for seen in model.requests:
        if "response_format" in seen.body:
            parts = walk(seen.body["response_format"]["json_schema"]["schema"])
            for keyword in ("minLength", "maxLength", "minimum", "maximum"):
                assert not [part for part in parts if keyword in part], keyword


@pytest.mark.gen_test
@pytest.mark.parametrize("config_overrides", llm())
async def test_an_overlong_string_is_asked_again_as_a_schema_error(api, http_port, model):
    runaway = {**GOOD_JSON["topic_analysis"], "title": "Tides " * 200}
    model.script(Reply(text=ujson.dumps(runaway)), when="topic_analysis")
    _, events, session = await run(api, http_port)
    assert "at title: " in of_type(events, "step-retry")[0]["data"]["reason"]
    assert session["status"] == "completed"


# 5. The idle timeout counts tokens, not bytes: pings do not keep a silent answer alive.
@pytest.mark.gen_test
@pytest.mark.parametrize("config_overrides", llm(llm_idle_timeout=0.5, step_timeout=20))
async def test_pings_without_tokens_trip_the_idle_timeout(api, http_port, model):
    model.script(Reply(text="", stall=True, ping_every=0.1), when="section")
    started = time.monotonic()
    _, events, session = await run(api, http_port)
    retry = of_type(events, "step-retry")[0]["data"]
    assert "sent no token for 0.5 s" in retry["reason"]
    assert session["status"] == "completed"
    assert time.monotonic() - started < 15


# 6. A server that does not take json_schema: at once, with the way out, in one readable line.
@pytest.mark.gen_test
@pytest.mark.parametrize("status", [400, 422, 500])
@pytest.mark.parametrize("config_overrides", llm())
async def test_a_server_without_json_schema_fails_at_once_with_the_setting_to_use(
    api, http_port, model, status
):
    dump = (
        "1 validation error for CreateChatCompletionRequest\nresponse_format.type\n  Input should be "
        "'text' or 'json_object' [type=literal_error, input_value='json_schema', input_type=str]\n"
        '  File "/opt/venv/lib/python3.11/site-packages/llama_cpp/server/types.py", line 212\n' * 20
    )
    model.script(Reply.error(status, dump), when="topic_analysis")
    _, events, session = await run(api, http_port)
    assert len(model.requests) == 1 and not of_type(events, "step-retry")
    error = of_type(events, "step-error")[0]["data"]["error"]
    assert "this server does not accept json_schema; use llm_json_mode=json_object or prompt" in error
    assert "\n" not in error and "site-packages" not in error
    assert session["status"] == "failed"


@pytest.mark.gen_test
@pytest.mark.parametrize("config_overrides", llm(retries=0))
async def test_a_long_provider_error_is_cut_to_one_readable_line(api, http_port, model):
    model.script(Reply.error(503, "Traceback (most recent call last):\n" + "  frame\n" * 500))
    _, events, _ = await run(api, http_port)
    error = of_type(events, "step-error")[0]["data"]["error"]
    assert "\n" not in error and len(error) < 400 and "answered 503: Traceback" in error


# 7. A transient failure retries the call that failed, not the step.
@pytest.mark.gen_test
@pytest.mark.parametrize("config_overrides", llm())
async def test_a_failed_call_is_retried_alone_and_the_sections_before_it_are_kept(api, http_port, model):
    model.script(Reply(), when="section")
    model.script(Reply(error_mid_stream=True), when="section")
    _, events, session = await run(api, http_port)
    assert model.kinds().count("section") == len(SECTION_TITLES) + 1
    step = step_events(events, "step-3")
    retry = next(i for i, e in enumerate(step) if e["type"] == "step-retry")
    assert step[retry]["data"]["attempt"] == 2
    resent = step[retry + 1]["data"]["delta"]
    assert resent.startswith(f"## 1. {SECTION_TITLES[0]}") and resent.endswith(
        f"## 2. {SECTION_TITLES[1]}\n\n"
    )
    assert session["status"] == "completed"
    assert text_after_last_retry(events, "step-3").count("## 2.") == 1


@pytest.mark.gen_test
@pytest.mark.parametrize("config_overrides", llm())
async def test_a_server_that_dies_mid_answer_is_reported_as_such_and_the_call_retried(api, http_port, model):
    model.script(Reply(drop_mid_stream=True), when="summary")
    _, events, session = await run(api, http_port)
    reason = of_type(events, "step-retry")[0]["data"]["reason"]
    assert "the connection to openai provider, model fake-model" in reason and "broke mid-answer" in reason
    assert session["status"] == "completed"


# 8. A step timeout says what the step was doing.
@pytest.mark.gen_test
@pytest.mark.parametrize("config_overrides", llm(step_timeout=1, llm_idle_timeout=30))
async def test_a_step_timeout_says_which_call_it_was_waiting_for(api, http_port, model):
    model.script(Reply(), when="section")
    model.script(Reply(text="", stall=True), when="section")
    _, events, _ = await run(api, http_port)
    error = of_type(events, "step-error")[0]["data"]["error"]
    assert error.startswith("create-content timed out after 1 s during section 2 of 3: waited ")
    assert error.endswith(" s for the first token")


# 9. Model strings are made safe for the lesson's Markdown.
@pytest.mark.gen_test
@pytest.mark.parametrize("config_overrides", llm())
async def test_short_fields_are_one_line_and_headings_inside_sections_are_demoted(api, http_port, model):
    analysis = ujson.loads(ujson.dumps(GOOD_JSON["topic_analysis"]))
    analysis["title"] = "Tides and\nthe Moon"
    analysis["objectives"][0] = "\nExplain   what causes tides"
    analysis["key_terms"][0]["definition"] = "The regular rise\n\nand fall of the sea."
    model.script(Reply(text=ujson.dumps(analysis)), when="topic_analysis")
    model.script(
        Reply(text="# What tides are\n\nThe sea rises.\n\n## A harbour\n\nBoats float."), when="section"
    )
    _, events, _ = await run(api, http_port)
    lesson = events[-1].json["data"]["result"]["lesson"]
    assert lesson.startswith("# Tides and the Moon\n")
    assert "- Explain what causes tides" in lesson and "- \n" not in lesson
    assert "The regular rise and fall of the sea." in lesson
    headings = [line for line in lesson.splitlines() if line.startswith("#")]
    assert [h for h in headings if h.startswith(("# ", "## "))] == [
        h for h in headings if not h.startswith("### ")
    ]
    assert "### What tides are" in lesson and "### A harbour" in lesson
    assert lesson.count("\n# ") == 0 and "\n## A harbour" not in lesson


# 10. Progress rises smoothly and reaches 100 by step-complete.
@pytest.mark.gen_test
@pytest.mark.parametrize("config_overrides", llm())
async def test_progress_rises_through_each_call_and_is_complete_at_step_complete(api, http_port, model):
    _, events, _ = await run(api, http_port)
    for step_id in ("step-1", "step-2", "step-3", "step-5"):
        step = step_events(events, step_id)
        progress = [e["data"]["progress"] for e in step if e["type"] == "step-delta"]
        assert progress == sorted(progress), step_id
        assert step[-1]["type"] == "step-complete" and step[-1]["data"]["progress"] == 100
    content = [e["data"]["progress"] for e in step_events(events, "step-3") if e["type"] == "step-delta"]
    assert content[-1] >= 75  # three sections done and most of the quiz, out of four calls


# 11. Usage the server did not report is marked as estimated.
@pytest.mark.gen_test
@pytest.mark.parametrize("config_overrides", llm())
async def test_usage_is_marked_estimated_when_the_server_reports_none(api, http_port, model):
    model.script(Reply(usage=False), when="summary")
    _, events, session = await run(api, http_port)
    completes = {e["data"]["step_name"]: e["data"] for e in of_type(events, "step-complete")}
    assert completes["finalize-lesson"]["usage"]["estimated"] is True
    assert "estimated" not in completes["analyze-topic"]["usage"]
    assert session["metadata"]["usage"]["estimated"] is True
