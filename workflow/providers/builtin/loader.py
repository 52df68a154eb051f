"""Reads the builtin provider's TOML texts once, checking every template against what the composer fills."""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Callable
from pathlib import Path
from string import Formatter
from types import TracebackType
from typing import Any, NoReturn, TypeVar

from core.errors import ContentError
from workflow.lesson.model import KeyTerm, Misconception
from workflow.providers.builtin.texts import (
    CATEGORIES,
    DISTRACTORS,
    FOREIGN_OPENING_SLOTS,
    FOREIGN_POINT_SLOTS,
    FRAMING,
    LESSON_SLOTS,
    MISCONCEPTIONS,
    OBJECTIVES,
    PREREQUISITES,
    QUIZ_SIZE,
    SUMMARY_SLOTS,
    TERMS,
    TOPIC_SLOTS,
    Beat,
    Category,
    Foreign,
    Question,
    Section,
    Texts,
)

TEXT_FOLDER = Path(__file__).with_name("text")
SHARED_FILE = "shared.toml"
CATEGORY_FOLDER = "categories"  # one file per category, named after it

T = TypeVar("T")
Slots = frozenset[str] | None  # None: the text is shown as written, so it may have no braces at all

_TYPE_NAMES = {
    str: "a string",
    list: "a list",
    dict: "a table",
    bool: "true or false",
    int: "a number",
    float: "a number",
}


def _item(key: str, index: int) -> str:
    """The name of a list item in messages, counted from 1 as someone editing the file would count."""
    return f"{key}[{index + 1}]"


def _type_name(value: object) -> str:
    return next((name for kind, name in _TYPE_NAMES.items() if type(value) is kind), "a date or time")


def _template_problem(text: str, slots: Slots) -> str | None:
    """What is wrong with the placeholders of `text`, if anything, given the ones it may use."""
    if slots is None:
        return (
            "is shown as written, so it cannot have braces or {placeholders}"
            if "{" in text or "}" in text
            else None
        )
    try:
        fields = [
            (name, spec, conversion)
            for _, name, spec, conversion in Formatter().parse(text)
            if name is not None
        ]
    except ValueError:
        return "has a brace that opens or closes no placeholder (write {{ or }} for a brace)"
    for name, spec, conversion in fields:
        if not name.isidentifier() or spec or conversion:
            written = name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
            return f"has a malformed placeholder {{{written}}}; a placeholder is a name like {{subject}}"
    unknown = sorted({name for name, _, _ in fields} - slots)
    if unknown:
        allowed = ", ".join(f"{{{name}}}" for name in sorted(slots))
        return f"uses {', '.join(f'{{{name}}}' for name in unknown)}; it can use {allowed}"
    return None


class _Table:
    """A TOML table being read: every value it hands out is checked, and errors name the file and key.

    Use it in a `with` block: leaving the block without an error rejects any key nobody asked for,
    which is how a misspelt key is caught instead of silently ignored.
    """

    def __init__(self, file: Path, key: str, data: dict[str, Any]) -> None:
        self.file = file
        self.key = key
        self.data = data
        self._asked: set[str] = set()

    def __enter__(self) -> _Table:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is None:
            for key in self.data.keys() - self._asked:
                self.fail(key, "is not a key the builtin provider reads here")

    def where(self, key: str) -> str:
        """The key's full name in the file, such as `sections[2].beats[1].point`."""
        return f"{self.key}.{key}" if self.key else key

    def fail(self, key: str, problem: str) -> NoReturn:
        raise ContentError(f"{self.file}: {self.where(key)} {problem}")

    def _value(self, key: str, kind: type[T]) -> T:
        self._asked.add(key)
        if key not in self.data:
            self.fail(key, "is missing")
        value = self.data[key]
        if not isinstance(value, kind):
            self.fail(key, f"should be {_TYPE_NAMES[kind]}, not {_type_name(value)}")
        return value

    def _list(self, key: str, at_least: int, at_most: int | None = None) -> list[Any]:
        items = self._value(key, list)
        if len(items) < at_least or (at_most is not None and len(items) > at_most):
            found = f"has {len(items)} item(s)" if items else "is empty"
            wanted = f"exactly {at_least}" if at_least == at_most else f"at least {at_least}"
            self.fail(key, f"{found}; it needs {wanted}")
        return items

    def _check(self, key: str, value: object, slots: Slots) -> str:
        if not isinstance(value, str):
            self.fail(key, f"should be a string, not {_type_name(value)}")
        # The files wrap prose freely: every run of whitespace, line breaks included, reads as one space.
        text = " ".join(value.split())
        problem = "is empty" if not text else _template_problem(text, slots)
        if problem:
            self.fail(key, problem)
        return text

    def string(self, key: str, slots: Slots) -> str:
        return self._check(key, self._value(key, str), slots)

    def strings(
        self, key: str, slots: Slots, at_least: int = 1, at_most: int | None = None
    ) -> tuple[str, ...]:
        items = self._list(key, at_least, at_most)
        return tuple(self._check(_item(key, index), item, slots) for index, item in enumerate(items))

    def table(self, key: str) -> _Table:
        return _Table(self.file, self.where(key), self._value(key, dict))

    def tables(self, key: str, read: Callable[[_Table], T], at_least: int = 1) -> tuple[T, ...]:
        """Each table of an array of tables (`[[key]]`), read by `read`."""
        found = []
        for index, item in enumerate(self._list(key, at_least)):
            if not isinstance(item, dict):
                self.fail(_item(key, index), f"should be a table, not {_type_name(item)}")
            with _Table(self.file, self.where(_item(key, index)), item) as table:
                found.append(read(table))
        return tuple(found)


def _open(path: Path) -> _Table:
    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except OSError as exc:
        raise ContentError(f"cannot read the builtin provider's text file {path}: {exc.strerror}") from exc
    except ValueError as exc:  # TOMLDecodeError, or UnicodeDecodeError for a file that is not UTF-8
        raise ContentError(f"{path} is not valid TOML: {exc}") from exc
    return _Table(path, "", data)


def _beat(table: _Table) -> Beat:
    return Beat(table.string("point", LESSON_SLOTS), table.strings("paragraphs", LESSON_SLOTS))


def _section(table: _Table) -> Section:
    return Section(table.strings("titles", None), table.tables("beats", _beat))


def _term(table: _Table) -> KeyTerm:
    return KeyTerm(table.string("term", None), table.string("definition", LESSON_SLOTS))


def _misconception(table: _Table) -> Misconception:
    return Misconception(table.string("claim", LESSON_SLOTS), table.string("correction", LESSON_SLOTS))


def _question(table: _Table) -> Question:
    return Question(
        question=table.string("question", LESSON_SLOTS),
        answer=table.string("answer", LESSON_SLOTS),
        distractors=table.strings("distractors", LESSON_SLOTS, at_least=DISTRACTORS, at_most=DISTRACTORS),
        explanation=table.string("explanation", LESSON_SLOTS),
    )


def _check_titles_are_unique(file: _Table, sections: dict[str, Section], taken: set[str]) -> None:
    """A section is found again by its title when content is written, so no two sections may share one."""
    for key, section in sections.items():
        for title in section.titles:
            if title in taken:
                file.fail(f"{key}.titles", f"repeats the title “{title}” of another section")
            taken.add(title)


def _category(path: Path, slug: str, shared_titles: set[str]) -> Category:
    with _open(path) as file:
        keywords = file.strings("keywords", None, at_least=0)
        for index, keyword in enumerate(keywords):
            if keyword != keyword.casefold():
                file.fail(
                    _item("keywords", index),
                    "should be lower case: it is matched against the lower-cased topic",
                )
        with file.table("framing") as framing:
            phrases = {name: framing.string(name, TOPIC_SLOTS) for name in FRAMING}
        with file.table("analysis") as analysis:
            objectives = analysis.strings("objectives", LESSON_SLOTS, at_least=OBJECTIVES)
            prerequisites = analysis.strings("prerequisites", LESSON_SLOTS, at_least=PREREQUISITES)
            terms = analysis.tables("terms", _term, at_least=TERMS)
        sections = file.tables("sections", _section)
        numbered = {_item("sections", index): section for index, section in enumerate(sections)}
        _check_titles_are_unique(file, numbered, set(shared_titles))
        misconceptions = file.tables("misconceptions", _misconception, at_least=MISCONCEPTIONS)
        quiz = file.tables("quiz", _question, at_least=QUIZ_SIZE)
        with file.table("summary") as summary:
            takeaways = summary.strings("takeaways", SUMMARY_SLOTS)
    return Category(
        slug, keywords, phrases, objectives, prerequisites, terms, sections, misconceptions, quiz, takeaways
    )


def load_texts(folder: Path) -> Texts:
    """Read and check shared.toml and one file per category; raises ContentError naming file and key."""
    with _open(folder / SHARED_FILE) as file:
        with file.table("analysis") as analysis:
            topic_term = analysis.string("topic_term", LESSON_SLOTS)
            level_prerequisite = analysis.string("level_prerequisite", LESSON_SLOTS)
        with file.table("intro") as table:
            intro = _section(table)
        with file.table("wrap_up") as table:
            wrap_up = _section(table)
        shared_titles: set[str] = set()
        _check_titles_are_unique(file, {"intro": intro, "wrap_up": wrap_up}, shared_titles)
        with file.table("foreign") as table:
            foreign = Foreign(
                table.string("opening", FOREIGN_OPENING_SLOTS),
                table.strings("points", FOREIGN_POINT_SLOTS),
                table.string("closing", LESSON_SLOTS),
            )
        with file.table("summary") as table:
            openings = table.strings("openings", SUMMARY_SLOTS)
            closings = table.strings("closings", SUMMARY_SLOTS)
    category_folder = folder / CATEGORY_FOLDER
    for path in sorted(category_folder.glob("*.toml")):
        if path.stem not in CATEGORIES:
            raise ContentError(f"{path} is not a category; the categories are {', '.join(CATEGORIES)}")
    categories = {
        slug: _category(category_folder / f"{slug}.toml", slug, shared_titles) for slug in CATEGORIES
    }
    return Texts(topic_term, level_prerequisite, intro, wrap_up, foreign, openings, closings, categories)


@functools.cache
def shipped_texts() -> Texts:
    """The texts under TEXT_FOLDER, read once per process: the first call checks them."""
    return load_texts(TEXT_FOLDER)
