"""Composes the four parts of a lesson for any topic from the checked texts, with no network or model.

The composer is honest about what it is: it knows nothing specific about a topic, so it classifies the
topic into a broad category by keywords and fills that category's templates, which teach a sound way of
studying such a topic (inputs and mechanism for a natural process, causes and consequences for a
historical event, deliberate practice for a skill, and so on). Everything is pure and synchronous.

Determinism: every choice between phrasing variants is keyed by a SHA-256 digest of the normalised
topic, never by Python's per-process salted ``hash()`` or a random generator, so the same topic always
gives byte-for-byte the same lesson, in any process, while different topics read differently.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from workflow.lesson.model import (
    KeyTerm,
    LessonContent,
    Misconception,
    Outline,
    OutlineSection,
    QuizQuestion,
    TopicAnalysis,
)
from workflow.providers.builtin import topic as topic_text
from workflow.providers.builtin.loader import shipped_texts
from workflow.providers.builtin.texts import (
    CATEGORIES,
    FALLBACK_CATEGORY,
    MISCONCEPTIONS,
    OBJECTIVES,
    PREREQUISITES,
    QUIZ_SIZE,
    TERMS,
    Category,
    Section,
    Texts,
)

__all__ = ["CATEGORIES", "analyze_topic", "create_content", "generate_outline", "write_summary"]

T = TypeVar("T")


class Dice:
    """Stable 'random' choices: each is a SHA-256 of the topic and a purpose, identical in every process."""

    def __init__(self, key: str) -> None:
        self._seed = hashlib.sha256(key.casefold().encode("utf-8")).digest()

    def number(self, purpose: str) -> int:
        return int.from_bytes(hashlib.sha256(self._seed + purpose.encode("utf-8")).digest()[:8], "big")

    def pick(self, options: Sequence[T], purpose: str) -> T:
        return options[self.number(purpose) % len(options)]

    def shuffled(self, items: Sequence[T], purpose: str) -> list[T]:
        order = sorted(range(len(items)), key=lambda i: self.number(f"{purpose}:{i}"))
        return [items[i] for i in order]

    def sample(self, items: Sequence[T], count: int, purpose: str) -> list[T]:
        """``count`` items, kept in their original order (objectives stay ordered from simple to hard)."""
        keep = sorted(sorted(range(len(items)), key=lambda i: self.number(f"{purpose}:{i}"))[:count])
        return [items[i] for i in keep]


def fill(template: str, values: Mapping[str, str]) -> str:
    """Every template is filled here; the loader has checked it names only placeholders in `values`."""
    return template.format_map(values)


@dataclass(frozen=True)
class _Context:
    """What every step needs about one topic: its texts, its dice and the values of the placeholders."""

    texts: Texts
    category: Category
    dice: Dice
    slots: dict[str, str]

    def fill(self, template: str, **extra: str) -> str:
        return fill(template, {**self.slots, **extra})

    def sections(self) -> tuple[Section, ...]:
        return (self.texts.intro, *self.category.sections, self.texts.wrap_up)


def _context(topic: str, category: str, title: str | None = None) -> _Context:
    texts = shipped_texts()
    text = topic_text.normalize(topic) or topic_text.normalize(title or "")
    chosen = texts.categories.get(category, texts.categories[FALLBACK_CATEGORY])
    shown_title = topic_text.normalize(title or "") or topic_text.title_case(text)
    base = {
        "subject": topic_text.subject_phrase(text),
        "title": topic_text.shorten(shown_title, topic_text.TITLE_LIMIT),
    }
    # Framing phrases may mention {subject} themselves, so they are filled before the templates use them.
    slots = {**base, **{name: fill(phrase, base) for name, phrase in chosen.framing.items()}}
    return _Context(texts, chosen, Dice(text), slots)


def _analysis_context(analysis: TopicAnalysis) -> _Context:
    return _context(analysis.topic, analysis.category, analysis.title)


_indexed: tuple[Texts | None, topic_text.KeywordIndex | None] = (None, None)


def _keyword_index(texts: Texts) -> topic_text.KeywordIndex:
    """The categories' keywords of these texts, indexed once (again only if the texts are read again)."""
    global _indexed
    indexed_texts, index = _indexed
    if indexed_texts is not texts or index is None:
        keywords = {slug: category.keywords for slug, category in texts.categories.items()}
        index = topic_text.KeywordIndex.build(keywords)
        _indexed = (texts, index)
    return index


def analyze_topic(topic: str) -> TopicAnalysis:
    """Classify the topic and derive its title, level, objectives, key terms and prerequisites.

    Raises ``ValueError`` for a topic with no visible text.
    """
    text = topic_text.normalize(topic)
    if not text:
        raise ValueError("topic is empty")
    category = topic_text.classify(text, _keyword_index(shipped_texts()))
    level = topic_text.level(text)
    ctx = _context(topic, category)
    chosen, dice = ctx.category, ctx.dice
    terms = [KeyTerm(ctx.slots["title"], ctx.fill(ctx.texts.topic_term))]
    terms += [KeyTerm(t.term, ctx.fill(t.definition)) for t in dice.sample(chosen.terms, TERMS, "terms")]
    prerequisites = [ctx.fill(p) for p in dice.sample(chosen.prerequisites, PREREQUISITES, "prerequisites")]
    if level != "introductory":
        prerequisites = [ctx.fill(ctx.texts.level_prerequisite), *prerequisites[:1]]
    return TopicAnalysis(
        topic=topic,
        title=ctx.slots["title"],
        category=category,
        level=level,
        objectives=[ctx.fill(o) for o in dice.sample(chosen.objectives, OBJECTIVES, "objectives")],
        key_terms=terms,
        prerequisites=prerequisites,
    )


def generate_outline(analysis: TopicAnalysis) -> Outline:
    """An introduction, the category's own sections, and a closing section that applies the lesson."""
    ctx = _analysis_context(analysis)
    return Outline(
        sections=[
            OutlineSection(
                title=ctx.dice.pick(section.titles, f"title:{section.titles[0]}"),
                points=[ctx.fill(beat.point) for beat in section.beats],
            )
            for section in ctx.sections()
        ]
    )


def _explanation(section: OutlineSection, ctx: _Context, by_title: dict[str, Section]) -> str:
    template = by_title.get(section.title)
    if template is not None:
        paragraphs = [
            ctx.fill(ctx.dice.pick(beat.paragraphs, f"paragraph:{template.titles[0]}:{index}"))
            for index, beat in enumerate(template.beats)
        ]
    else:
        # A section we did not write: explain its own title and first points as plain text.
        foreign = ctx.texts.foreign
        points = [topic_text.normalize(p).rstrip(".") for p in section.points if topic_text.normalize(p)]
        paragraphs = [ctx.fill(foreign.opening, section=topic_text.normalize(section.title))]
        paragraphs += [
            ctx.fill(pattern, point=point) for pattern, point in zip(foreign.points, points, strict=False)
        ]
        if not points:
            paragraphs.append(ctx.fill(foreign.closing))
    return "\n\n".join(paragraphs)


def create_content(analysis: TopicAnalysis, outline: Outline) -> LessonContent:
    """One Markdown explanation per outline section, in order, plus misconceptions and a quiz."""
    ctx = _analysis_context(analysis)
    chosen, dice = ctx.category, ctx.dice
    by_title = {title: section for section in ctx.sections() for title in section.titles}
    explanations = [_explanation(section, ctx, by_title) for section in outline.sections]
    misconceptions = [
        Misconception(ctx.fill(m.claim), ctx.fill(m.correction))
        for m in dice.sample(chosen.misconceptions, MISCONCEPTIONS, "misconceptions")
    ]
    questions = dice.sample(chosen.quiz, QUIZ_SIZE, "quiz")
    # A shuffled range hands every question a different answer slot, so position is never a giveaway.
    positions = dice.shuffled(range(QUIZ_SIZE), "answer-positions")
    quiz = []
    for question, position in zip(questions, positions, strict=True):
        choices = [
            ctx.fill(d) for d in dice.shuffled(question.distractors, f"distractors:{question.question}")
        ]
        choices.insert(position, ctx.fill(question.answer))
        quiz.append(
            QuizQuestion(ctx.fill(question.question), choices, position, ctx.fill(question.explanation))
        )
    return LessonContent(explanations=explanations, misconceptions=misconceptions, quiz=quiz)


def write_summary(analysis: TopicAnalysis, outline: Outline, content: LessonContent) -> str:
    """Three sentences: what the lesson covered, the key takeaway, and what to do next."""
    del content  # the summary describes the lesson's shape, which the outline and analysis already give
    ctx = _analysis_context(analysis)
    sentences = (
        ctx.dice.pick(ctx.texts.summary_openings, "summary-opening"),
        ctx.dice.pick(ctx.category.takeaways, "summary-takeaway"),
        ctx.dice.pick(ctx.texts.summary_closings, "summary-closing"),
    )
    return " ".join(ctx.fill(sentence, count=str(len(outline.sections))) for sentence in sentences)
