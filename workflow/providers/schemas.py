"""JSON schemas of the structured answers the model is asked for; strict, so servers can enforce them."""

from __future__ import annotations

from typing import Any


def _object(**properties: Any) -> dict[str, Any]:
    # Strict structured outputs need every property required and no others allowed.
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def _text(min_length: int = 1) -> dict[str, Any]:
    return {"type": "string", "minLength": min_length}


def _list(items: dict[str, Any], low: int, high: int) -> dict[str, Any]:
    return {"type": "array", "items": items, "minItems": low, "maxItems": high}


TOPIC_ANALYSIS = _object(
    title=_text(),
    category=_text(),
    level=_text(),
    objectives=_list(_text(), 2, 6),
    key_terms=_list(_object(term=_text(), definition=_text()), 2, 8),
    prerequisites=_list(_text(), 0, 4),
)

LESSON_OUTLINE = _object(
    sections=_list(_object(title=_text(), points=_list(_text(), 1, 6)), 2, 8),
)

QUIZ = _object(
    misconceptions=_list(_object(claim=_text(), correction=_text()), 1, 5),
    quiz=_list(
        _object(
            question=_text(),
            choices=_list(_text(), 2, 5),
            answer={"type": "integer", "minimum": 0, "maximum": 4},
            explanation=_text(),
        ),
        2,
        6,
    ),
)
