"""Tests for the outline-map and key-terms SVG diagrams: valid, safe, deterministic, and nothing overlaps."""

from __future__ import annotations

import itertools
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workflow.lesson import diagrams
from workflow.lesson.diagrams import key_terms_svg, measure, outline_map_svg, text_width, wrap_text
from workflow.lesson.diagrams.labels import Label, TextStyle, text_block
from workflow.lesson.diagrams.measure import atoms, clean_text
from workflow.lesson.diagrams.svg import _num
from workflow.lesson.model import KeyTerm, OutlineSection

NS = "{http://www.w3.org/2000/svg}"
HOSTILE = "<script>alert(1)</script>"
QUOTES = "\"&'<>"
LONG = (
    "A deliberately long label that keeps going well past the width of any box in the diagram, so it has "
    "to wrap over several lines and finally be cut short with an ellipsis because it will not fit at all"
)
CJK = "光合作用是植物利用光能将二氧化碳和水转化为有机物并释放氧气的过程，这是地球上最重要的化学反应之一"  # noqa: RUF001 (a real CJK comma)


def _sections(count: int, points: int, label: str = "Section") -> list[OutlineSection]:
    return [
        OutlineSection(f"{label} {i}", [f"Point {j} of {label.lower()} {i}" for j in range(points)])
        for i in range(count)
    ]


OUTLINES: dict[str, tuple[str, list[OutlineSection]]] = {
    "typical": (
        "Photosynthesis: How Plants Make Food",
        [
            OutlineSection("What it is", ["Light becomes chemical energy", "Happens in chloroplasts"]),
            OutlineSection(
                "Light reactions", ["Chlorophyll absorbs photons", "Water is split", "ATP is made"]
            ),
            OutlineSection("Calvin cycle", ["Carbon fixation", "Reduction", "Regeneration", "Uses ATP"]),
            OutlineSection("Limiting factors", ["Light", "CO2", "Temperature"]),
            OutlineSection("Why it matters", ["Food chains", "Oxygen"]),
        ],
    ),
    "no_sections": ("Just a title", []),
    "one_section_no_points": ("Tiny", [OutlineSection("Only section", [])]),
    "many_sections_many_points": ("Many", _sections(12, 6)),
    "uneven_points": ("Uneven", [OutlineSection(f"S{i}", [LONG] * (i % 7)) for i in range(12)]),
    "long_labels": (LONG, [OutlineSection(LONG, [LONG, LONG, "short"]), OutlineSection("x", [LONG])]),
    "cjk": (CJK, [OutlineSection(CJK, [CJK, "光合作用", "mixed 中文 and English words"])]),
    "empty_strings": ("", [OutlineSection("", ["", ""]), OutlineSection("   ", [])]),
    "unbroken_words": ("W" * 80, [OutlineSection("M" * 60, ["w" * 90, "x" * 200])]),
    "hostile": (HOSTILE, [OutlineSection(HOSTILE, [QUOTES, HOSTILE]), OutlineSection(QUOTES, [])]),
}

TERM_SETS: dict[str, tuple[str, list[KeyTerm]]] = {
    "one": ("Photosynthesis", [KeyTerm("ATP", "The cell's energy currency.")]),
    "four": ("Cells", [KeyTerm(f"Term {i}", f"Definition number {i}.") for i in range(4)]),
    "five_mixed": (
        "Photosynthesis",
        [
            KeyTerm("Chlorophyll", "The green pigment that absorbs light."),
            KeyTerm("RuBisCO", LONG + " " + LONG),
            KeyTerm("ATP", ""),
            KeyTerm(LONG, "short"),
            KeyTerm("Stomata", "Pores in leaves."),
        ],
    ),
    "eight": ("Eight terms", [KeyTerm(f"Term {i}", LONG[: 20 * (i + 1)]) for i in range(8)]),
    "cjk": (CJK, [KeyTerm("光合作用", CJK), KeyTerm("叶绿素", CJK * 3)]),
    "long_title_no_terms": (LONG, []),
    "hostile": (HOSTILE, [KeyTerm(HOSTILE, QUOTES), KeyTerm(QUOTES, HOSTILE)]),
}


def _outline(name: str) -> str:
    title, sections = OUTLINES[name]
    return outline_map_svg(title, sections)


def _key_terms(name: str) -> str:
    title, terms = TERM_SETS[name]
    return key_terms_svg(title, terms)


ALL_SVGS = [pytest.param(_outline, name, id=f"outline-{name}") for name in OUTLINES] + [
    pytest.param(_key_terms, name, id=f"terms-{name}") for name in TERM_SETS
]


@dataclass(frozen=True)
class Rect:
    kind: str
    x0: float
    y0: float
    x1: float
    y1: float

    def overlaps(self, other: Rect) -> bool:
        return self.x0 < other.x1 and other.x0 < self.x1 and self.y0 < other.y1 and other.y0 < self.y1

    def contains(self, other: Rect) -> bool:
        return self.x0 <= other.x0 and other.x1 <= self.x1 and self.y0 <= other.y0 and other.y1 <= self.y1


def _parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == f"{NS}svg"
    return root


def _rect(element: ET.Element) -> Rect:
    x, y = float(element.get("x", 0)), float(element.get("y", 0))
    return Rect(
        element.get("class", ""), x, y, x + float(element.get("width")), y + float(element.get("height"))
    )


def _node_rects(root: ET.Element) -> list[Rect]:
    return [_rect(r) for r in root.iter(f"{NS}rect") if r.get("class", "").split()[:1] == ["node"]]


def _line_extents(text: ET.Element) -> list[tuple[str, Rect]]:
    """Each tspan's estimated ink box: measured width from its anchor, a full em above the baseline."""
    size = float(text.get("font-size"))
    bold = text.get("font-weight") == "bold"
    anchor = text.get("text-anchor", "start")
    lines = []
    for tspan in text.iter(f"{NS}tspan"):
        line = tspan.text or ""
        width = text_width(line, size, bold=bold)
        x, baseline = float(tspan.get("x")), float(tspan.get("y"))
        x0 = x - width / 2 if anchor == "middle" else x
        lines.append((line, Rect("line", x0, baseline - size, x0 + width, baseline + 0.3 * size)))
    return lines


def _labels(root: ET.Element) -> list[tuple[Rect, list[tuple[str, Rect]]]]:
    """Every node box with the extents of the text lines drawn in it."""
    labels = []
    for group in root.iter(f"{NS}g"):
        rects = [r for r in group.findall(f"{NS}rect") if r.get("class", "").startswith("node")]
        if rects:
            lines = [line for text in group.findall(f"{NS}text") for line in _line_extents(text)]
            labels.append((_rect(rects[0]), lines))
    return labels


def _all_text(root: ET.Element) -> list[str]:
    return [tspan.text or "" for tspan in root.iter(f"{NS}tspan")]


# --- structure -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("draw", "name"), ALL_SVGS)
def test_every_diagram_is_a_standalone_svg_with_title_and_description(draw, name):
    svg = draw(name)
    root = _parse(svg)
    assert svg.startswith('<svg xmlns="http://www.w3.org/2000/svg"')
    assert root.get("role") == "img"
    assert re.fullmatch(r"0 0 \d+ \d+", root.get("viewBox"))
    assert root.get("width") == root.get("viewBox").split()[2]
    assert root.get("height") == root.get("viewBox").split()[3]
    assert root[0].tag == f"{NS}title"
    assert root[0].text
    assert root[1].tag == f"{NS}desc"


@pytest.mark.parametrize(("draw", "name"), ALL_SVGS)
def test_every_diagram_draws_its_own_background_covering_the_canvas(draw, name):
    root = _parse(draw(name))
    background = root.find(f"{NS}rect")
    assert background.get("class") == "background"
    _, _, width, height = (float(v) for v in root.get("viewBox").split())
    assert float(background.get("width")) >= width - 1
    assert float(background.get("height")) >= height - 1


def test_outline_map_has_one_node_per_title_section_and_point():
    title, sections = OUTLINES["typical"]
    kinds = [rect.kind for rect in _node_rects(_parse(outline_map_svg(title, sections)))]
    assert kinds.count("node root") == 1
    assert kinds.count("node section") == len(sections)
    assert kinds.count("node point") == sum(len(s.points) for s in sections)


def test_outline_map_shows_the_labels_as_text():
    title, sections = OUTLINES["typical"]
    lines = _all_text(_parse(outline_map_svg(title, sections)))
    assert "What it is" in lines
    assert "Chlorophyll absorbs photons" in lines
    assert " ".join(lines).startswith("Photosynthesis: How Plants Make Food")


def test_key_terms_card_shows_the_term_in_bold_above_its_definition():
    root = _parse(key_terms_svg("Cells", [KeyTerm("Mitochondrion", "Where respiration happens.")]))
    kinds = [rect.kind for rect in _node_rects(root)]
    assert kinds == ["node header", "node card"]
    card = next(g for g in root.iter(f"{NS}g") if g.find(f"{NS}rect").get("class") == "node card")
    term, definition = card.findall(f"{NS}text")
    assert term.get("font-weight") == "bold"
    assert definition.get("font-weight") is None
    assert [t.text for t in term] == ["Mitochondrion"]
    assert [t.text for t in definition] == ["Where respiration happens."]
    assert float(term[0].get("y")) < float(definition[0].get("y"))


def test_key_terms_header_carries_the_title():
    lines = _all_text(_parse(key_terms_svg("Photosynthesis", [KeyTerm("ATP", "Energy.")])))
    assert "Photosynthesis" in lines


def test_key_terms_lays_cards_out_in_a_grid_of_up_to_three_columns():
    _, terms = TERM_SETS["eight"]
    cards = [r for r in _node_rects(_parse(key_terms_svg("t", terms))) if r.kind == "node card"]
    assert len(cards) == 8
    assert len({card.x0 for card in cards}) == 3
    assert len({card.y0 for card in cards}) == 3


# --- layout: nothing overlaps, everything fits -----------------------------------------------------


@pytest.mark.parametrize("name", OUTLINES)
def test_outline_map_labels_never_overlap(name):
    rects = _node_rects(_parse(_outline(name)))
    for a, b in itertools.combinations(rects, 2):
        assert not a.overlaps(b), (a, b)


@pytest.mark.parametrize("name", TERM_SETS)
def test_key_terms_cards_never_overlap(name):
    rects = _node_rects(_parse(_key_terms(name)))
    for a, b in itertools.combinations(rects, 2):
        assert not a.overlaps(b), (a, b)


@pytest.mark.parametrize(("draw", "name"), ALL_SVGS)
def test_every_text_line_stays_inside_its_box(draw, name):
    labels = _labels(_parse(draw(name)))
    assert labels
    for box, lines in labels:
        for text, extent in lines:
            assert box.contains(extent), (text, extent, box)


@pytest.mark.parametrize(("draw", "name"), ALL_SVGS)
def test_text_lines_within_a_box_do_not_overlap_each_other(draw, name):
    for _, lines in _labels(_parse(draw(name))):
        for (_, a), (_, b) in itertools.combinations(lines, 2):
            assert not a.overlaps(b)


@pytest.mark.parametrize(("draw", "name"), ALL_SVGS)
def test_viewbox_contains_every_rect(draw, name):
    root = _parse(draw(name))
    _, _, width, height = (float(v) for v in root.get("viewBox").split())
    canvas = Rect("canvas", 0, 0, width, height)
    for rect in root.iter(f"{NS}rect"):
        assert canvas.contains(_rect(rect))


def test_outline_map_connectors_run_from_box_edge_to_box_edge():
    root = _parse(_outline("typical"))
    rects = _node_rects(root)
    paths = [p for p in root.iter(f"{NS}path") if p.get("class") == "edge"]
    _, sections = OUTLINES["typical"]
    assert len(paths) == len(sections) + sum(len(s.points) for s in sections)
    for path in paths:
        numbers = [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?", path.get("d"))]
        (x1, y1), (x2, y2) = numbers[:2], numbers[-2:]
        assert any(abs(r.x1 - x1) < 0.11 and r.y0 < y1 < r.y1 for r in rects), "starts on a right edge"
        assert any(abs(r.x0 - x2) < 0.11 and r.y0 < y2 < r.y1 for r in rects), "ends on a left edge"


def test_long_labels_are_cut_with_an_ellipsis_and_keep_the_full_text_as_a_tooltip():
    root = _parse(outline_map_svg("Short", [OutlineSection(LONG, [LONG])]))
    lines = _all_text(root)
    assert any(line.endswith("…") for line in lines)
    assert LONG not in " ".join(lines)
    tooltips = [g.find(f"{NS}title").text for g in root.iter(f"{NS}g") if g.find(f"{NS}title") is not None]
    assert LONG in tooltips


def test_more_points_make_the_canvas_taller_rather_than_cramped():
    short = _parse(outline_map_svg("t", _sections(3, 1)))
    tall = _parse(outline_map_svg("t", _sections(3, 6)))
    assert float(tall.get("height")) > float(short.get("height"))


# --- measuring and wrapping ------------------------------------------------------------------------


@pytest.mark.parametrize("text", [LONG, CJK, "W" * 100, "mixed 中文 and English 和 words " * 5, "a"])
@pytest.mark.parametrize("bold", [False, True])
def test_wrap_text_keeps_every_line_within_the_width(text, bold):
    lines = wrap_text(text, 200, 14, bold=bold, max_lines=50)
    assert lines
    assert all(text_width(line, 14, bold=bold) <= 200 for line in lines)
    assert "".join(lines).replace(" ", "") == text.replace(" ", "")


def test_wrap_text_caps_the_lines_and_marks_the_cut_with_an_ellipsis():
    lines = wrap_text(LONG, 150, 14, max_lines=2)
    assert len(lines) == 2
    assert lines[-1].endswith("…")
    assert text_width(lines[-1], 14) <= 150


def test_wrap_text_breaks_cjk_text_between_characters():
    lines = wrap_text(CJK, 100, 14, max_lines=20)
    assert len(lines) > 1
    assert "".join(lines) == CJK


def test_wrap_text_breaks_at_spaces_when_words_fit():
    assert wrap_text("alpha beta gamma delta", 60, 14, max_lines=4) == ["alpha", "beta", "gamma", "delta"]


def test_wide_characters_count_double_and_bold_is_wider():
    assert text_width("中", 14) == pytest.approx(2 * 0.6 * 14)
    assert text_width("abc", 14, bold=True) > text_width("abc", 14)
    assert text_width("e\u0301", 14) == text_width("e", 14)  # a combining accent takes no room


def test_clean_text_drops_what_xml_cannot_carry_and_folds_whitespace():
    assert clean_text("a\x00b \t\n c\ud800\ufffe") == "ab c"
    assert clean_text(None) == ""


def test_a_combining_mark_after_a_wide_character_stays_in_that_characters_piece():
    pieces = [piece for piece, _ in atoms("中\u0301文 ab")]
    assert pieces == ["中\u0301", "文", "ab"]


# --- labels ----------------------------------------------------------------------------------------


def test_a_word_a_little_too_wide_widens_its_box_instead_of_being_cut():
    assert text_block("M" * 8, TextStyle(14), 100, 3).lines == ("M" * 8,)  # 112 wide, within a third


def test_a_word_far_too_wide_is_cut_at_a_third_over_the_width_and_ellipsised_past_the_line_cap():
    block = text_block("M" * 40, TextStyle(14), 100, 3)
    assert block.truncated
    assert block.lines[-1].endswith("…")
    assert all(100 < text_width(line, 14) <= 100 * 4 / 3 for line in block.lines[:-1])


def test_an_empty_label_keeps_the_height_of_one_line():
    style = TextStyle(14)
    label = Label((text_block("", style, 100, 3),), pad_x=10, pad_y=8)
    assert label.height == pytest.approx(style.line_height + 16)


def test_the_diagrams_package_still_offers_the_names_callers_import():
    assert set(diagrams.__all__) == {
        "char_width",
        "key_terms_svg",
        "outline_map_svg",
        "text_width",
        "wrap_text",
    }
    assert all(callable(getattr(diagrams, name)) for name in diagrams.__all__)


# --- safety, determinism, style --------------------------------------------------------------------


@pytest.mark.parametrize(("draw", "name"), [("outline", "hostile"), ("terms", "hostile")])
def test_hostile_text_comes_out_as_inert_escaped_text(draw, name):
    svg = _outline(name) if draw == "outline" else _key_terms(name)
    root = _parse(svg)
    assert "<script" not in svg
    tags = {element.tag.removeprefix(NS) for element in root.iter()}
    assert tags <= {"svg", "title", "desc", "rect", "g", "text", "tspan", "path"}  # only shapes and text
    for element in root.iter():
        for attribute in element.attrib:
            assert not attribute.lower().startswith("on")
            assert "href" not in attribute
    assert HOSTILE in root[0].text
    lines = _all_text(root)
    assert HOSTILE in lines
    assert QUOTES in lines


def test_control_characters_are_dropped_so_the_xml_stays_valid():
    svg = outline_map_svg("Bell\x07 and\x00 null", [OutlineSection("tab\tnew\nline\x1b", ["\ufffe ok"])])
    lines = _all_text(_parse(svg))
    assert "Bell and null" in lines
    assert "tab new line" in lines
    assert "ok" in lines


@pytest.mark.parametrize(("draw", "name"), ALL_SVGS)
def test_output_is_deterministic(draw, name):
    assert draw(name) == draw(name)


@pytest.mark.parametrize(("draw", "name"), ALL_SVGS)
def test_coordinates_are_rounded_to_one_decimal(draw, name):
    numbers = re.findall(r'(?:x|y|width|height)="(-?[\d.]+)"', draw(name))
    assert numbers
    assert all(re.fullmatch(r"-?\d+(\.\d)?", n) for n in numbers)


@pytest.mark.parametrize(("draw", "name"), ALL_SVGS)
def test_text_is_at_least_13px(draw, name):
    sizes = [float(t.get("font-size")) for t in _parse(draw(name)).iter(f"{NS}text")]
    assert all(size >= 13 for size in sizes)


def test_title_text_is_larger_than_point_text():
    root = _parse(_outline("typical"))
    by_kind = {}
    for group in root.iter(f"{NS}g"):
        kind = group.find(f"{NS}rect").get("class")
        by_kind[kind] = float(group.find(f"{NS}text").get("font-size"))
    assert by_kind["node root"] > by_kind["node section"] > by_kind["node point"] >= 13


def test_each_section_gets_its_own_colour():
    root = _parse(outline_map_svg("t", _sections(12, 0)))
    strokes = [r.get("stroke") for r in root.iter(f"{NS}rect") if r.get("class") == "node section"]
    assert len(set(strokes)) == 12


@settings(max_examples=500, deadline=None)
@given(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False))
def test_a_coordinate_is_written_as_round_to_one_decimal_would_write_it(value):
    expected = f"{round(value, 1) + 0.0:.1f}".removesuffix(".0")
    assert _num(value) == expected
    assert _num(value) != "-0"


def test_widths_stay_right_and_their_table_bounded_under_texts_of_ever_new_characters():
    before = text_width("Photosynthesis", 14)
    # Hostile labels: each thousands of characters not met before, more than the table of widths holds.
    for block in range(5):
        many = "".join(chr(c) for c in range(0x4E00 + 5000 * block, 0x4E00 + 5000 * (block + 1)))
        assert text_width(many, 14) == pytest.approx(sum(measure.char_width(ch, 14) for ch in many))
        assert len(measure._widths(14, False)) <= measure._MAX_KNOWN_CHARACTERS + 5000
    assert text_width("Photosynthesis", 14) == before
