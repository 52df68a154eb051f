"""The interface every lesson provider implements, and the sink its text streams into."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Protocol

from workflow.lesson.model import LessonContent, Outline, TopicAnalysis


class TextSink(Protocol):
    """Where a provider streams the text it produces; each write becomes one `step-delta` event."""

    def expect(self, total: int) -> None:
        """How much the provider expects to write in all (characters, or tokens when it passes
        `weight`), so progress can be estimated."""

    async def write(self, text: str, weight: int | None = None) -> None:
        """Stream `text`; it counts `weight` towards progress (default: its length)."""

    async def restart(self, reason: str) -> None:
        """The text so far is void and the step starts over: clients are told with `step-retry`."""

    def record_usage(self, prompt_tokens: int, completion_tokens: int) -> None:
        """Count tokens a model call used; raises BudgetExceeded once the session's budget is spent."""

    def token_allowance(self) -> int | None:
        """Tokens the session may still use (None: no budget); raises BudgetExceeded at zero."""


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

    async def close(self) -> None:
        """Release connections; called once at shutdown."""

    @abstractmethod
    async def write_summary(
        self, analysis: TopicAnalysis, outline: Outline, content: LessonContent, sink: TextSink
    ) -> str: ...
