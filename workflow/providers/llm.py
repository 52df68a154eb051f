"""The model provider: each step asks an OpenAI-compatible chat model and streams its tokens as deltas."""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import re
from typing import Any

import jsonschema
import openai
import ujson

from core.errors import ProviderError
from workflow.lesson.cleanup import demote_headings, one_line
from workflow.lesson.model import (
    KeyTerm,
    LessonContent,
    Misconception,
    Outline,
    OutlineSection,
    QuizQuestion,
    TopicAnalysis,
)
from workflow.providers import schemas
from workflow.providers.base import LessonProvider, TextSink
from workflow.providers.openai_client import ModelBacked, provider_error, readable

log = logging.getLogger("orchestrator.llm")

FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)


class StepText:
    """A step's text across its model calls, and its progress.

    Each call owns an equal share of the step's progress. Within a call the share fills along
    1 - e^(-tokens / expected), so it rises smoothly whatever the answer's length, and what a call
    leaves unfilled is counted when it ends (max_tokens is a ceiling, not an estimate). The sink
    reports 100 at step-complete.
    """

    SHARE = 1000  # progress units per call

    def __init__(self, sink: TextSink, calls: int, expected_tokens: int) -> None:
        self.sink = sink
        sink.expect(calls * self.SHARE)
        self._expected = max(expected_tokens, 1)
        self._tokens = self._filled = self._owed = 0

    def start_call(self) -> None:
        self._tokens = self._filled = 0  # an attempt again from the start: its text was voided

    async def token(self, text: str) -> None:
        self._tokens += 1
        share = self.SHARE * min(0.97, 1 - math.exp(-self._tokens / self._expected))
        await self.write(text, int(share) - self._filled)
        self._filled = int(share)

    async def write(self, text: str, weight: int = 0) -> None:
        """Text of the step's own (a heading: weight 0) or a token; it carries what ended calls owe."""
        await self.sink.write(text, weight + self._owed)
        self._owed = 0

    def end_call(self) -> None:
        """The call's answer is accepted: its share is complete, and the next call expects as long."""
        self._owed += self.SHARE - self._filled
        self._expected = max(self._tokens, 1)
        self._tokens = self._filled = 0
        self.sink.keep()


class OpenAICompatibleProvider(ModelBacked, LessonProvider):
    """Chat Completions with `stream: true` against OpenAI, Ollama (/v1), vLLM, llama.cpp or LM Studio."""

    name = "openai"

    @property
    def model(self) -> str | None:
        return self.config.model

    # -- the four parts of a lesson -------------------------------------------------------------

    async def analyze_topic(self, topic: str, sink: TextSink) -> TopicAnalysis:
        text = self._start("analyze-topic", sink, calls=1, json=True)
        prompt = self.prompts.render("analyze_topic", topic=topic)
        data = await self._ask_json(
            text, "analyze-topic", "the topic analysis", "topic_analysis", schemas.TOPIC_ANALYSIS, prompt
        )
        return TopicAnalysis(
            topic=topic,
            title=one_line(data["title"]),
            category=one_line(data["category"]).lower(),
            level=one_line(data["level"]),
            objectives=[one_line(o) for o in data["objectives"]],
            key_terms=[KeyTerm(one_line(t["term"]), one_line(t["definition"])) for t in data["key_terms"]],
            prerequisites=[one_line(p) for p in data["prerequisites"]],
        )

    async def generate_outline(self, analysis: TopicAnalysis, sink: TextSink) -> Outline:
        text = self._start("generate-outline", sink, calls=1, json=True)
        prompt = self.prompts.render("generate_outline", **self._about(analysis))
        data = await self._ask_json(
            text, "generate-outline", "the outline", "lesson_outline", schemas.LESSON_OUTLINE, prompt
        )
        return Outline(
            [
                OutlineSection(one_line(s["title"]), [one_line(p) for p in s["points"]])
                for s in data["sections"]
            ]
        )

    async def create_content(
        self, analysis: TopicAnalysis, outline: Outline, sink: TextSink
    ) -> LessonContent:
        count = len(outline.sections)
        text = self._start("create-content", sink, calls=count + 1)
        about = self._about(analysis, outline)
        explanations = []
        for number, section in enumerate(outline.sections, start=1):
            await text.write(f"{'' if number == 1 else chr(10) * 2}## {number}. {section.title}\n\n")
            text.sink.keep()  # a retried call keeps its heading
            points = "\n".join(f"- {point}" for point in section.points)
            prompt = self.prompts.render(
                "section", number=number, section=section.title, points=points, **about
            )
            answer = await self._ask_text(text, "create-content", f"section {number} of {count}", prompt)
            explanations.append(demote_headings(answer))
        await text.write("\n\n## Quiz\n\n")
        text.sink.keep()
        prompt = self.prompts.render("quiz", **about)
        data = await self._ask_json(text, "create-content", "the quiz", "quiz", schemas.QUIZ, prompt)
        return LessonContent(
            explanations=explanations,
            misconceptions=[
                Misconception(one_line(m["claim"]), one_line(m["correction"])) for m in data["misconceptions"]
            ],
            quiz=[
                QuizQuestion(
                    one_line(q["question"]),
                    [one_line(c) for c in q["choices"]],
                    q["answer"],
                    one_line(q["explanation"]),
                )
                for q in data["quiz"]
            ],
        )

    async def write_summary(
        self, analysis: TopicAnalysis, outline: Outline, content: LessonContent, sink: TextSink
    ) -> str:
        text = self._start("finalize-lesson", sink, calls=1)
        prompt = self.prompts.render("summary", **self._about(analysis, outline))
        return demote_headings(await self._ask_text(text, "finalize-lesson", "the summary", prompt))

    # -- asking ---------------------------------------------------------------------------------

    def _start(self, step: str, sink: TextSink, calls: int, json: bool = False) -> StepText:
        # Until a call has finished, an answer is expected to use about an eighth of its max_tokens
        # (a 300-word section is ~400 tokens of 1024; progress passes 90% at twice the estimate).
        return StepText(sink, calls, self.config.for_step(step, json)[2] // 8)

    @staticmethod
    def _about(analysis: TopicAnalysis, outline: Outline | None = None) -> dict[str, str]:
        about = {
            "topic": analysis.topic,
            "title": analysis.title,
            "level": analysis.level,
            "objectives": "\n".join(f"- {o}" for o in analysis.objectives),
            "key_terms": "\n".join(f"- {t.term}: {t.definition}" for t in analysis.key_terms),
        }
        if outline is not None:
            about["outline"] = "\n".join(f"{i}. {s.title}" for i, s in enumerate(outline.sections, start=1))
        return about

    def _messages(self, prompt: str) -> list[dict[str, str]]:
        return [
            {"role": "system", "content": self.prompts.render("system")},
            {"role": "user", "content": prompt},
        ]

    async def _ask_text(self, text: StepText, step: str, label: str, prompt: str) -> str:
        call = functools.partial(self._stream, text, step, label, self._messages(prompt))
        answer = await text.sink.retry(call)
        if not answer.strip():
            raise ProviderError(
                f"{self.config.describe(self.config.for_step(step)[0])} returned an empty answer; "
                "check that the model's chat template produces output"
            )
        text.end_call()
        return answer.strip()

    async def _ask_json(
        self, text: StepText, step: str, label: str, name: str, schema: dict[str, Any], prompt: str
    ) -> dict[str, Any]:
        """Ask for JSON matching `schema`; an invalid answer is asked again once, with the error."""
        messages = self._messages(f"{prompt}\n\n{self._json_instruction(name, schema)}")
        response_format = self._response_format(name, schema)
        for attempt in (1, 2):
            doing = label if attempt == 1 else f"{label} (2nd JSON attempt)"
            call = functools.partial(self._stream, text, step, doing, messages, response_format, json=True)
            answer = await text.sink.retry(call)
            try:
                data = _parse_json(answer, schema)
                text.end_call()
                return data
            except ValueError as exc:
                if attempt == 2:
                    where = self.config.describe(self.config.for_step(step)[0])
                    raise ProviderError(
                        f"{where} gave an answer that does not match the schema twice: {exc}"
                    ) from None
                log.warning("%s: the answer did not match the schema, asking again: %s", step, exc)
                await text.sink.restart(f"the answer did not match the schema: {exc}")
                messages = [
                    *messages,
                    {"role": "assistant", "content": answer},
                    {
                        "role": "user",
                        "content": f"That answer is not valid: {exc}. Answer again with only "
                        f"the JSON object, matching the schema.",
                    },
                ]
        raise AssertionError("unreachable")

    def _json_instruction(self, name: str, schema: dict[str, Any]) -> str:
        if self.config.json_mode == "json_schema":
            return "Answer with the JSON object only."
        # Servers that cannot enforce the schema get it in the prompt.
        return (
            f"Answer with one JSON object only, no prose, matching this JSON schema ({name}):\n"
            f"{ujson.dumps(schema)}"
        )

    def _response_format(self, name: str, schema: dict[str, Any]) -> dict[str, Any] | None:
        if self.config.json_mode == "json_schema":
            strict = schemas.for_strict_mode(schema)
            return {"type": "json_schema", "json_schema": {"name": name, "schema": strict, "strict": True}}
        if self.config.json_mode == "json_object":
            return {"type": "json_object", "schema": schema}  # llama.cpp's server enforces it this way
        return None

    async def _stream(
        self,
        text: StepText,
        step: str,
        label: str,
        messages: list[dict[str, str]],
        response_format: Any = None,
        json: bool = False,
    ) -> str:
        """One streamed chat completion: each content delta goes out as it comes; returns the answer
        once the server has said why it ended (an answer cut short is never taken for a whole one)."""
        model, temperature, max_tokens = self.config.for_step(step, json)
        allowance = text.sink.token_allowance()
        if allowance is not None:
            max_tokens = min(max_tokens, allowance)  # never let one answer overrun the budget
        request: dict[str, Any] = {
            "model": model,
            "messages": messages,
            "temperature": temperature,
            "max_tokens": max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if response_format is not None:
            request["response_format"] = response_format
        where = self.config.describe(model)
        idle = self.config.idle_timeout
        text.sink.doing(label)
        text.start_call()
        parts: list[str] = []
        usage = finish = None
        loop = asyncio.get_running_loop()
        try:
            # Tokens are timed, not bytes: a server's keep-alive comments reset only the HTTP timeout.
            async with asyncio.timeout(idle) as silence:
                stream = await self.client.chat.completions.create(**request)
                async with stream:
                    async for chunk in stream:
                        if chunk.usage is not None:
                            usage = chunk.usage
                        for choice in chunk.choices[:1]:
                            if choice.delta is not None and choice.delta.content:
                                parts.append(choice.delta.content)
                                await text.token(choice.delta.content)
                            finish = choice.finish_reason or finish
                        silence.reschedule(loop.time() + idle)
        except TimeoutError:
            if not silence.expired():
                raise
            since = "since the last one" if parts else "since it was asked"
            raise ProviderError(f"{where} sent no token for {idle:g} s {since}", transient=True) from None
        except openai.OpenAIError as exc:
            asked_json_schema = self.config.json_mode == "json_schema" and json
            raise provider_error(exc, where, 2 * idle, asked_json_schema, mid_answer=bool(parts)) from exc
        self._count_usage(text.sink, usage, messages, len(parts))
        return self._finished(text.sink, where, label, finish, max_tokens, json, "".join(parts))

    @staticmethod
    def _count_usage(sink: TextSink, usage: Any, messages: list[dict[str, str]], chunks: int) -> None:
        if usage is not None:
            sink.record_usage(usage.prompt_tokens or 0, usage.completion_tokens or 0)
        else:
            # A server that does not report usage (llama-cpp-python ignores include_usage): a token
            # per chunk, and ~4 characters per prompt token, so budgets still hold roughly.
            prompt = sum(len(m["content"]) for m in messages) // 4
            sink.record_usage(prompt, chunks, estimated=True)

    @staticmethod
    def _finished(
        sink: TextSink, where: str, label: str, finish: str | None, max_tokens: int, json: bool, answer: str
    ) -> str:
        """The answer, if the reason the server gave for ending it makes it a whole one."""
        if finish is None:
            raise ProviderError(
                f"{where} ended without a finish_reason: the answer was cut short "
                "(llama-cpp-python's server does this when another request arrives, unless it is "
                "started with --interrupt_requests False)",
                transient=True,
            )
        if finish == "length":
            if json:
                raise ProviderError(
                    f"{where}: {label} was cut off at max_tokens={max_tokens} before its JSON was "
                    "complete; raise llm_json_max_tokens"
                )
            sink.warn(f"{label} was cut off at max_tokens={max_tokens}")
        elif finish == "content_filter":
            raise ProviderError(f"{where} stopped {label} with its content filter")
        return answer


def _parse_json(answer: str, schema: dict[str, Any]) -> dict[str, Any]:
    """The answer as JSON valid against the schema, or ValueError saying what is wrong."""
    fenced = FENCE.match(answer)
    body = fenced.group(1) if fenced else answer.strip()
    if not body:
        raise ValueError("the answer is empty")
    try:
        data = ujson.loads(body)
    except ValueError as exc:
        raise ValueError(f"it is not JSON ({exc})") from None
    try:
        jsonschema.validate(data, schema)
    except jsonschema.ValidationError as exc:
        path = "/".join(str(p) for p in exc.absolute_path) or "the top level"
        if exc.validator in ("maxLength", "minLength", "enum"):
            problem = f"{exc.validator} is {exc.validator_value}"  # not the whole runaway value
        else:
            problem = readable(exc.message, 160)
        raise ValueError(f"at {path}: {problem}") from None
    return data
