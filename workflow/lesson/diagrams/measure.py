"""Measuring and wrapping label text: per-character width estimates and line breaks that honour them."""

from __future__ import annotations

import functools
import re
import unicodedata

ELLIPSIS = "…"

# A font stack that exists everywhere; the width estimate below is tuned to be generous for the widest
# common fallback (DejaVu Sans), so text measured here fits in whichever font the browser picks.
FONT_FAMILY = "system-ui, -apple-system, Segoe UI, Roboto, Helvetica Neue, Arial, Noto Sans, sans-serif"

# Glyph widths as fractions of the font size. One flat average would let "WWW" or digits overflow, so a
# few classes of characters get their own width; wide (CJK, emoji) glyphs count double the average.
AVERAGE_WIDTH = 0.62
WIDE_WIDTH = 2 * 0.6
BOLD_FACTOR = 1.1
_NARROW = frozenset("ijl.,:;'!|`")
_SEMI_NARROW = frozenset('ftr()[]{}/\\-" ')
_BROAD = frozenset("mwMW@%")
_NARROW_WIDTH, _SEMI_NARROW_WIDTH, _BROAD_WIDTH, _UPPER_WIDTH = 0.3, 0.4, 1.0, 0.75

# Characters XML 1.0 cannot carry at all (even escaped): C0 controls other than tab/newline/CR,
# surrogates and the two non-characters.
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def char_width(ch: str, font_size: float, *, bold: bool = False) -> float:
    """Estimated advance width of one character in a sans-serif font."""
    return _char_width(ch, font_size, bold)


# Labels use a handful of sizes and mostly the same few hundred characters: each width is worked
# out (two Unicode table lookups) once, not once per character of every label of every diagram.
@functools.lru_cache(maxsize=8192)
def _char_width(ch: str, font_size: float, bold: bool) -> float:
    if _is_zero_width(ch):
        return 0.0
    if _is_wide(ch):
        em = WIDE_WIDTH
    elif ch in _NARROW:
        em = _NARROW_WIDTH
    elif ch in _SEMI_NARROW:
        em = _SEMI_NARROW_WIDTH
    elif ch in _BROAD:
        em = _BROAD_WIDTH
    elif ch.isupper():
        em = _UPPER_WIDTH
    else:
        em = AVERAGE_WIDTH
    return em * font_size * (BOLD_FACTOR if bold else 1.0)


# Each line of every label is measured: one dictionary look-up per character is far cheaper than a
# cached call, which hashes its arguments each time. A text of many distinct characters (hostile, or
# a whole script) empties the table rather than grow it without bound.
_MAX_KNOWN_CHARACTERS = 8192


@functools.lru_cache(maxsize=64)
def _widths(font_size: float, bold: bool) -> dict[str, float]:
    """The widths of the characters met so far at one size and weight."""
    return {}


def text_width(text: str, font_size: float, *, bold: bool = False) -> float:
    """Estimated rendered width of a single line of text."""
    widths = _widths(font_size, bold)
    try:
        return sum(map(widths.__getitem__, text))
    except KeyError:  # a character not met before at this size
        if len(widths) > _MAX_KNOWN_CHARACTERS:
            widths.clear()
        widths.update((ch, _char_width(ch, font_size, bold)) for ch in set(text))
        return sum(map(widths.__getitem__, text))


@functools.lru_cache(maxsize=8192)
def word_width(word: str, font_size: float, bold: bool) -> float:
    """text_width of a word, kept: labels share their words (a title is in every diagram of its
    lesson), so each is summed once."""
    return text_width(word, font_size, bold=bold)


def clean_text(text: str | None) -> str:
    """The text with XML-invalid characters dropped and all whitespace runs collapsed to one space."""
    return " ".join(_XML_INVALID.sub("", text or "").split())


@functools.lru_cache(maxsize=8192)
def _is_wide(ch: str) -> bool:
    return unicodedata.east_asian_width(ch) in ("W", "F")


def _is_zero_width(ch: str) -> bool:
    # Combining marks, variation selectors and joiners take no room of their own.
    return unicodedata.category(ch) in ("Mn", "Me", "Cf")


def atoms(text: str) -> list[tuple[str, bool]]:
    """Unbreakable pieces of the text, each with whether a space precedes it.

    Words break at spaces; CJK text has no spaces, so every wide character is its own piece.
    """
    if text.isascii():  # no wide characters and no combining marks: the words are the pieces
        return [(word, True) for word in text.split(" ") if word]
    pieces: list[tuple[str, bool]] = []
    for word in text.split(" "):
        spaced, piece = True, ""
        for ch in word:
            if _is_wide(ch):
                if piece:
                    pieces.append((piece, spaced))
                    spaced, piece = False, ""
                pieces.append((ch, spaced))
                spaced = False
            elif not piece and not spaced and _is_zero_width(ch):
                # A combining mark right after a wide character belongs to it, not to a new piece.
                pieces[-1] = (pieces[-1][0] + ch, False)
            else:
                piece += ch
        if piece:
            pieces.append((piece, spaced))
    return pieces


def _split_long(atom: str, max_width: float, font_size: float, bold: bool) -> list[str]:
    """An over-long word cut into line-sized chunks (each keeps at least one character)."""
    chunks: list[str] = []
    chunk, width = "", 0.0
    for ch in atom:
        advance = _char_width(ch, font_size, bold)
        if chunk and width + advance > max_width:
            chunks.append(chunk)
            chunk, width = "", 0.0
        chunk += ch
        width += advance
    chunks.append(chunk)
    return chunks


def wrap_lines(
    text: str, max_width: float, font_size: float, bold: bool, max_lines: int
) -> tuple[list[str], bool]:
    """The cleaned text broken into lines as wrap_text does, and whether any of it had to be cut."""
    return wrap_atoms(atoms(clean_text(text)), max_width, font_size, bold, max_lines)


def wrap_atoms(
    pieces: list[tuple[str, bool]], max_width: float, font_size: float, bold: bool, max_lines: int
) -> tuple[list[str], bool]:
    """wrap_lines of a cleaned text's atoms. Each line is clean text: single spaces, none at its ends."""
    lines: list[str] = []
    line, width = "", 0.0  # the line so far, and its width: each piece is measured once, not each line
    space = _char_width(" ", font_size, bold)
    for atom, spaced in pieces:
        gap = spaced and bool(line)
        candidate_width = width + (space if gap else 0.0) + word_width(atom, font_size, bold)
        if candidate_width <= max_width:
            line, width = line + (" " if gap else "") + atom, candidate_width
            continue
        if line:
            lines.append(line)
        *full, line = _split_long(atom, max_width, font_size, bold)
        lines.extend(full)
        width = text_width(line, font_size, bold=bold)
    if line:
        lines.append(line)
    if len(lines) <= max_lines:
        return lines, False
    # Too long: keep the first lines and end the last kept one with an ellipsis that still fits.
    lines = lines[: max(max_lines, 1)]
    last = lines[-1]
    while last and text_width(last + ELLIPSIS, font_size, bold=bold) > max_width:
        last = last[:-1]
    lines[-1] = last.rstrip() + ELLIPSIS
    return lines, True


def wrap_text(
    text: str, max_width: float, font_size: float, *, bold: bool = False, max_lines: int = 3
) -> list[str]:
    """The text broken into lines no wider than max_width, at most max_lines (the last ends in "…" if cut)."""
    return wrap_lines(text, max_width, font_size, bold, max_lines)[0]
