"""Wrapped text sized into padded boxes: text styles, text blocks, labels and the boxes they are placed in."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from workflow.lesson.diagrams.measure import atoms, clean_text, text_width, word_width, wrap_atoms
from workflow.lesson.diagrams.theme import INK

# Vertical metrics of a line of text, as fractions of the font size: the line's slot height, and how
# far below the slot's centre the baseline sits so capitals look vertically centred in the slot.
LINE_HEIGHT = 1.35
BASELINE_DROP = 0.35

WORD_STRETCH = 4 / 3


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

    @cached_property
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
    cleaned = clean_text(text)
    pieces = atoms(cleaned)
    widest_word = max((word_width(a, style.size, style.bold) for a, _ in pieces), default=0)
    width = min(max(max_width, widest_word), max_width * WORD_STRETCH)
    lines, truncated = wrap_atoms(pieces, width, style.size, style.bold, max_lines)
    return TextBlock(tuple(lines), style, cleaned, truncated)


@dataclass(frozen=True)
class Label:
    """Text blocks stacked in one padded box; its size comes from the wrapped text."""

    blocks: tuple[TextBlock, ...]
    pad_x: float
    pad_y: float
    gap: float = 6.0
    min_width: float = 48.0

    # Layouts ask a label its sizes over and over while they place it: each is worked out once.
    @cached_property
    def visible_blocks(self) -> tuple[TextBlock, ...]:
        return tuple(block for block in self.blocks if block.lines)

    @cached_property
    def content_height(self) -> float:
        blocks = self.visible_blocks
        return sum(block.height for block in blocks) + self.gap * max(len(blocks) - 1, 0)

    @cached_property
    def width(self) -> float:
        return max(self.min_width, max((b.width for b in self.blocks), default=0.0) + 2 * self.pad_x)

    @cached_property
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
