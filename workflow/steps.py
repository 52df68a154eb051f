"""The five steps of the pipeline: what each asks of the provider and what it hands on (its checkpoint)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from workflow import diagrams, lesson_text
from workflow.lesson import (
    analysis_from_dict,
    content_from_dict,
    outline_from_dict,
    to_dict,
)
from workflow.providers.base import LessonProvider, TextSink

SVG = "image/svg+xml"

# name -> caption, in the order the lesson shows them
DIAGRAMS = {"outline-map.svg": "Lesson map", "key-terms.svg": "Key terms"}


@dataclass
class StepContext:
    topic: str
    provider: LessonProvider
    sink: TextSink
    checkpoints: dict[str, dict[str, Any]]  # what the completed steps handed on, by step name
    save_image: Callable[[str, str, bytes], Awaitable[str]]  # (name, content type, data) -> URL


@dataclass
class StepOutcome:
    output: str  # shown in step-complete and kept on the step
    checkpoint: dict[str, Any]  # what later steps need; enough to resume after this step


async def analyze_topic(ctx: StepContext) -> StepOutcome:
    analysis = await ctx.provider.analyze_topic(ctx.topic, ctx.sink)
    return StepOutcome(lesson_text.analysis_text(analysis), to_dict(analysis))


async def generate_outline(ctx: StepContext) -> StepOutcome:
    analysis = analysis_from_dict(ctx.checkpoints["analyze-topic"])
    outline = await ctx.provider.generate_outline(analysis, ctx.sink)
    return StepOutcome(lesson_text.outline_text(outline), to_dict(outline))


async def create_content(ctx: StepContext) -> StepOutcome:
    analysis = analysis_from_dict(ctx.checkpoints["analyze-topic"])
    outline = outline_from_dict(ctx.checkpoints["generate-outline"])
    content = await ctx.provider.create_content(analysis, outline, ctx.sink)
    if len(content.explanations) != len(outline.sections):
        raise ValueError(
            f"the content has {len(content.explanations)} explanations for {len(outline.sections)} sections"
        )
    return StepOutcome(lesson_text.content_text(outline, content), to_dict(content))


async def generate_images(ctx: StepContext) -> StepOutcome:
    analysis = analysis_from_dict(ctx.checkpoints["analyze-topic"])
    outline = outline_from_dict(ctx.checkpoints["generate-outline"])
    renderers = {
        "outline-map.svg": lambda: diagrams.outline_map_svg(analysis.title, outline.sections),
        "key-terms.svg": lambda: diagrams.key_terms_svg(analysis.title, analysis.key_terms),
    }
    notes = [f"Drew {DIAGRAMS[name].lower()} ({name}).\n" for name in renderers]
    ctx.sink.expect(sum(map(len, notes)))
    urls: dict[str, str] = {}
    for (name, render), note in zip(renderers.items(), notes, strict=True):
        urls[name] = await ctx.save_image(name, SVG, render().encode())
        await ctx.sink.write(note)
    return StepOutcome("".join(notes), {"images": urls})


async def finalize_lesson(ctx: StepContext) -> StepOutcome:
    analysis = analysis_from_dict(ctx.checkpoints["analyze-topic"])
    outline = outline_from_dict(ctx.checkpoints["generate-outline"])
    content = content_from_dict(ctx.checkpoints["create-content"])
    images: dict[str, str] = ctx.checkpoints["generate-images"]["images"]
    summary = await ctx.provider.write_summary(analysis, outline, content, ctx.sink)
    figures = {name: (DIAGRAMS.get(name, name), url) for name, url in images.items()}
    lesson = lesson_text.lesson_markdown(analysis, outline, content, summary, figures)
    return StepOutcome(summary, {"lesson": lesson, "summary": summary, "images": images})


STEPS: dict[str, Callable[[StepContext], Awaitable[StepOutcome]]] = {
    "analyze-topic": analyze_topic,
    "generate-outline": generate_outline,
    "create-content": create_content,
    "generate-images": generate_images,
    "finalize-lesson": finalize_lesson,
}
