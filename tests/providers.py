"""Provider doubles for tests: the real built-in lesson, with one step held, broken or flooded on purpose."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from workflow.lesson.model import LessonContent, Outline, TopicAnalysis
from workflow.providers.base import TextSink
from workflow.providers.builtin import BuiltinProvider


class GatedProvider(BuiltinProvider):
    """Writes the first part of create-content, then waits until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__(pace=0)
        self.gate = asyncio.Event()
        self.reached = asyncio.Event()

    async def create_content(
        self, analysis: TopicAnalysis, outline: Outline, sink: TextSink
    ) -> LessonContent:
        sink.expect(1000)
        await sink.write("Half of the content... ")
        self.reached.set()
        await self.gate.wait()
        return await super().create_content(analysis, outline, sink)


class FailingProvider(BuiltinProvider):
    """create-content fails the way a broken backend would."""

    async def create_content(
        self, analysis: TopicAnalysis, outline: Outline, sink: TextSink
    ) -> LessonContent:
        await sink.write("Starting... ")
        raise ConnectionError("the content backend refused the connection")


class StallingProvider(BuiltinProvider):
    """generate-outline never answers: only the step timeout can end it."""

    async def generate_outline(self, analysis: TopicAnalysis, sink: TextSink) -> Outline:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


class FloodProvider(BuiltinProvider):
    """create-content streams `chunks` deltas of `size` characters, far more than any socket buffers."""

    def __init__(self, chunks: int = 200, size: int = 64 * 1024) -> None:
        super().__init__(pace=0)
        self.chunks, self.size = chunks, size

    async def create_content(
        self, analysis: TopicAnalysis, outline: Outline, sink: TextSink
    ) -> LessonContent:
        sink.expect(self.chunks * self.size)
        for _ in range(self.chunks):
            await sink.write("x" * self.size)
            await asyncio.sleep(0)
        return await super().create_content(analysis, outline, _Discard())


class _Discard:
    """A sink that keeps nothing: for composing content whose streaming a test replaces."""

    def expect(self, total: int) -> None:
        pass

    async def write(self, text: str, weight: int | None = None) -> None:
        pass

    async def write_many(self, texts: Sequence[str]) -> None:
        pass

    async def restart(self, reason: str) -> None:
        pass

    def record_usage(self, prompt_tokens: int, completion_tokens: int) -> None:
        pass

    def token_allowance(self) -> int | None:
        return None
