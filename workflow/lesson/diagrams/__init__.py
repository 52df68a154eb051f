"""SVG diagrams for a lesson (outline map, key-terms cards), drawn in pure Python for generate-images.

Both diagrams are built the same way: each piece of text is measured with a per-character width
estimate, wrapped to a maximum width and capped to a few lines (measure), the box around it is sized
from the wrapped text (labels), and boxes are placed from those measured sizes so they can never
overlap (outline_map, key_terms). The output is a standalone SVG 1.1 document with its own background
(svg, theme), so it reads the same on light and dark pages.

Inputs are untrusted: every piece of text is cleaned of characters XML cannot carry and escaped, and
nothing but shapes and text is emitted (no scripts, links, styles or foreign objects).
"""

from __future__ import annotations

from workflow.lesson.diagrams.key_terms import key_terms_svg
from workflow.lesson.diagrams.measure import char_width, text_width, wrap_text
from workflow.lesson.diagrams.outline_map import outline_map_svg

__all__ = [
    "char_width",
    "key_terms_svg",
    "outline_map_svg",
    "text_width",
    "wrap_text",
]
