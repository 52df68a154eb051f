"""The interface every lesson provider implements, and the sink its text streams into."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, TypeVar

from workflow.lesson.model import LessonContent, Outline, TopicAnalysis

T = TypeVar("T")


class TextSink(Protocol):
    """Where a provider streams the text it produces; each write becomes one `step-delta` event."""

    def expect(self, total: int) -> None:
        """How much the provider expects to write in all (characters, or tokens when it passes
        `weight`), so progress can be estimated."""

    async def write(self, text: str, weight: int | None = None) -> None:
        """Stream `text`; it counts `weight` towards progress (default: its length)."""

    async def write_many(self, texts: Sequence[str]) -> None:
        """Stream several pieces at once, each as from `write` (one event each), in one append: for
        text that is all there already, so its pieces go out in one commit and one write a stream."""

    def keep(self) -> None:
        """What was written so far is final: a later `restart` keeps it (and sends it again)."""

    async def restart(self, reason: str) -> None:
        """The text since the last `keep` is void: clients are told with `step-retry` to drop the
        step's text, and what was kept is sent again as one write."""

    async def retry(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """Run one call to a model server, again after a transient ProviderError (announced with
        `step-retry`, the text since the last `keep` void), as the service's retry settings say."""
        ...

    def doing(self, what: str) -> None:
        """What the step is doing now ("section 2 of 5"), for the message if the step runs out of time."""

    def warn(self, message: str) -> None:
        """Something the learner or operator should know about the step's output; kept on the step."""

    def record_usage(self, prompt_tokens: int, completion_tokens: int, estimated: bool = False) -> None:
        """Count tokens a model call used (`estimated`: the server did not say); raises
        BudgetExceeded once the session's budget is spent."""

    def token_allowance(self) -> int | None:
        """Tokens the session may still use (None: no budget); raises BudgetExceeded at zero."""


class LessonProvider(ABC):
    """Writes the lesson's parts. Each call streams its text into the sink as it is produced."""

    name: str = "abstract"

    @property
    def model(self) -> str | None:
        """The model that writes the text, if a model does (None: the built-in templates)."""
        return None

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
