"""The SVG markup both diagrams are drawn with: a labelled box, a connector curve and the whole document."""

from __future__ import annotations

import html
import math

from workflow.lesson.diagrams.labels import BASELINE_DROP, Box, Label
from workflow.lesson.diagrams.measure import FONT_FAMILY, clean_text
from workflow.lesson.diagrams.theme import BACKGROUND

SVG_NS = "http://www.w3.org/2000/svg"


def _num(value: float) -> str:
    """A coordinate rounded to one decimal, without a trailing ".0" (and never "-0")."""
    # Formatting rounds as round() does (both round the exact binary value), without a float
    # made and formatted in between: a diagram has hundreds of coordinates.
    text = f"{value:.1f}".removesuffix(".0")
    return "0" if text == "-0" else text


def _esc(text: str) -> str:
    return html.escape(clean_text(text), quote=True)


def draw_label(
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
            # A wrapped line is clean text already (see wrap_atoms): only escaped.
            parts.append(f'<tspan x="{_num(x)}" y="{_num(baseline)}">{html.escape(line)}</tspan>')
        parts.append("</text>")
        top += block.height + label.gap
    parts.append("</g>")
    return parts


def connector(start: tuple[float, float], end: tuple[float, float], colour: str) -> str:
    """An S-curve leaving one box's right edge and entering the next box's left edge horizontally."""
    (x1, y1), (x2, y2) = start, end
    mid = (x1 + x2) / 2
    return (
        f'<path class="edge" d="M{_num(x1)} {_num(y1)} C{_num(mid)} {_num(y1)} {_num(mid)} {_num(y2)} '
        f'{_num(x2)} {_num(y2)}" fill="none" stroke="{colour}" stroke-width="2" stroke-linecap="round"/>'
    )


def document(width: float, height: float, title: str, desc: str, body: list[str]) -> str:
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
