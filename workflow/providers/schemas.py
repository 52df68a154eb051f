"""JSON schemas of the structured answers the model is asked for, and the form each kind of server takes.

The answers are checked against these full schemas. What is sent depends on the server: grammar-based
servers (llama.cpp) enforce string lengths and enums but ignore `minimum`/`maximum`, so no range relies
on those; OpenAI's strict mode rejects the string-length keywords, so they are left out of what it gets.
Every string has a length limit because a small model held to a grammar can loop inside one string
until it reaches max_tokens.
"""

from __future__ import annotations

from typing import Any

CHOICES = 4  # per quiz question, fixed so that "the answer is one of the choices" is a plain enum
STRICT_UNSUPPORTED = ("minLength", "maxLength")


def _object(**properties: Any) -> dict[str, Any]:
    # Strict structured outputs need every property required and no others allowed.
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def _text(max_length: int) -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "maxLength": max_length}


def _list(items: dict[str, Any], low: int, high: int) -> dict[str, Any]:
    return {"type": "array", "items": items, "minItems": low, "maxItems": high}


TOPIC_ANALYSIS = _object(
    title=_text(120),
    category=_text(40),
    level=_text(40),
    objectives=_list(_text(200), 2, 6),
    key_terms=_list(_object(term=_text(80), definition=_text(300)), 2, 8),
    prerequisites=_list(_text(150), 0, 4),
)

LESSON_OUTLINE = _object(
    sections=_list(_object(title=_text(120), points=_list(_text(200), 1, 6)), 2, 8),
)

QUIZ = _object(
    misconceptions=_list(_object(claim=_text(250), correction=_text(300)), 1, 5),
    quiz=_list(
        _object(
            question=_text(250),
            choices=_list(_text(150), CHOICES, CHOICES),
            answer={"type": "integer", "enum": list(range(CHOICES))},
            explanation=_text(300),
        ),
        2,
        6,
    ),
)


def for_strict_mode(schema: Any) -> Any:
    """The schema without the keywords OpenAI's strict json_schema mode refuses."""
    if isinstance(schema, dict):
        return {k: for_strict_mode(v) for k, v in schema.items() if k not in STRICT_UNSUPPORTED}
    if isinstance(schema, list):
        return [for_strict_mode(item) for item in schema]
    return schema
