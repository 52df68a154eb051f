"""The outline map: a left-to-right tree of the lesson's title, its sections and each section's points."""

from __future__ import annotations

from collections.abc import Sequence

from workflow.lesson.diagrams.labels import Box, Label, TextStyle, text_block
from workflow.lesson.diagrams.measure import clean_text
from workflow.lesson.diagrams.svg import connector, document, draw_label
from workflow.lesson.diagrams.theme import DARK_FILL, MARGIN, ON_DARK, colour
from workflow.lesson.model import OutlineSection

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
    nodes = draw_label(root, root_box, "root", DARK_FILL, DARK_FILL, anchor="middle")
    for i, (head, box) in enumerate(zip(heads, head_boxes, strict=True)):
        tint, accent = colour(i)
        edges.append(connector((root_box.right, root_box.cy), (box.x, box.cy), accent))
        nodes += draw_label(head, box, "section", tint, accent)
        for point, pbox in zip(points[i], point_boxes[i], strict=True):
            edges.append(connector((box.right, box.cy), (pbox.x, pbox.cy), accent))
            nodes += draw_label(point, pbox, "point", "#ffffff", accent)
    # Curves first so boxes sit on top of their ends.
    return document(
        width, height, f"Outline: {clean_text(title)}", _outline_desc(title, sections), edges + nodes
    )
