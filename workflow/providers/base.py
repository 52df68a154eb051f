"""The interface every lesson provider implements, and the sink its text streams into."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Protocol

from workflow.lesson import LessonContent, Outline, TopicAnalysis


class TextSink(Protocol):
    """Where a provider streams the text it produces; each write becomes one `step-delta` event."""

    def expect(self, total_chars: int) -> None:
        """How much text the provider expects to write in all, so progress can be estimated."""

    async def write(self, text: str) -> None: ...


class LessonProvider(ABC):
    """Writes the lesson's parts. Each call streams its text into the sink as it is produced."""

    name: str = "abstract"

    @abstractmethod
    async def analyze_topic(self, topic: str, sink: TextSink) -> TopicAnalysis: ...

    @abstractmethod
    async def generate_outline(self, analysis: TopicAnalysis, sink: TextSink) -> Outline: ...

    @abstractmethod
    async def create_content(
        self, analysis: TopicAnalysis, outline: Outline, sink: TextSink
    ) -> LessonContent: ...

    @abstractmethod
    async def write_summary(
        self, analysis: TopicAnalysis, outline: Outline, content: LessonContent, sink: TextSink
    ) -> str: ...
