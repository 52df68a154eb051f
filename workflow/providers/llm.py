"""The model provider: each step asks an OpenAI-compatible chat model and streams its tokens as deltas."""

from __future__ import annotations

import logging
import re
from typing import Any

import jsonschema
import openai
import ujson

from core.errors import ProviderError
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
from workflow.providers.openai_client import ModelBacked, provider_error

log = logging.getLogger("orchestrator.llm")

FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)


class StepText:
    """A step's stream across several model calls. When one call's answer is voided, clients are
    told to start the step's text afresh, and what earlier calls produced is sent again."""

    def __init__(self, sink: TextSink) -> None:
        self.sink = sink
        self._kept: list[tuple[str, int]] = []  # (text, weight) of finished calls
        self._current: list[tuple[str, int]] = []

    async def write(self, text: str, weight: int = 1) -> None:
        self._current.append((text, weight))
        await self.sink.write(text, weight)

    def keep(self) -> None:
        self._kept += self._current
        self._current = []

    async def void_current(self, reason: str) -> None:
        self._current = []
        await self.sink.restart(reason)
        for text, weight in self._kept:
            await self.sink.write(text, weight)


class OpenAICompatibleProvider(ModelBacked, LessonProvider):
    """Chat Completions with `stream: true` against OpenAI, Ollama (/v1), vLLM, llama.cpp or LM Studio."""

    name = "openai"

    # -- the four parts of a lesson -------------------------------------------------------------

    async def analyze_topic(self, topic: str, sink: TextSink) -> TopicAnalysis:
        text = self._start("analyze-topic", sink, calls=1)
        prompt = self.prompts.render("analyze_topic", topic=topic)
        data = await self._ask_json("analyze-topic", "topic_analysis", schemas.TOPIC_ANALYSIS, prompt, text)
        return TopicAnalysis(
            topic=topic,
            title=data["title"].strip(),
            category=data["category"].strip().lower(),
            level=data["level"].strip(),
            objectives=data["objectives"],
            key_terms=[KeyTerm(t["term"], t["definition"]) for t in data["key_terms"]],
            prerequisites=data["prerequisites"],
        )

    async def generate_outline(self, analysis: TopicAnalysis, sink: TextSink) -> Outline:
        text = self._start("generate-outline", sink, calls=1)
        prompt = self.prompts.render("generate_outline", **self._about(analysis))
        data = await self._ask_json(
            "generate-outline", "lesson_outline", schemas.LESSON_OUTLINE, prompt, text
        )
        return Outline([OutlineSection(s["title"].strip(), s["points"]) for s in data["sections"]])

    async def create_content(
        self, analysis: TopicAnalysis, outline: Outline, sink: TextSink
    ) -> LessonContent:
        text = self._start("create-content", sink, calls=len(outline.sections) + 1)
        about = self._about(analysis, outline)
        explanations = []
        for number, section in enumerate(outline.sections, start=1):
            await text.write(
                f"{'' if number == 1 else chr(10) * 2}## {number}. {section.title}\n\n", weight=0
            )
            points = "\n".join(f"- {point}" for point in section.points)
            prompt = self.prompts.render(
                "section", number=number, section=section.title, points=points, **about
            )
            explanations.append(await self._ask_text("create-content", prompt, text))
            text.keep()
        await text.write("\n\n## Quiz\n\n", weight=0)
        text.keep()
        prompt = self.prompts.render("quiz", **about)
        data = await self._ask_json("create-content", "quiz", schemas.QUIZ, prompt, text, check=_check_quiz)
        return LessonContent(
            explanations=explanations,
            misconceptions=[Misconception(m["claim"], m["correction"]) for m in data["misconceptions"]],
            quiz=[
                QuizQuestion(q["question"], q["choices"], q["answer"], q["explanation"]) for q in data["quiz"]
            ],
        )

    async def write_summary(
        self, analysis: TopicAnalysis, outline: Outline, content: LessonContent, sink: TextSink
    ) -> str:
        text = self._start("finalize-lesson", sink, calls=1)
        prompt = self.prompts.render("summary", **self._about(analysis, outline))
        return await self._ask_text("finalize-lesson", prompt, text)

    # -- asking ---------------------------------------------------------------------------------

    def _start(self, step: str, sink: TextSink, calls: int) -> StepText:
        # Progress counts tokens (one per streamed chunk) against what the step's calls may use.
        sink.expect(calls * self.config.for_step(step)[2])
        return StepText(sink)

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

    async def _ask_text(self, step: str, prompt: str, text: StepText) -> str:
        answer = await self._stream(step, self._messages(prompt), text)
        if not answer.strip():
            raise ProviderError(
                f"{self.config.describe(self.config.for_step(step)[0])} returned an empty answer; "
                "check that the model's chat template produces output"
            )
        return answer.strip()

    async def _ask_json(
        self,
        step: str,
        name: str,
        schema: dict[str, Any],
        prompt: str,
        text: StepText,
        check: Any = None,
    ) -> dict[str, Any]:
        """Ask for JSON matching `schema`; an invalid answer is asked again once, with the error."""
        messages = self._messages(f"{prompt}\n\n{self._json_instruction(name, schema)}")
        for attempt in (1, 2):
            answer = await self._stream(step, messages, text, self._response_format(name, schema))
            try:
                data = _parse_json(answer, schema)
                if check is not None:
                    check(data)
                return data
            except ValueError as exc:
                if attempt == 2:
                    where = self.config.describe(self.config.for_step(step)[0])
                    raise ProviderError(
                        f"{where} gave an answer that does not match the schema twice: {exc}"
                    ) from None
                log.warning("%s: the answer did not match the schema, asking again: %s", step, exc)
                await text.void_current(f"the answer did not match the schema: {exc}")
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
            return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}
        if self.config.json_mode == "json_object":
            return {"type": "json_object", "schema": schema}  # llama.cpp's server enforces it this way
        return None

    async def _stream(
        self, step: str, messages: list[dict[str, str]], text: StepText, response_format: Any = None
    ) -> str:
        """One streamed chat completion: each content delta goes out as it comes; returns the answer."""
        model, temperature, max_tokens = self.config.for_step(step)
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
        parts: list[str] = []
        usage = None
        try:
            stream = await self.client.chat.completions.create(**request)
            async with stream:
                async for chunk in stream:
                    if chunk.usage is not None:
                        usage = chunk.usage
                    for choice in chunk.choices[:1]:
                        if choice.delta is not None and choice.delta.content:
                            parts.append(choice.delta.content)
                            await text.write(choice.delta.content)
        except openai.OpenAIError as exc:
            raise provider_error(exc, self.config.describe(model), self.config.idle_timeout) from exc
        answer = "".join(parts)
        if usage is not None:
            text.sink.record_usage(usage.prompt_tokens or 0, usage.completion_tokens or 0)
        else:
            # A server that does not report usage: count a token per chunk, and ~4 characters per
            # prompt token, so budgets still hold roughly.
            text.sink.record_usage(sum(len(m["content"]) for m in messages) // 4, len(parts))
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
        raise ValueError(f"at {path}: {exc.message}") from None
    return data


def _check_quiz(data: dict[str, Any]) -> None:
    for number, question in enumerate(data["quiz"], start=1):
        if question["answer"] >= len(question["choices"]):
            raise ValueError(f"question {number}'s answer {question['answer']} is not one of its choices")
