"""The colours and margin both diagrams share, so an outline map and a key-terms card look like a set."""

from __future__ import annotations

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


def colour(index: int) -> tuple[str, str]:
    """The (tint, accent) pair of the index-th section or card; past the palette's end it starts again."""
    return PALETTE[index % len(PALETTE)]
