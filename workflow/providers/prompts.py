"""The prompt files under conf/prompts, loaded once and checked, filled in with `$name` placeholders."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from string import Template

from core.errors import PromptError

# file stem -> the placeholders the service fills in for it
PLACEHOLDERS: dict[str, frozenset[str]] = {
    "system": frozenset(),
    "analyze_topic": frozenset({"topic"}),
    "generate_outline": frozenset({"topic", "title", "level", "objectives", "key_terms"}),
    "section": frozenset({"title", "level", "outline", "number", "section", "points"}),
    "quiz": frozenset({"title", "level", "objectives", "outline"}),
    "summary": frozenset({"title", "level", "outline", "objectives"}),
    "image": frozenset({"title", "outline"}),
}


@dataclass(frozen=True)
class Prompts:
    templates: dict[str, Template]

    @classmethod
    def load(cls, folder: Path) -> Prompts:
        templates = {}
        for name, allowed in PLACEHOLDERS.items():
            path = folder / f"{name}.txt"
            try:
                template = Template(path.read_text(encoding="utf-8").strip())
            except OSError as exc:
                raise PromptError(f"cannot read the prompt file {path}: {exc.strerror}") from exc
            if not template.is_valid():
                raise PromptError(f"the prompt file {path} has a malformed $placeholder (write $$ for a $)")
            unknown = set(template.get_identifiers()) - allowed
            if unknown:
                known = ", ".join(f"${p}" for p in sorted(allowed)) or "none"
                raise PromptError(
                    f"the prompt file {path} uses ${', $'.join(sorted(unknown))}; it can use {known}"
                )
            templates[name] = template
        return cls(templates)

    def render(self, name: str, **values: object) -> str:
        return self.templates[name].substitute({key: str(value) for key, value in values.items()})
