"""The five steps of the pipeline: what each asks of the provider and what it hands on (its checkpoint)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from workflow.lesson import text as lesson_text
from workflow.lesson.model import (
    analysis_from_dict,
    content_from_dict,
    outline_from_dict,
    to_dict,
)
from workflow.providers.base import LessonProvider, TextSink
from workflow.providers.images import ImageProvider


@dataclass
class StepContext:
    topic: str
    provider: LessonProvider
    images: ImageProvider
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
    images = await ctx.images.render(analysis, outline)
    notes = [f"Drew {image.caption.lower()} ({image.name}).\n" for image in images]
    ctx.sink.expect(sum(map(len, notes)))
    urls: dict[str, str] = {}
    captions: dict[str, str] = {}
    for image, note in zip(images, notes, strict=True):
        urls[image.name] = await ctx.save_image(image.name, image.content_type, image.data)
        captions[image.name] = image.caption
        await ctx.sink.write(note)
    return StepOutcome("".join(notes), {"images": urls, "captions": captions})


async def finalize_lesson(ctx: StepContext) -> StepOutcome:
    analysis = analysis_from_dict(ctx.checkpoints["analyze-topic"])
    outline = outline_from_dict(ctx.checkpoints["generate-outline"])
    content = content_from_dict(ctx.checkpoints["create-content"])
    # An optional generate-images that failed left no checkpoint: the lesson goes without images.
    drawn = ctx.checkpoints.get("generate-images", {"images": {}, "captions": {}})
    images: dict[str, str] = drawn["images"]
    summary = await ctx.provider.write_summary(analysis, outline, content, ctx.sink)
    figures = {name: (drawn["captions"].get(name, name), url) for name, url in images.items()}
    lesson = lesson_text.lesson_markdown(analysis, outline, content, summary, figures)
    return StepOutcome(summary, {"lesson": lesson, "summary": summary, "images": images})


STEPS: dict[str, Callable[[StepContext], Awaitable[StepOutcome]]] = {
    "analyze-topic": analyze_topic,
    "generate-outline": generate_outline,
    "create-content": create_content,
    "generate-images": generate_images,
    "finalize-lesson": finalize_lesson,
}
