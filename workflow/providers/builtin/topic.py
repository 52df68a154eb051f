"""The topic as text: normalised, cut, title-cased, read as a noun phrase, and classified by keywords.

Safety: the topic is untrusted text that ends up in Markdown. It is inserted as plain text (the HTML
renderer escapes it), with all whitespace, newlines included, collapsed to single spaces and control
characters removed, and no template ever starts a line with it, so a topic cannot add headings, lists or
other block structure.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

from workflow.providers.builtin.texts import FALLBACK_CATEGORY

# Long topics are cut at a word boundary with an ellipsis wherever they are displayed. Prose repeats the
# topic in almost every paragraph, so it gets a shorter cut than the title to stay readable when someone
# pastes a whole paragraph as the topic.
TITLE_LIMIT = 80
PROSE_LIMIT = 50

_CODE_CHARS = frozenset("<>=/\\`*_[]{}|~^$%&@#:")  # a word containing one is code or markup, not prose
_KEPT_FORMAT_CHARS = frozenset("\u200c\u200d")  # zero-width (non-)joiners shape Persian, Indic and emoji
_SMALL_WORDS = frozenset(
    (
        "a", "an", "and", "as", "at", "but", "by", "for", "from", "in", "into", "nor", "of", "on", "or",
        "per", "the", "to", "via", "vs", "vs.", "with",
    )
)  # fmt: skip
_QUESTION_WORDS = frozenset(
    (
        "why", "what", "when", "where", "who", "whom", "whose", "which", "how", "is", "are", "was", "were",
        "do", "does", "did", "can", "could", "should", "would", "will",
    )
)  # fmt: skip
_HOW_TO = re.compile(
    r"^(?:how\s+(?:to|do\s+(?:i|you|we)|can\s+(?:i|you|we)|should\s+(?:i|you|we))|learn(?:ing)?\s+"
    r"(?:how\s+)?to)\s+(?P<verb>[^\W\d_]+)(?P<rest>.*)$",
    re.IGNORECASE,
)
# Question framings that wrap a plain noun phrase, which prose can use directly.
_WRAPPERS = (
    re.compile(r"^how\s+(?:does|do|did)\s+(?P<core>.+?)\s+work[\s?!.]*$", re.IGNORECASE),
    re.compile(r"^how\s+(?!(?:does|do|did)\s)(?P<core>.+?)\s+works?[\s?!.]*$", re.IGNORECASE),
    re.compile(
        r"^(?:what\s+(?:is|are|was|were)|who\s+(?:is|was|were)|(?:an?\s+)?(?:introduction|intro)\s+to|"
        r"(?:the\s+)?basics\s+of|understanding|explain)\s+(?:an?\s+)?(?P<core>.+?)[\s?!.]*$",
        re.IGNORECASE,
    ),
)
# Phrases that frame the topic rather than name it, each with a score bonus for a category.
_FRAMING_BONUSES: tuple[tuple[re.Pattern[str], str, int], ...] = (
    (_HOW_TO, "skill", 3),
    (re.compile(r"\b(?:history|origins?|rise|fall|causes)\s+of\b"), "history", 2),
    (re.compile(r"\b(?:1[0-9]{3}|20[0-9]{2})s?\b|\b(?:bc|bce|ad)\b"), "history", 1),
)
_PLURALS = ("", "s", "es")
_PRONOUNS = frozenset(("it", "this", "that", "they", "these", "those", "he", "she"))
_IRREGULAR_GERUNDS = {"quit": "quitting", "program": "programming", "ski": "skiing", "travel": "travelling"}
_DOUBLES_FINAL_CONSONANT = re.compile(r"[^aeiou]*[aeiou][^aeiouwxy]")  # run -> running, knit -> knitting


def normalize(topic: str) -> str:
    """One line of plain text: NFC, control characters dropped, every whitespace run a single space."""
    text = unicodedata.normalize("NFC", topic)
    kept = []
    for char in text:
        kind = unicodedata.category(char)
        if kind == "Cc":
            kept.append(" ")  # newlines, tabs and escapes become word breaks, never structure
        elif kind != "Cf" or char in _KEPT_FORMAT_CHARS:  # drop bidi overrides and other invisibles
            kept.append(char)
    return " ".join("".join(kept).split())


def shorten(text: str, limit: int) -> str:
    """Cut at a word boundary near ``limit`` with an ellipsis; unspaced scripts are cut at the limit."""
    if len(text) <= limit:
        return text
    cut = text[:limit]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:.-\u2013\u2014") + "…"


def _capitalize_first(word: str) -> str:
    for index, char in enumerate(word):
        if char.isalpha():
            # title() rather than upper() keeps digraphs like "ǅ" right; "ß" would become "Ss", so leave it.
            capital = char.title()
            return word[:index] + capital + word[index + 1 :] if len(capital) == 1 else word
    return word


def _keeps_own_case(word: str) -> bool:
    """Acronyms, mixed case, codes and markup-like text ("TCP", "iPhone", "x86", "<b>") stay as typed."""
    return any(c.isupper() for c in word[1:]) or any(c.isdigit() or c in _CODE_CHARS for c in word)


def title_case(text: str) -> str:
    words = text.split(" ")
    titled = []
    for index, word in enumerate(words):
        bare = word.strip("()[]{}\"'\u201c\u201d\u2018\u2019«»,:;").casefold()
        if _keeps_own_case(word):
            titled.append(word)
        elif 0 < index < len(words) - 1 and bare in _SMALL_WORDS:
            titled.append(word.lower())
        else:
            titled.append(_capitalize_first(word))
    return " ".join(titled)


def _gerund(verb: str) -> str:
    verb = verb.casefold()
    if verb in _IRREGULAR_GERUNDS:
        return _IRREGULAR_GERUNDS[verb]
    if verb.endswith("ie"):
        return verb[:-2] + "ying"
    if verb.endswith("e") and len(verb) > 2 and not verb.endswith(("ee", "ye", "oe")):
        return verb[:-1] + "ing"
    if _DOUBLES_FINAL_CONSONANT.fullmatch(verb):
        return verb + verb[-1] + "ing"
    return verb + "ing"


def subject_phrase(text: str) -> str:
    """The topic as a noun phrase that reads naturally mid-sentence in any template.

    "how to bake bread" becomes "baking bread", "what is machine learning?" becomes "machine learning",
    and any other question is quoted as "the question “…”" so templates never need to conjugate it.
    """
    how_to = _HOW_TO.match(text)
    if how_to:
        rest = how_to["rest"].rstrip(" ?!.")
        return shorten(_gerund(how_to["verb"]) + rest, PROSE_LIMIT)
    for wrapper in _WRAPPERS:
        wrapped = wrapper.match(text)
        core = wrapped["core"].strip() if wrapped else ""
        # "how does it work" or "what is ?" name nothing, so they fall through to the question form.
        if re.search(r"\w", core) and core.casefold() not in _PRONOUNS:
            return shorten(core, PROSE_LIMIT)
    first_word = text.split(" ", 1)[0].casefold()
    if text.endswith("?") or first_word in _QUESTION_WORDS:
        return f"the question “{shorten(text, PROSE_LIMIT)}”"
    if first_word in ("the", "a", "an") and text[:1].isupper():
        text = text[:1].lower() + text[1:]  # "The French Revolution" reads as "the French Revolution"
    return shorten(text, PROSE_LIMIT)


Entry = tuple[str, int]  # a category's slug, and the place of one keyword in its list


@dataclass(frozen=True)
class KeywordIndex:
    """The categories' keywords arranged so that a topic is matched by looking its words up, not by
    trying every keyword on it: the lists are long, a topic's words few.

    Single ASCII words match a whole word, its plural, or (for stems of five or more letters) any
    word starting with the stem; keywords with a space or non-ASCII letters match as substrings.
    """

    slugs: tuple[str, ...]  # in the mapping's order: ties go to the first
    forms: dict[str, list[Entry]]  # a whole word (a keyword or its plural) -> the keywords it matches
    stems: dict[str, list[Entry]]  # a stem of 5+ letters -> the keywords any word starting with it matches
    phrases: tuple[tuple[Entry, str], ...]  # keywords with a space, matched with their plurals
    scripts: tuple[tuple[Entry, str], ...]  # non-ASCII keywords (scripts without spaces, inflected words)

    @classmethod
    def build(cls, keywords: Mapping[str, Sequence[str]]) -> KeywordIndex:
        forms: dict[str, list[Entry]] = {}
        stems: dict[str, list[Entry]] = {}
        phrases: list[tuple[Entry, str]] = []
        scripts: list[tuple[Entry, str]] = []
        for slug, listed in keywords.items():
            for place, keyword in enumerate(listed):
                entry = (slug, place)
                if " " in keyword:
                    phrases.append((entry, keyword))
                elif not keyword.isascii():
                    scripts.append((entry, keyword))
                else:
                    for plural in _PLURALS:
                        forms.setdefault(keyword + plural, []).append(entry)
                    if len(keyword) >= 5:
                        stems.setdefault(keyword, []).append(entry)
        return cls(tuple(keywords), forms, stems, tuple(phrases), tuple(scripts))

    def hits(self, words: AbstractSet[str], padded: str) -> set[Entry]:
        """The keywords the topic's words (and its words joined, space-padded) match."""
        found: set[Entry] = set()
        for word in words:
            found.update(self.forms.get(word, ()))
            for end in range(5, len(word) + 1):
                found.update(self.stems.get(word[:end], ()))
        for entry, keyword in self.phrases:
            if any(f" {keyword}{plural} " in padded for plural in _PLURALS):
                found.add(entry)
        for entry, keyword in self.scripts:
            if keyword in padded:
                found.add(entry)
        return found


def classify(text: str, keywords: Mapping[str, Sequence[str]] | KeywordIndex) -> str:
    """The category whose keywords the topic matches most; ties go to the one that comes first."""
    index = keywords if isinstance(keywords, KeywordIndex) else KeywordIndex.build(keywords)
    folded = text.casefold()
    words = re.findall(r"\w+", folded)
    scores = dict.fromkeys(index.slugs, 0)
    for slug, _ in index.hits(frozenset(words), f" {' '.join(words)} "):
        scores[slug] += 1
    for pattern, slug, bonus in _FRAMING_BONUSES:
        if pattern.search(folded):
            scores[slug] += bonus
    best = max(scores, key=lambda slug: scores[slug])  # max keeps the first of equal scores: dict order
    return best if scores[best] > 0 else FALLBACK_CATEGORY


def level(text: str) -> str:
    words = set(re.findall(r"\w+", text.casefold()))
    if "advanced" in words:
        return "advanced"
    if "intermediate" in words:
        return "intermediate"
    return "introductory"
