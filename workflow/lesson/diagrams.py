"""SVG diagrams for a lesson (outline map, key-terms cards), drawn in pure Python for generate-images.

Both diagrams are built the same way: each piece of text is measured with a per-character width
estimate, wrapped to a maximum width and capped to a few lines, the box around it is sized from the
wrapped text, and boxes are placed from those measured sizes so they can never overlap. The output is
a standalone SVG 1.1 document with its own background, so it reads the same on light and dark pages.

Inputs are untrusted: every piece of text is cleaned of characters XML cannot carry and escaped, and
nothing but shapes and text is emitted (no scripts, links, styles or foreign objects).
"""

from __future__ import annotations

import html
import math
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from workflow.lesson.model import KeyTerm, OutlineSection

__all__ = [
    "char_width",
    "key_terms_svg",
    "outline_map_svg",
    "text_width",
    "wrap_text",
]

SVG_NS = "http://www.w3.org/2000/svg"
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

# Vertical metrics of a line of text, as fractions of the font size: the line's slot height, and how
# far below the slot's centre the baseline sits so capitals look vertically centred in the slot.
LINE_HEIGHT = 1.35
BASELINE_DROP = 0.35

# Characters XML 1.0 cannot carry at all (even escaped): C0 controls other than tab/newline/CR,
# surrogates and the two non-characters.
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")

# Soft section colours as (tint fill, accent stroke) pairs, chosen in order so adjacent sections differ.
PALETTE: tuple[tuple[str, str], ...] = (
    ("#dbeafe", "#2563eb"),  # blue
    ("#dcfce7", "#16a34a"),  # green
    ("#fef3c7", "#d97706"),  # amber
    ("#fce7f3", "#db2777"),  # pink
    ("#ede9fe", "#7c3aed"),  # violet
    ("#ccfbf1", "#0d9488"),  # teal
    ("#ffedd5", "#ea580c"),  # orange
    ("#e0e7ff", "#4f46e5"),  # indigo
    ("#ecfccb", "#65a30d"),  # lime
    ("#cffafe", "#0891b2"),  # cyan
    ("#ffe4e6", "#e11d48"),  # rose
    ("#f5f5f4", "#57534e"),  # stone
)
BACKGROUND = ("#f8fafc", "#e2e8f0")
DARK_FILL = "#1e293b"
INK = "#0f172a"
SOFT_INK = "#334155"
ON_DARK = "#ffffff"
ON_DARK_ACCENT = "#93c5fd"

MARGIN = 24.0
WORD_STRETCH = 4 / 3


# --- measuring and wrapping ------------------------------------------------------------------------


def char_width(ch: str, font_size: float, *, bold: bool = False) -> float:
    """Estimated advance width of one character in a sans-serif font."""
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


def text_width(text: str, font_size: float, *, bold: bool = False) -> float:
    """Estimated rendered width of a single line of text."""
    return sum(char_width(ch, font_size, bold=bold) for ch in text)


def clean_text(text: str | None) -> str:
    """The text with XML-invalid characters dropped and all whitespace runs collapsed to one space."""
    return " ".join(_XML_INVALID.sub("", text or "").split())


def _is_wide(ch: str) -> bool:
    return unicodedata.east_asian_width(ch) in ("W", "F")


def _is_zero_width(ch: str) -> bool:
    # Combining marks, variation selectors and joiners take no room of their own.
    return unicodedata.category(ch) in ("Mn", "Me", "Cf")


def _atoms(text: str) -> list[tuple[str, bool]]:
    """Unbreakable pieces of the text, each with whether a space precedes it.

    Words break at spaces; CJK text has no spaces, so every wide character is its own piece.
    """
    atoms: list[tuple[str, bool]] = []
    for word in text.split(" "):
        spaced, piece = True, ""
        for ch in word:
            if _is_wide(ch):
                if piece:
                    atoms.append((piece, spaced))
                    spaced, piece = False, ""
                atoms.append((ch, spaced))
                spaced = False
            elif not piece and not spaced and _is_zero_width(ch):
                # A combining mark right after a wide character belongs to it, not to a new piece.
                atoms[-1] = (atoms[-1][0] + ch, False)
            else:
                piece += ch
        if piece:
            atoms.append((piece, spaced))
    return atoms


def _split_long(atom: str, max_width: float, font_size: float, bold: bool) -> list[str]:
    """An over-long word cut into line-sized chunks (each keeps at least one character)."""
    chunks: list[str] = []
    chunk = ""
    for ch in atom:
        if chunk and text_width(chunk + ch, font_size, bold=bold) > max_width:
            chunks.append(chunk)
            chunk = ""
        chunk += ch
    chunks.append(chunk)
    return chunks


def _wrap(
    text: str, max_width: float, font_size: float, bold: bool, max_lines: int
) -> tuple[list[str], bool]:
    lines: list[str] = []
    line = ""
    for atom, spaced in _atoms(clean_text(text)):
        candidate = line + (" " if spaced and line else "") + atom
        if text_width(candidate, font_size, bold=bold) <= max_width:
            line = candidate
            continue
        if line:
            lines.append(line)
        *full, line = _split_long(atom, max_width, font_size, bold)
        lines.extend(full)
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
    return _wrap(text, max_width, font_size, bold, max_lines)[0]


# --- measured labels -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TextStyle:
    size: float
    bold: bool = False
    fill: str = INK

    @property
    def line_height(self) -> float:
        return self.size * LINE_HEIGHT


@dataclass(frozen=True)
class TextBlock:
    """One wrapped piece of text in one style."""

    lines: tuple[str, ...]
    style: TextStyle
    full_text: str
    truncated: bool

    @property
    def width(self) -> float:
        return max(
            (text_width(line, self.style.size, bold=self.style.bold) for line in self.lines), default=0.0
        )

    @property
    def height(self) -> float:
        return len(self.lines) * self.style.line_height


def text_block(text: str, style: TextStyle, max_width: float, max_lines: int) -> TextBlock:
    """The text wrapped for a box whose usual width is max_width.

    A single word wider than that may widen the box by up to a third rather than be cut mid-word,
    since "Photosynthes / is" reads far worse than a slightly wider box.
    """
    widest_word = max(
        (text_width(a, style.size, bold=style.bold) for a, _ in _atoms(clean_text(text))), default=0
    )
    width = min(max(max_width, widest_word), max_width * WORD_STRETCH)
    lines, truncated = _wrap(text, width, style.size, style.bold, max_lines)
    return TextBlock(tuple(lines), style, clean_text(text), truncated)


@dataclass(frozen=True)
class Label:
    """Text blocks stacked in one padded box; its size comes from the wrapped text."""

    blocks: tuple[TextBlock, ...]
    pad_x: float
    pad_y: float
    gap: float = 6.0
    min_width: float = 48.0

    @property
    def visible_blocks(self) -> tuple[TextBlock, ...]:
        return tuple(block for block in self.blocks if block.lines)

    @property
    def content_height(self) -> float:
        blocks = self.visible_blocks
        return sum(block.height for block in blocks) + self.gap * max(len(blocks) - 1, 0)

    @property
    def width(self) -> float:
        return max(self.min_width, max((b.width for b in self.blocks), default=0.0) + 2 * self.pad_x)

    @property
    def height(self) -> float:
        # An empty label keeps the height of one line so the box still reads as a node.
        content = self.content_height or max((b.style.line_height for b in self.blocks), default=16.0)
        return content + 2 * self.pad_y

    @property
    def tooltip(self) -> str:
        """The full text, shown on hover, when wrapping had to cut any of it."""
        if not any(block.truncated for block in self.blocks):
            return ""
        return " — ".join(block.full_text for block in self.blocks if block.full_text)


@dataclass(frozen=True)
class Box:
    x: float
    y: float
    w: float
    h: float

    @property
    def right(self) -> float:
        return self.x + self.w

    @property
    def bottom(self) -> float:
        return self.y + self.h

    @property
    def cy(self) -> float:
        return self.y + self.h / 2


# --- drawing ---------------------------------------------------------------------------------------


def _num(value: float) -> str:
    """A coordinate rounded to one decimal, without a trailing ".0" (and never "-0")."""
    return f"{round(value, 1) + 0.0:.1f}".removesuffix(".0")  # + 0.0 turns -0.0 into 0.0


def _esc(text: str) -> str:
    return html.escape(clean_text(text), quote=True)


def _draw_label(
    label: Label,
    box: Box,
    kind: str,
    fill: str,
    stroke: str,
    *,
    anchor: str = "start",
    valign: str = "middle",
) -> list[str]:
    """A group with the box (a rect of class "node <kind>") and its text, one tspan per line."""
    parts = ["<g>"]
    if label.tooltip:
        parts.append(f"<title>{_esc(label.tooltip)}</title>")
    parts.append(
        f'<rect class="node {kind}" x="{_num(box.x)}" y="{_num(box.y)}" width="{_num(box.w)}" '
        f'height="{_num(box.h)}" rx="8" fill="{fill}" stroke="{stroke}" stroke-width="1.5"/>'
    )
    top = box.y + label.pad_y
    if valign == "middle":
        top = box.y + (box.h - label.content_height) / 2
    x = box.x + box.w / 2 if anchor == "middle" else box.x + label.pad_x
    for block in label.visible_blocks:
        style = block.style
        weight = ' font-weight="bold"' if style.bold else ""
        parts.append(
            f'<text font-size="{_num(style.size)}"{weight} fill="{style.fill}" text-anchor="{anchor}">'
        )
        for i, line in enumerate(block.lines):
            baseline = top + (i + 0.5) * style.line_height + BASELINE_DROP * style.size
            parts.append(f'<tspan x="{_num(x)}" y="{_num(baseline)}">{_esc(line)}</tspan>')
        parts.append("</text>")
        top += block.height + label.gap
    parts.append("</g>")
    return parts


def _connector(start: tuple[float, float], end: tuple[float, float], colour: str) -> str:
    """An S-curve leaving one box's right edge and entering the next box's left edge horizontally."""
    (x1, y1), (x2, y2) = start, end
    mid = (x1 + x2) / 2
    return (
        f'<path class="edge" d="M{_num(x1)} {_num(y1)} C{_num(mid)} {_num(y1)} {_num(mid)} {_num(y2)} '
        f'{_num(x2)} {_num(y2)}" fill="none" stroke="{colour}" stroke-width="2" stroke-linecap="round"/>'
    )


def _document(width: float, height: float, title: str, desc: str, body: list[str]) -> str:
    """The standalone SVG: size, accessible title and description, own background, then the body."""
    w, h = math.ceil(width), math.ceil(height)
    head = [
        f'<svg xmlns="{SVG_NS}" version="1.1" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" '
        f'font-family="{FONT_FAMILY}">',
        f"<title>{_esc(title)}</title>",
        f"<desc>{_esc(desc)}</desc>",
        f'<rect class="background" x="0.5" y="0.5" width="{w - 1}" height="{h - 1}" rx="12" '
        f'fill="{BACKGROUND[0]}" stroke="{BACKGROUND[1]}"/>',
    ]
    return "\n".join([*head, *body, "</svg>"]) + "\n"


def _colour(index: int) -> tuple[str, str]:
    return PALETTE[index % len(PALETTE)]


# --- outline map -----------------------------------------------------------------------------------

ROOT_TEXT = TextStyle(20, bold=True, fill=ON_DARK)
SECTION_TEXT = TextStyle(16, bold=True)
POINT_TEXT = TextStyle(14)
# Room for the fan of curves from the root; a taller tree gets a wider gap so the curves stay apart.
ROOT_GAP_RANGE = (56.0, 96.0)
SECTION_POINT_GAP = 40.0
POINT_GAP = 10.0
SECTION_GAP = 22.0  # wider than POINT_GAP so each section's group of points reads as one block


def _outline_labels(
    title: str, sections: Sequence[OutlineSection]
) -> tuple[Label, list[Label], list[list[Label]]]:
    root = Label((text_block(title, ROOT_TEXT, 190, 4),), pad_x=16, pad_y=12)
    heads = [Label((text_block(s.title, SECTION_TEXT, 190, 3),), pad_x=14, pad_y=10) for s in sections]
    points = [
        [Label((text_block(p, POINT_TEXT, 240, 3),), pad_x=12, pad_y=8) for p in s.points] for s in sections
    ]
    return root, heads, points


def _stack_height(labels: Sequence[Label], gap: float) -> float:
    return sum(label.height for label in labels) + gap * max(len(labels) - 1, 0)


def _outline_layout(
    root: Label, heads: list[Label], points: list[list[Label]]
) -> tuple[Box, list[Box], list[list[Box]], float, float]:
    """Left-to-right tree: root column, section column, point column. Returns boxes and canvas size.

    Each section owns a horizontal band as tall as the larger of its box and its stacked points, and
    bands are stacked, so boxes in different bands (and different columns) cannot intersect.
    """
    bands = [max(head.height, _stack_height(pts, POINT_GAP)) for head, pts in zip(heads, points, strict=True)]
    content = sum(bands) + SECTION_GAP * max(len(bands) - 1, 0)
    inner = max(content, root.height)
    low, high = ROOT_GAP_RANGE
    section_x = MARGIN + root.width + min(high, max(low, content / 20))
    point_x = section_x + max((head.width for head in heads), default=0.0) + SECTION_POINT_GAP
    head_boxes: list[Box] = []
    point_boxes: list[list[Box]] = []
    y = MARGIN + (inner - content) / 2  # a root taller than all bands: centre the bands beside it
    for head, pts, band in zip(heads, points, bands, strict=True):
        head_boxes.append(Box(section_x, y + (band - head.height) / 2, head.width, head.height))
        py = y + (band - _stack_height(pts, POINT_GAP)) / 2
        row: list[Box] = []
        for p in pts:
            row.append(Box(point_x, py, p.width, p.height))
            py += p.height + POINT_GAP
        point_boxes.append(row)
        y += band + SECTION_GAP
    root_box = Box(MARGIN, MARGIN + (inner - root.height) / 2, root.width, root.height)
    right = max([root_box.right, *(b.right for b in head_boxes), *(b.right for r in point_boxes for b in r)])
    return root_box, head_boxes, point_boxes, right + MARGIN, inner + 2 * MARGIN


def _outline_desc(title: str, sections: Sequence[OutlineSection]) -> str:
    parts = [f"Outline map of the lesson “{clean_text(title)}” with {len(sections)} sections."]
    for i, section in enumerate(sections, 1):
        points = "; ".join(clean_text(p) for p in section.points)
        parts.append(f"{i}. {clean_text(section.title)}" + (f": {points}." if points else "."))
    return " ".join(parts)


def outline_map_svg(title: str, sections: Sequence[OutlineSection]) -> str:
    """A left-to-right tree of the lesson outline: title, then its sections, then each section's points."""
    root, heads, points = _outline_labels(title, sections)
    root_box, head_boxes, point_boxes, width, height = _outline_layout(root, heads, points)
    edges: list[str] = []
    nodes = _draw_label(root, root_box, "root", DARK_FILL, DARK_FILL, anchor="middle")
    for i, (head, box) in enumerate(zip(heads, head_boxes, strict=True)):
        tint, accent = _colour(i)
        edges.append(_connector((root_box.right, root_box.cy), (box.x, box.cy), accent))
        nodes += _draw_label(head, box, "section", tint, accent)
        for point, pbox in zip(points[i], point_boxes[i], strict=True):
            edges.append(_connector((box.right, box.cy), (pbox.x, pbox.cy), accent))
            nodes += _draw_label(point, pbox, "point", "#ffffff", accent)
    # Curves first so boxes sit on top of their ends.
    return _document(
        width, height, f"Outline: {clean_text(title)}", _outline_desc(title, sections), edges + nodes
    )


# --- key terms -------------------------------------------------------------------------------------

CAPTION_TEXT = TextStyle(13, bold=True, fill=ON_DARK_ACCENT)
HEADER_TEXT = TextStyle(22, bold=True, fill=ON_DARK)
TERM_TEXT = TextStyle(16, bold=True)
DEFINITION_TEXT = TextStyle(14, fill=SOFT_INK)
CARD_TEXT_WIDTH = 230.0
CARD_MIN_WIDTH = 200.0
CARD_GAP = 16.0
HEADER_MIN_WIDTH = 420.0


def _columns(count: int) -> int:
    # Up to three side by side; four read better as a square than as three plus a straggler.
    return 2 if count == 4 else max(1, min(count, 3))


def _card_grid(cards: list[Label], origin_x: float, origin_y: float) -> tuple[list[Box], float, float]:
    """Cards in rows of equal-width cells; a row is as tall as its tallest card. Returns boxes and size."""
    cols = _columns(len(cards))
    cell_w = max([CARD_MIN_WIDTH, *(card.width for card in cards)])
    boxes: list[Box] = []
    y = origin_y
    for start in range(0, len(cards), cols):
        row = cards[start : start + cols]
        row_h = max(card.height for card in row)
        boxes += [Box(origin_x + c * (cell_w + CARD_GAP), y, cell_w, row_h) for c in range(len(row))]
        y += row_h + CARD_GAP
    grid_w = cols * cell_w + (cols - 1) * CARD_GAP if cards else 0.0
    grid_h = y - CARD_GAP - origin_y if cards else 0.0
    return boxes, grid_w, grid_h


def key_terms_svg(title: str, key_terms: Sequence[KeyTerm]) -> str:
    """A header with the lesson title over a grid of cards, each a bold term with its definition below."""
    cards = [
        Label(
            (
                text_block(kt.term, TERM_TEXT, CARD_TEXT_WIDTH, 2),
                text_block(kt.definition, DEFINITION_TEXT, CARD_TEXT_WIDTH, 6),
            ),
            pad_x=16,
            pad_y=14,
        )
        for kt in key_terms
    ]
    _, grid_w, _ = _card_grid(cards, 0, 0)  # measure first: the header wraps to the grid's width
    header_pad = 20.0
    wrap_w = max(grid_w, HEADER_MIN_WIDTH) - 2 * header_pad
    header = Label(
        (text_block("KEY TERMS", CAPTION_TEXT, wrap_w, 1), text_block(title, HEADER_TEXT, wrap_w, 3)),
        pad_x=header_pad,
        pad_y=14,
        gap=4,
    )
    inner_w = max(grid_w, header.width)
    header_box = Box(MARGIN, MARGIN, inner_w, header.height)
    grid_x = MARGIN + (inner_w - grid_w) / 2
    boxes, _, grid_h = _card_grid(cards, grid_x, header_box.bottom + CARD_GAP)
    body = _draw_label(header, header_box, "header", DARK_FILL, DARK_FILL, anchor="middle")
    for i, (card, box) in enumerate(zip(cards, boxes, strict=True)):
        tint, accent = _colour(i)
        body += _draw_label(card, box, "card", tint, accent, valign="top")
    height = header_box.bottom + (CARD_GAP + grid_h if cards else 0.0) + MARGIN
    desc = f"Key terms for “{clean_text(title)}”. " + " ".join(
        f"{clean_text(kt.term)}: {clean_text(kt.definition)}." for kt in key_terms
    )
    return _document(inner_w + 2 * MARGIN, height, f"Key terms: {clean_text(title)}", desc, body)
