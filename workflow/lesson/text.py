"""Markdown for the lesson's parts as they stream, and for the finished lesson."""

from __future__ import annotations

from collections.abc import Mapping

from workflow.lesson.model import LessonContent, Outline, TopicAnalysis

LETTERS = "ABCDEFGH"


def _bullets(items: list[str]) -> str:
    return "\n".join(f"- {item}" for item in items)


def key_terms_text(analysis: TopicAnalysis) -> str:
    return "\n".join(f"- **{term.term}**: {term.definition}" for term in analysis.key_terms)


def analysis_text(analysis: TopicAnalysis) -> str:
    parts = [
        f"**Topic:** {analysis.title}  \n"
        f"**Kind of topic:** {analysis.category}  \n"
        f"**Level:** {analysis.level}",
        f"**Learning objectives**\n\n{_bullets(analysis.objectives)}",
        f"**Key terms**\n\n{key_terms_text(analysis)}",
    ]
    if analysis.prerequisites:
        parts.append(f"**Before you start**\n\n{_bullets(analysis.prerequisites)}")
    return "\n\n".join(parts) + "\n"


def outline_text(outline: Outline) -> str:
    lines = []
    for number, section in enumerate(outline.sections, start=1):
        lines.append(f"{number}. {section.title}")
        lines.extend(f"   - {point}" for point in section.points)
    return "\n".join(lines) + "\n"


def misconceptions_text(content: LessonContent) -> str:
    return "\n".join(
        f"- **Myth:** {m.claim}  \n  **In fact:** {m.correction}" for m in content.misconceptions
    )


def quiz_text(content: LessonContent) -> str:
    blocks = []
    for number, question in enumerate(content.quiz, start=1):
        choices = "\n".join(f"   {LETTERS[i]}. {choice}" for i, choice in enumerate(question.choices))
        blocks.append(f"{number}. {question.question}\n{choices}")
    return "\n\n".join(blocks)


def answers_text(content: LessonContent) -> str:
    return "\n".join(
        f"{number}. **{LETTERS[q.answer]}** ({q.choices[q.answer]}): {q.explanation}"
        for number, q in enumerate(content.quiz, start=1)
    )


def sections_text(outline: Outline, content: LessonContent, level: int = 2) -> str:
    hashes = "#" * level
    return "\n\n".join(
        f"{hashes} {number}. {section.title}\n\n{explanation.strip()}"
        for number, (section, explanation) in enumerate(
            zip(outline.sections, content.explanations, strict=True), start=1
        )
    )


def content_text(outline: Outline, content: LessonContent) -> str:
    """What create-content streams: the explanations, the misconceptions and the quiz."""
    return (
        f"{sections_text(outline, content)}\n\n"
        f"## Common misconceptions\n\n{misconceptions_text(content)}\n\n"
        f"## Quiz\n\n{quiz_text(content)}\n"
    )


def lesson_markdown(
    analysis: TopicAnalysis,
    outline: Outline,
    content: LessonContent,
    summary: str,
    images: Mapping[str, tuple[str, str]],
) -> str:
    """The finished lesson. `images` maps a name to (caption, URL), shown where they help most."""
    figures = "\n\n".join(f"![{caption}]({url})" for caption, url in images.values())
    parts = [
        f"# {analysis.title}",
        f"*{'An' if analysis.level[:1].lower() in 'aeiou' else 'A'} {analysis.level} lesson.*",
        f"## Learning objectives\n\n{_bullets(analysis.objectives)}",
    ]
    if analysis.prerequisites:
        parts.append(f"## Before you start\n\n{_bullets(analysis.prerequisites)}")
    parts.append(f"## Lesson map\n\n{outline_text(outline).rstrip()}")
    if figures:
        parts.append(figures)
    parts += [
        sections_text(outline, content),
        f"## Key terms\n\n{key_terms_text(analysis)}",
        f"## Common misconceptions\n\n{misconceptions_text(content)}",
        f"## Check your understanding\n\n{quiz_text(content)}",
        f"### Answers\n\n{answers_text(content)}",
        f"## Summary\n\n{summary.strip()}",
    ]
    return "\n\n".join(parts) + "\n"
