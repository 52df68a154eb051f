"""The offline lesson composer: deterministic, well-shaped lessons for any topic a user can type."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import tomllib
import unicodedata
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import ContentError
from workflow.lesson.model import (
    LessonContent,
    Outline,
    OutlineSection,
    TopicAnalysis,
    analysis_from_dict,
    to_dict,
)
from workflow.providers.builtin import BuiltinProvider, loader
from workflow.providers.builtin import compose as composition  # `compose` is this file's lesson helper
from workflow.providers.builtin.compose import (
    CATEGORIES,
    analyze_topic,
    create_content,
    generate_outline,
    write_summary,
)
from workflow.providers.builtin.loader import load_texts, shipped_texts
from workflow.providers.builtin.provider import chunk_text

REPO_ROOT = Path(__file__).resolve().parents[1]

TOPICS = (
    "photosynthesis",
    "machine learning",
    "the French Revolution",
    "how to bake sourdough bread",
    "TCP congestion control",
    "jazz improvisation",
    "calculus",
    "inflation",
    "sleep hygiene",
    "haiku poetry",
    "love",
    "Ökologie",
    "光合作用",
    "What is machine learning?",
    "why do cats purr",
)
MEASURABLE_VERBS = frozenset(
    (
        "Explain", "Identify", "Describe", "Apply", "Connect", "Distinguish", "Sequence", "Analyse",
        "Evaluate", "Break", "Demonstrate", "Plan", "Diagnose", "State", "Check", "Compare", "Trace",
        "Define", "Classify", "Construct",
    )
)  # fmt: skip
INTRO_TITLES = frozenset(("Overview", "Getting Oriented", "The Big Picture"))
CLOSING_TITLES = frozenset(("Putting It Together", "Bringing It Together", "Applying What You Learned"))
BLOCK_MARKERS = ("#", ">", "- ", "* ", "+ ", "1. ", "|", "<")


def compose(topic: str) -> tuple[TopicAnalysis, Outline, LessonContent, str]:
    analysis = analyze_topic(topic)
    outline = generate_outline(analysis)
    content = create_content(analysis, outline)
    return analysis, outline, content, write_summary(analysis, outline, content)


def lesson_dict(topic: str) -> dict[str, Any]:
    analysis, outline, content, summary = compose(topic)
    return {
        "analysis": to_dict(analysis),
        "outline": to_dict(outline),
        "content": to_dict(content),
        "summary": summary,
    }


def texts(value: Any) -> list[str]:
    """Every string anywhere in a lesson part."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for item in value.values() for text in texts(item)]
    if isinstance(value, list | tuple):
        return [text for item in value for text in texts(item)]
    return []


def sentence_count(text: str) -> int:
    return len(re.findall(r"[.!?](?=\s|$)", text))


def test_same_topic_gives_the_same_lesson():
    for topic in TOPICS:
        assert lesson_dict(topic) == lesson_dict(topic)


def test_lesson_is_identical_across_processes_whatever_the_hash_seed():
    script = textwrap.dedent(
        f"""
        import hashlib, json
        from workflow.lesson.model import to_dict
        from workflow.providers.builtin import compose as bc

        def lesson(topic):
            a = bc.analyze_topic(topic)
            o = bc.generate_outline(a)
            c = bc.create_content(a, o)
            s = bc.write_summary(a, o, c)
            return {{"analysis": to_dict(a), "outline": to_dict(o), "content": to_dict(c), "summary": s}}

        blob = json.dumps([lesson(t) for t in {TOPICS!r}], sort_keys=True, ensure_ascii=True)
        print(hashlib.sha256(blob.encode()).hexdigest())
        """
    )
    digests = []
    for hash_seed in ("1", "2"):  # str hashes differ between these runs; the lessons must not
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        result = subprocess.run(
            [sys.executable, "-c", script],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        digests.append(result.stdout.strip())
    here = json.dumps([lesson_dict(t) for t in TOPICS], sort_keys=True, ensure_ascii=True)
    assert digests[0] == digests[1] == hashlib.sha256(here.encode()).hexdigest()


@pytest.mark.parametrize(
    ("topic", "category"),
    [
        ("photosynthesis", "science"),
        ("Ökologie", "science"),
        ("光合作用", "science"),
        ("machine learning", "technology"),
        ("TCP congestion control", "technology"),
        ("How does TCP congestion control work?", "technology"),
        ("the French Revolution", "history"),
        ("history of computing", "history"),
        ("how to bake sourdough bread", "skill"),
        ("jazz improvisation", "skill"),
        ("calculus", "mathematics"),
        ("inflation", "society"),
        ("sleep hygiene", "health"),
        ("haiku poetry", "arts"),
        ("love", "concept"),
    ],
)
def test_topics_are_classified_into_a_category(topic, category):
    assert analyze_topic(topic).category == category


def test_categories_are_a_small_fixed_set_ending_with_the_fallback():
    assert 6 <= len(CATEGORIES) <= 10
    assert CATEGORIES[-1] == "concept"
    assert {compose(topic)[0].category for topic in TOPICS} <= set(CATEGORIES)


@pytest.mark.parametrize("topic", TOPICS)
def test_analysis_has_objectives_key_terms_and_prerequisites(topic):
    analysis = analyze_topic(topic)
    assert analysis.topic == topic
    assert analysis.title
    assert analysis.level == "introductory"
    assert 3 <= len(analysis.objectives) <= 5
    assert all(objective.split()[0] in MEASURABLE_VERBS for objective in analysis.objectives)
    assert 4 <= len(analysis.key_terms) <= 6
    assert len({term.term for term in analysis.key_terms}) == len(analysis.key_terms)
    assert all(sentence_count(term.definition) == 1 for term in analysis.key_terms)
    assert 1 <= len(analysis.prerequisites) <= 3


@pytest.mark.parametrize("topic", TOPICS)
def test_outline_opens_with_an_overview_and_closes_by_applying_it(topic):
    sections = compose(topic)[1].sections
    assert 4 <= len(sections) <= 6
    assert all(2 <= len(section.points) <= 4 for section in sections)
    assert len({section.title for section in sections}) == len(sections)
    assert sections[0].title in INTRO_TITLES
    assert sections[-1].title in CLOSING_TITLES
    assert any(point.startswith("Practice:") for point in sections[-1].points)


@pytest.mark.parametrize("topic", TOPICS)
def test_there_is_one_explanation_of_two_or_three_paragraphs_per_section(topic):
    _, outline, content, _ = compose(topic)
    assert len(content.explanations) == len(outline.sections)
    for explanation in content.explanations:
        paragraphs = explanation.split("\n\n")
        assert 2 <= len(paragraphs) <= 3
        assert all(paragraph.strip() and "\n" not in paragraph for paragraph in paragraphs)
        assert 80 <= len(explanation.split()) <= 210
        assert not any(line.lstrip().startswith("#") for line in explanation.splitlines())


@pytest.mark.parametrize(
    ("topic", "mention"),
    [
        ("photosynthesis", "photosynthesis"),
        ("the French Revolution", "the French Revolution"),
        ("TCP congestion control", "TCP congestion control"),
        ("how to bake sourdough bread", "baking sourdough bread"),
        ("What is machine learning?", "machine learning"),
        ("Ökologie", "Ökologie"),
        ("光合作用", "光合作用"),
    ],
)
def test_every_explanation_mentions_the_topic(topic, mention):
    analysis, _, content, summary = compose(topic)
    for explanation in content.explanations:
        assert mention in explanation or analysis.title in explanation
    assert mention in summary


@pytest.mark.parametrize("topic", TOPICS)
def test_quiz_questions_have_one_correct_choice_in_varying_positions(topic):
    quiz = compose(topic)[2].quiz
    assert 3 <= len(quiz) <= 5
    for question in quiz:
        assert question.question.endswith("?")
        assert 3 <= len(question.choices) <= 4
        assert len(set(question.choices)) == len(question.choices)
        assert 0 <= question.answer < len(question.choices)
        assert sentence_count(question.explanation) == 1
    assert len({question.answer for question in quiz}) > 1


@pytest.mark.parametrize("topic", TOPICS)
def test_misconceptions_pair_a_claim_with_a_correction(topic):
    misconceptions = compose(topic)[2].misconceptions
    assert 2 <= len(misconceptions) <= 4
    for misconception in misconceptions:
        assert misconception.claim and misconception.correction
        assert misconception.claim != misconception.correction


@pytest.mark.parametrize("topic", TOPICS)
def test_summary_is_two_to_four_sentences(topic):
    summary = compose(topic)[3]
    assert 2 <= sentence_count(summary) <= 4
    assert "\n" not in summary


def test_different_topics_give_different_lessons():
    lessons = [json.dumps(lesson_dict(topic), sort_keys=True) for topic in TOPICS]
    assert len(set(lessons)) == len(lessons)


def test_topics_in_the_same_category_are_phrased_differently():
    # With the topic names blanked out, what is left is the choice of phrasings, titles and questions.
    def shape(topic: str) -> str:
        analysis, outline, content, summary = compose(topic)
        blob = json.dumps([to_dict(outline), to_dict(content), summary], ensure_ascii=False)
        return blob.replace(topic, "X").replace(analysis.title, "X")

    science = ["photosynthesis", "plate tectonics", "osmosis", "the water cycle", "black holes"]
    assert all(analyze_topic(topic).category == "science" for topic in science)
    assert len({shape(topic) for topic in science}) > 1


def test_spacing_and_case_do_not_change_which_phrasings_are_chosen():
    first = compose("TCP congestion control")
    second = compose("  tcp   CONGESTION\tcontrol \n")
    assert [s.title for s in first[1].sections] == [s.title for s in second[1].sections]
    assert [q.answer for q in first[2].quiz] == [q.answer for q in second[2].quiz]


@pytest.mark.parametrize(
    ("topic", "plain"),
    [
        ("line1\n# Heading", "line1 # Heading"),
        ("<img src=x onerror=alert(1)>", "<img src=x onerror=alert(1)>"),
        ("# Heading", "# Heading"),
        ("- item\n> quote\n1. step", "- item > quote 1. step"),
        ("tab\tand\r\ncontrol\x1b[31m chars\u202e", "tab and control [31m chars"),
    ],
)
def test_markup_in_the_topic_stays_plain_text_on_one_line(topic, plain):
    analysis, outline, content, summary = compose(topic)
    assert analysis.topic == topic
    assert analysis.title.casefold() == plain.casefold()
    assert plain in content.explanations[0]
    for text in texts([to_dict(outline), to_dict(content), summary]):
        for line in text.splitlines():
            assert not line.startswith(BLOCK_MARKERS), line
    single_line_parts = [to_dict(analysis) | {"topic": ""}, to_dict(outline), summary]
    single_line_parts.append([m.claim for m in content.misconceptions])
    single_line_parts.append([q.choices for q in content.quiz])
    assert not any("\n" in text or "\x1b" in text or "\u202e" in text for text in texts(single_line_parts))


def test_very_long_topics_are_cut_at_a_word_boundary_for_the_title():
    topic = " ".join(["the history of irrigation in small mountain villages"] * 8)
    analysis, _, content, summary = compose(topic)
    assert analysis.topic == topic
    assert len(analysis.title) <= 81
    assert analysis.title.endswith("…")
    cut = analysis.title[:-1]
    assert topic.casefold().startswith(cut.casefold())
    assert topic[len(cut)] == " "
    assert all(len(objective) <= 160 for objective in analysis.objectives)
    assert all(len(explanation.split()) <= 300 for explanation in content.explanations)
    assert len(summary) < 700


def test_a_topic_without_spaces_is_cut_too():
    analysis = analyze_topic("光" * 200)
    assert len(analysis.title) <= 81
    assert analysis.title.endswith("…")


@pytest.mark.parametrize(
    ("topic", "title"),
    [
        ("photosynthesis", "Photosynthesis"),
        ("how to bake sourdough bread", "How to Bake Sourdough Bread"),
        ("TCP congestion control", "TCP Congestion Control"),
        ("the French Revolution", "The French Revolution"),
        ("COVID-19 and the iPhone", "COVID-19 and the iPhone"),
        ("ökologie", "Ökologie"),
        ("光合作用", "光合作用"),
        ("  jazz \n improvisation  ", "Jazz Improvisation"),
    ],
)
def test_titles_are_title_cased_without_breaking_acronyms_or_scripts(topic, title):
    assert analyze_topic(topic).title == title


def test_non_ascii_topics_work_and_ignore_unicode_normalisation_form():
    composed = unicodedata.normalize("NFC", "Ökologie")
    decomposed = unicodedata.normalize("NFD", "Ökologie")
    assert composed != decomposed
    assert compose(composed)[1:] == compose(decomposed)[1:]
    analysis, _, content, _ = compose("光合作用")
    assert analysis.title == "光合作用"
    assert all("光合作用" in explanation for explanation in content.explanations)


def test_how_to_topics_read_as_a_skill_in_the_prose():
    analysis, _, content, _ = compose("How do I knit a scarf?")
    assert analysis.category == "skill"
    assert "knitting a scarf" in content.explanations[1]


def test_level_words_in_the_topic_set_the_level():
    analysis = analyze_topic("advanced quantum field theory")
    assert analysis.level == "advanced"
    assert "basics of advanced quantum field theory" in analysis.prerequisites[0]
    assert analyze_topic("intermediate knitting").level == "intermediate"


@pytest.mark.parametrize("topic", ["", "   ", "\n\t\r", "\u200b\u202e"])
def test_a_topic_with_no_visible_text_is_rejected(topic):
    with pytest.raises(ValueError, match="empty"):
        analyze_topic(topic)


def test_an_outline_from_elsewhere_still_gets_one_explanation_per_section():
    analysis = analyze_topic("photosynthesis")
    outline = Outline(
        sections=[
            OutlineSection("Light Reactions", ["Chlorophyll absorbs light", "Water is split"]),
            OutlineSection("The Calvin\nCycle", []),
            OutlineSection("Overview", ["anything"]),
        ]
    )
    content = create_content(analysis, outline)
    assert len(content.explanations) == 3
    assert "Chlorophyll absorbs light" in content.explanations[0]
    assert "“The Calvin Cycle”" in content.explanations[1]
    for explanation in content.explanations:
        assert "photosynthesis" in explanation
        assert 2 <= len(explanation.split("\n\n")) <= 3
    assert "6 sections" not in write_summary(analysis, outline, content)


def test_an_analysis_with_an_unknown_category_uses_the_general_template():
    analysis = TopicAnalysis("gardens", "Gardens", "no-such-category", "introductory", ["Explain x."], [])
    outline = generate_outline(analysis)
    content = create_content(analysis, outline)
    assert len(content.explanations) == len(outline.sections) >= 4


def test_a_checkpointed_analysis_gives_the_same_lesson():
    analysis = analyze_topic("the French Revolution")
    restored = analysis_from_dict(json.loads(json.dumps(to_dict(analysis))))
    assert restored == analysis
    assert generate_outline(restored) == generate_outline(analysis)
    outline = generate_outline(analysis)
    assert create_content(restored, outline) == create_content(analysis, outline)


# --------------------------------------------------------------------------------------------------
# The text files: every variant rendered, and the loader's checks
# --------------------------------------------------------------------------------------------------

SHIPPED_TEXT = REPO_ROOT / "workflow" / "providers" / "builtin" / "text"
# One topic per category; one of them above introductory level, so the level prerequisite is used too.
CATEGORY_TOPICS = {
    "skill": "knitting",
    "mathematics": "advanced calculus",
    "technology": "machine learning",
    "science": "photosynthesis",
    "health": "sleep hygiene",
    "history": "the French Revolution",
    "society": "inflation",
    "arts": "haiku poetry",
    "concept": "love",
}


class TurningDice:
    """Dice that take the `turn`-th option of everything, so turns 0, 1, 2… reach every variant."""

    def __init__(self, turn: int) -> None:
        self.turn = turn

    def pick(self, options: Sequence[Any], purpose: str) -> Any:
        return options[self.turn % len(options)]

    def shuffled(self, items: Sequence[Any], purpose: str) -> list[Any]:
        return [items[(self.turn + i) % len(items)] for i in range(len(items))]

    def sample(self, items: Sequence[Any], count: int, purpose: str) -> list[Any]:
        return self.shuffled(items, purpose)[:count]


def shipped_variants() -> list[str]:
    """Every string of the shipped files but the keywords, its whitespace collapsed as the loader does."""
    found = []
    for path in sorted(SHIPPED_TEXT.rglob("*.toml")):
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        data.pop("keywords", None)
        found += [" ".join(text.split()) for text in texts(data)]
    return found


def assert_reads_well(
    analysis: TopicAnalysis, outline: Outline, content: LessonContent, summary: str
) -> None:
    """What a typo in any one variant would break: placeholders left over, stray spaces, lost full stops."""
    for text in texts([to_dict(analysis), to_dict(outline), to_dict(content), summary]):
        assert "{" not in text and "}" not in text and "  " not in text and text == text.strip(), text
    paragraphs = [
        paragraph for explanation in content.explanations for paragraph in explanation.split("\n\n")
    ]
    sentences = [
        *analysis.objectives,
        *(term.definition for term in analysis.key_terms),
        *paragraphs,
        summary,
    ]
    sentences += [text for m in content.misconceptions for text in (m.claim, m.correction)]
    sentences += [question.explanation for question in content.quiz]
    for sentence in sentences:
        starts_a_sentence = sentence.lstrip("*")[:1].isupper()  # a paragraph may open in **bold**
        assert starts_a_sentence and sentence.endswith(".") and "\n" not in sentence, sentence
    assert all(question.question.endswith("?") for question in content.quiz)
    assert sentence_count(summary) == 3  # an opening, a takeaway and a closing


def test_every_variant_of_every_shipped_template_is_rendered(monkeypatch):
    filled: set[str] = set()
    real_fill = composition.fill

    def recording_fill(template: str, values: Mapping[str, str]) -> str:
        filled.add(template)
        return real_fill(template, values)

    monkeypatch.setattr(composition, "fill", recording_fill)
    variants = shipped_variants()
    shown_as_written: set[str] = set()  # titles and term names go into the lesson without being filled
    foreign = Outline(
        [OutlineSection("Field Notes", ["a first point", "a second point"]), OutlineSection("Aside", [])]
    )
    for turn in range(10):
        monkeypatch.setattr(composition, "Dice", lambda key, turn=turn: TurningDice(turn))
        for category, topic in CATEGORY_TOPICS.items():
            analysis, outline, content, summary = compose(topic)
            assert analysis.category == category
            assert_reads_well(analysis, outline, content, summary)
            assert_reads_well(analysis, foreign, create_content(analysis, foreign), summary)
            shown_as_written.update(section.title for section in outline.sections)
            shown_as_written.update(term.term for term in analysis.key_terms[1:])
        if set(variants) <= filled | shown_as_written:
            break
    never_rendered = set(variants) - filled - shown_as_written
    assert not never_rendered, never_rendered
    assert len(list(SHIPPED_TEXT.rglob("*.toml"))) == 1 + len(CATEGORIES)  # every file was read


@pytest.fixture
def text_folder(tmp_path: Path) -> Path:
    """A copy of the shipped texts, for a test to break one file of."""
    folder = tmp_path / "text"
    shutil.copytree(SHIPPED_TEXT, folder)
    return folder


@pytest.mark.parametrize(
    ("file", "text", "key", "problem"),
    [
        pytest.param(
            "categories/skill.toml",
            'keywords = ["knit"]\n[framing]\nkind = "a {sujet} skill"\n',
            "framing.kind",
            "uses {sujet}; it can use {subject}, {title}",
            id="unknown placeholder",
        ),
        pytest.param(
            "shared.toml",
            '[analysis]\ntopic_term = "The subject {kind"\n',
            "analysis.topic_term",
            "has a brace that opens or closes no placeholder",
            id="unclosed brace",
        ),
        pytest.param(
            "shared.toml",
            '[analysis]\ntopic_term = "Item {0} of {kind!r}"\n',
            "analysis.topic_term",
            "has a malformed placeholder {0}",
            id="numbered placeholder",
        ),
        pytest.param(
            "shared.toml",
            '[analysis]\ntopic_term = "The subject."\n',
            "analysis.level_prerequisite",
            "is missing",
            id="missing key",
        ),
        pytest.param(
            "shared.toml",
            '[analysis]\ntopic_term = "T."\nlevel_prerequisite = "P."\nlevel_prerequsite = "Q."\n',
            "analysis.level_prerequsite",
            "is not a key the builtin provider reads here",
            id="misspelt key",
        ),
        pytest.param(
            "categories/skill.toml",
            'keywords = "knit, sew"\n',
            "keywords",
            "should be a list, not a string",
            id="string for a list",
        ),
        pytest.param(
            "categories/skill.toml",
            'keywords = ["knit", 3]\n',
            "keywords[2]",
            "should be a string, not a number",
            id="number in a list of strings",
        ),
        pytest.param(
            "categories/skill.toml",
            'keywords = ["Knit"]\n',
            "keywords[1]",
            "should be lower case",
            id="upper-case keyword",
        ),
        pytest.param(
            "shared.toml",
            '[analysis]\ntopic_term = "T."\nlevel_prerequisite = "P."\n[intro]\ntitles = []\n',
            "intro.titles",
            "is empty; it needs at least 1",
            id="empty variant list",
        ),
        pytest.param(
            "shared.toml",
            '[analysis]\ntopic_term = "T."\nlevel_prerequisite = "  \\n "\n',
            "analysis.level_prerequisite",
            "is empty",
            id="blank template",
        ),
        pytest.param(
            "shared.toml",
            '[analysis]\ntopic_term = "T."\nlevel_prerequisite = "P."\n[intro]\ntitles = ["On {subject}"]\n',
            "intro.titles[1]",
            "is shown as written, so it cannot have braces",
            id="placeholder in a title",
        ),
    ],
)
def test_a_small_broken_file_is_rejected_naming_the_file_and_the_key(text_folder, file, text, key, problem):
    (text_folder / file).write_text(text, encoding="utf-8")
    with pytest.raises(ContentError) as caught:
        load_texts(text_folder)
    assert str(caught.value).startswith(f"{text_folder / file}: {key} {problem}")


@pytest.mark.parametrize(
    ("old", "new", "key", "problem"),
    [
        pytest.param(
            '    "Watching experts closely without attempting it yourself yet",\n',
            "",
            "quiz[1].distractors",
            "has 2 item(s); it needs exactly 3",
            id="a distractor short",
        ),
        pytest.param(
            'titles = ["Fundamentals", "The Foundations"]',
            'titles = ["Fundamentals", "Overview"]',
            "sections[1].titles",
            "repeats the title “Overview” of another section",
            id="a title the intro has",
        ),
        pytest.param(
            "Plateaus are normal and usually give way when the practice itself is changed.",
            "Plateaus are {normal}.",
            "quiz[4].explanation",
            "uses {normal}",
            id="a placeholder deep in the file",
        ),
    ],
)
def test_a_broken_line_in_a_full_file_is_rejected_naming_the_file_and_the_key(
    text_folder, old, new, key, problem
):
    path = text_folder / "categories" / "skill.toml"
    shipped = path.read_text(encoding="utf-8")
    assert shipped.count(old) == 1
    path.write_text(shipped.replace(old, new), encoding="utf-8")
    with pytest.raises(ContentError) as caught:
        load_texts(text_folder)
    assert str(caught.value).startswith(f"{path}: {key} {problem}")


def test_a_file_that_is_not_toml_is_rejected_naming_the_file_and_the_line(text_folder):
    path = text_folder / "categories" / "arts.toml"
    path.write_text('keywords = ["paint"]\n[framing\n', encoding="utf-8")
    with pytest.raises(ContentError, match=re.escape(f"{path} is not valid TOML") + ".*at line 2"):
        load_texts(text_folder)


def test_a_missing_category_file_is_rejected_naming_it(text_folder):
    path = text_folder / "categories" / "history.toml"
    path.unlink()
    with pytest.raises(ContentError, match=re.escape(f"cannot read the builtin provider's text file {path}")):
        load_texts(text_folder)


def test_a_file_for_no_category_is_rejected_rather_than_ignored(text_folder):
    path = text_folder / "categories" / "sports.toml"
    path.write_text("keywords = []\n", encoding="utf-8")
    with pytest.raises(ContentError, match=re.escape(f"{path} is not a category; the categories are skill,")):
        load_texts(text_folder)


def test_constructing_the_provider_reads_and_checks_the_texts(text_folder, monkeypatch):
    (text_folder / "shared.toml").write_text('[analysis]\ntopic_term = "{nope}"\n', encoding="utf-8")
    monkeypatch.setattr(loader, "TEXT_FOLDER", text_folder)
    shipped_texts.cache_clear()
    try:
        with pytest.raises(ContentError, match=re.escape("shared.toml: analysis.topic_term uses {nope}")):
            BuiltinProvider()
    finally:
        shipped_texts.cache_clear()  # the next test reads the shipped texts again


def test_the_texts_are_read_once_however_many_providers_are_made():
    BuiltinProvider()
    reads = shipped_texts.cache_info().misses
    for _ in range(3):
        BuiltinProvider()
    assert shipped_texts.cache_info().misses == reads


# --- streaming pieces ---------------------------------------------------------------------------

_TEXT = st.text(alphabet=st.sampled_from("ab \n\t\u00a0中."), max_size=300)


@settings(max_examples=300, deadline=None)
@given(text=_TEXT, size=st.integers(min_value=1, max_value=80))
def test_text_goes_out_in_whole_words_of_at_least_the_piece_size_losing_nothing(text, size):
    pieces = chunk_text(text, size)
    assert "".join(pieces) == text
    assert all(pieces)
    for piece, following in itertools.pairwise(pieces):
        assert len(piece) >= size  # only the last piece may be short
        # A piece ends where a word starts after whitespace, so no word is split between pieces...
        assert piece[-1].isspace() and not following[0].isspace()
        # ...and it is the shortest such run: cut at any earlier word start, it would be too short.
        earlier = [i for i in range(1, len(piece)) if piece[i - 1].isspace() and not piece[i].isspace()]
        assert all(i < size for i in earlier)


def test_a_lesson_at_pace_zero_still_streams_in_pieces_of_about_64_characters():
    text = "word " * 100
    pieces = chunk_text(text)
    assert [len(p) for p in pieces] == [65] * 7 + [45]


@settings(max_examples=40, deadline=None)
@given(st.text(alphabet=st.characters(categories=["L", "N"]), min_size=1, max_size=60))
def test_a_parts_plain_dict_is_what_asdict_makes_and_shares_no_list_with_it(topic):
    analysis = analyze_topic(topic)
    outline = generate_outline(analysis)
    content = create_content(analysis, outline)
    for part in (analysis, outline, content):
        plain = to_dict(part)
        assert plain == dataclasses.asdict(part)
        plain_lists = [v for v in plain.values() if isinstance(v, list)]
        part_lists = [v for v in vars(part).values() if isinstance(v, list)]
        assert not {id(v) for v in plain_lists} & {id(v) for v in part_lists}
