"""The shape of the builtin provider's texts, and which placeholders each kind of template may use."""

from __future__ import annotations

from dataclasses import dataclass

from workflow.lesson.model import KeyTerm, Misconception

# Order matters: it breaks ties when a topic matches the keywords of several categories, so the more
# specific framings come first. The last one is the fallback for topics that match no keyword.
CATEGORIES: tuple[str, ...] = (
    "skill",
    "mathematics",
    "technology",
    "science",
    "health",
    "history",
    "society",
    "arts",
    "concept",
)
FALLBACK_CATEGORY = CATEGORIES[-1]

# How many items of each list a lesson uses; a shorter list in a file would give a lesson short of them.
OBJECTIVES = 4
TERMS = 4
PREREQUISITES = 2
MISCONCEPTIONS = 3
QUIZ_SIZE = 4  # with four choices per question this lets every answer position be used exactly once
DISTRACTORS = QUIZ_SIZE - 1  # the answer is inserted at a position below QUIZ_SIZE, so no fewer will do

# The placeholders the composer fills, by kind of template. A category's framing phrases fill the
# slots of all the other templates, so they themselves may only name the topic.
TOPIC_SLOTS = frozenset({"subject", "title"})
FRAMING = ("kind", "field", "question", "lens", "recap", "exercise", "exercise_point", "next_step")
LESSON_SLOTS = TOPIC_SLOTS | frozenset(FRAMING)
SUMMARY_SLOTS = LESSON_SLOTS | {"count"}
FOREIGN_OPENING_SLOTS = LESSON_SLOTS | {"section"}
FOREIGN_POINT_SLOTS = LESSON_SLOTS | {"point"}


@dataclass(frozen=True)
class Beat:
    """One outline point and the paragraph (in one or more phrasing variants) that explains it."""

    point: str
    paragraphs: tuple[str, ...]


@dataclass(frozen=True)
class Section:
    titles: tuple[str, ...]  # phrasing variants; the first one is the section's stable key
    beats: tuple[Beat, ...]


@dataclass(frozen=True)
class Question:
    question: str
    answer: str
    distractors: tuple[str, ...]
    explanation: str


@dataclass(frozen=True)
class Category:
    """Everything category-specific: how to recognise the category and how to teach a topic in it."""

    slug: str
    keywords: tuple[str, ...]
    framing: dict[str, str]  # one phrase for each name in FRAMING
    objectives: tuple[str, ...]
    prerequisites: tuple[str, ...]
    terms: tuple[KeyTerm, ...]  # the lesson's own shapes, holding templates until they are filled
    sections: tuple[Section, ...]
    misconceptions: tuple[Misconception, ...]
    quiz: tuple[Question, ...]
    takeaways: tuple[str, ...]


@dataclass(frozen=True)
class Foreign:
    """Explains a section the composer did not write (from another provider or an edited checkpoint)."""

    opening: str
    points: tuple[str, ...]  # one per point of the section, as far as they go
    closing: str  # only for a section without points


@dataclass(frozen=True)
class Texts:
    topic_term: str  # the definition of the key term that is the topic itself
    level_prerequisite: str  # replaces the first prerequisite of a lesson above introductory level
    intro: Section
    wrap_up: Section
    foreign: Foreign
    summary_openings: tuple[str, ...]
    summary_closings: tuple[str, ...]
    categories: dict[str, Category]  # in the order of CATEGORIES
