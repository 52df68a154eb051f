"""Model-written text made fit for the lesson's Markdown: short fields on one line, and no heading inside
a section that could break the lesson's own heading structure."""

from __future__ import annotations

import re

HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)[ \t#]*$")
FENCE = re.compile(r"^ {0,3}(```|~~~)")


def one_line(text: str) -> str:
    """A title, term or list item: every run of whitespace (line breaks included) as one space."""
    return " ".join(text.split())


def demote_headings(text: str, below: int = 2) -> str:
    """Headings in `text` at least one level below `below` (a section under `## N. Title` keeps its
    own sub-headings as `###`), leaving fenced code alone."""
    lines = []
    fenced = False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
        match = None if fenced else HEADING.match(line)
        if match:
            level = max(len(match.group(1)), below + 1)
            line = f"{'#' * level} {match.group(2)}"
        lines.append(line)
    return "\n".join(lines)
