"""The key-terms card: the lesson title in a header over a grid of cards, one term and definition each."""

from __future__ import annotations

from collections.abc import Sequence

from workflow.lesson.diagrams.labels import Box, Label, TextStyle, text_block
from workflow.lesson.diagrams.measure import clean_text
from workflow.lesson.diagrams.svg import document, draw_label
from workflow.lesson.diagrams.theme import DARK_FILL, MARGIN, ON_DARK, ON_DARK_ACCENT, SOFT_INK, colour
from workflow.lesson.model import KeyTerm

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
    body = draw_label(header, header_box, "header", DARK_FILL, DARK_FILL, anchor="middle")
    for i, (card, box) in enumerate(zip(cards, boxes, strict=True)):
        tint, accent = colour(i)
        body += draw_label(card, box, "card", tint, accent, valign="top")
    height = header_box.bottom + (CARD_GAP + grid_h if cards else 0.0) + MARGIN
    desc = f"Key terms for “{clean_text(title)}”. " + " ".join(
        f"{clean_text(kt.term)}: {clean_text(kt.definition)}." for kt in key_terms
    )
    return document(inner_w + 2 * MARGIN, height, f"Key terms: {clean_text(title)}", desc, body)
