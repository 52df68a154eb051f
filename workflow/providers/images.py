"""Image providers for generate-images: diagrams drawn locally, or those plus a model's illustration."""

from __future__ import annotations

import base64
import binascii
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import openai

from core.errors import ProviderError
from workflow.lesson import diagrams
from workflow.lesson.model import Outline, TopicAnalysis
from workflow.providers.openai_client import ModelBacked, provider_error

SVG = "image/svg+xml"


@dataclass(frozen=True)
class Image:
    name: str  # a plain file name, unique within the session
    caption: str
    content_type: str
    data: bytes


class ImageProvider(ABC):
    name: str = "abstract"

    @abstractmethod
    async def render(self, analysis: TopicAnalysis, outline: Outline) -> list[Image]:
        """The lesson's images, in the order the lesson shows them."""

    async def close(self) -> None:
        """Release connections; called once at shutdown."""


class DiagramImages(ImageProvider):
    """A map of the lesson's outline and a card of its key terms, as SVG, drawn with no network."""

    name = "diagram"

    async def render(self, analysis: TopicAnalysis, outline: Outline) -> list[Image]:
        return [
            Image(
                "outline-map.svg",
                "Lesson map",
                SVG,
                diagrams.outline_map_svg(analysis.title, outline.sections).encode(),
            ),
            Image(
                "key-terms.svg",
                "Key terms",
                SVG,
                diagrams.key_terms_svg(analysis.title, analysis.key_terms).encode(),
            ),
        ]


class ModelImages(ModelBacked, DiagramImages):
    """The diagrams, plus an illustration from an OpenAI-compatible /v1/images/generations."""

    name = "openai"

    async def render(self, analysis: TopicAnalysis, outline: Outline) -> list[Image]:
        diagrams_drawn = await super().render(analysis, outline)
        titles = "; ".join(section.title for section in outline.sections)
        request: dict[str, Any] = {
            "model": self.config.image_model,
            "prompt": self.prompts.render("image", title=analysis.title, outline=titles),
            "size": self.config.image_size,
            "n": 1,
        }
        if not self.config.image_model.startswith("gpt-image"):
            request["response_format"] = "b64_json"  # gpt-image models send base64 always, and refuse this
        where = f"openai image provider, model {self.config.image_model} at {self.config.base_url}"
        try:
            # An image takes a while and arrives whole: no idle timeout, only the step's own.
            answer = await self.client.images.generate(**request, timeout=self.config.total_timeout)
        except openai.OpenAIError as exc:
            raise provider_error(exc, where, self.config.idle_timeout) from exc
        encoded = answer.data[0].b64_json if answer.data else None
        if not encoded:
            raise ProviderError(f"{where} sent no b64_json image")
        try:
            data = base64.b64decode(encoded, validate=True)
        except binascii.Error as exc:
            raise ProviderError(f"{where} sent an image that is not valid base64: {exc}") from None
        kind = next((t for magic, t in IMAGE_MAGIC.items() if data.startswith(magic)), None)
        if kind is None:
            raise ProviderError(f"{where} sent data that is not a PNG, JPEG or WebP image")
        name = f"illustration.{kind.split('/')[1].replace('jpeg', 'jpg')}"
        return [Image(name, "Illustration", kind, data), *diagrams_drawn]


# How each image format starts, so the service never labels bytes with a type they are not.
IMAGE_MAGIC = {b"\x89PNG\r\n\x1a\n": "image/png", b"\xff\xd8\xff": "image/jpeg", b"RIFF": "image/webp"}
