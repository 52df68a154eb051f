"""The lesson's parts as the steps hand them to each other, and their plain-dict checkpoint form."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class KeyTerm:
    term: str
    definition: str


@dataclass(frozen=True)
class TopicAnalysis:
    """What analyze-topic learns about the topic; everything later builds on it."""

    topic: str
    title: str
    category: str
    level: str
    objectives: list[str]
    key_terms: list[KeyTerm]
    prerequisites: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class OutlineSection:
    title: str
    points: list[str]


@dataclass(frozen=True)
class Outline:
    sections: list[OutlineSection]


@dataclass(frozen=True)
class Misconception:
    claim: str
    correction: str


@dataclass(frozen=True)
class QuizQuestion:
    question: str
    choices: list[str]
    answer: int  # index into choices
    explanation: str


@dataclass(frozen=True)
class LessonContent:
    """The body of the lesson: one Markdown explanation per outline section, in order."""

    explanations: list[str]
    misconceptions: list[Misconception]
    quiz: list[QuizQuestion]


def to_dict(part: Any) -> dict[str, Any]:
    """A checkpointable plain dict of any lesson part: what `dataclasses.asdict` makes of it, at a
    fraction of the cost (asdict deep-copies every string; the parts hold only strings, numbers,
    lists and other parts). Lists are new lists, so the dict shares nothing that can change."""
    return {name: _plain(getattr(part, name)) for name in _field_names(part)}


def _plain(value: Any) -> Any:
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_dict(value)
    return value


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}  # by part class: its fields' names, looked up once


def _field_names(part: Any) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(type(part))
    if names is None:
        names = _FIELD_NAMES[type(part)] = tuple(each.name for each in dataclasses.fields(part))
    return names


def analysis_from_dict(data: dict[str, Any]) -> TopicAnalysis:
    return TopicAnalysis(
        topic=data["topic"],
        title=data["title"],
        category=data["category"],
        level=data["level"],
        objectives=list(data["objectives"]),
        key_terms=[KeyTerm(**term) for term in data["key_terms"]],
        prerequisites=list(data.get("prerequisites", [])),
    )


def outline_from_dict(data: dict[str, Any]) -> Outline:
    return Outline(sections=[OutlineSection(s["title"], list(s["points"])) for s in data["sections"]])


def content_from_dict(data: dict[str, Any]) -> LessonContent:
    return LessonContent(
        explanations=list(data["explanations"]),
        misconceptions=[Misconception(**m) for m in data["misconceptions"]],
        quiz=[QuizQuestion(**q) for q in data["quiz"]],
    )
