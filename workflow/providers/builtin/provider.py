"""The default provider: composes a structured lesson offline from templates, streamed at a set pace."""

from __future__ import annotations

import asyncio
import re

from workflow.lesson import text as lesson_text
from workflow.lesson.model import LessonContent, Outline, TopicAnalysis
from workflow.providers.base import LessonProvider, TextSink
from workflow.providers.builtin import compose
from workflow.providers.builtin.loader import shipped_texts

# At pace 0 text still goes out in pieces of about this many characters, so a client sees it
# arrive step by step.
CHUNK_CHARS = 64
# At pace 0, how many pieces are made and appended at once (one event each) before the IOLoop
# gives other sessions a turn.
BATCH_CHUNKS = 16
# Where a word starts after whitespace: the places a piece may end.
_WORD_START = re.compile(r"(?<=\s)(?=\S)")


def chunk_text(text: str, size: int = CHUNK_CHARS) -> list[str]:
    """Split text into pieces of about `size` characters, on word boundaries, losing nothing.

    Each piece is the shortest run of whole words (each with the whitespace after it) that is at
    least `size` long; the last may be shorter.
    """
    chunks: list[str] = []
    start, end = 0, len(text)
    while start < end:
        # The first word start at least `size` on; searched from there, not word by word.
        cut = _WORD_START.search(text, start + max(size, 1))
        stop = cut.start() if cut else end
        chunks.append(text[start:stop])
        start = stop
    return chunks


class BuiltinProvider(LessonProvider):
    name = "builtin"

    def __init__(self, pace: float = 0.0) -> None:
        # Reading (and checking) the texts here makes a broken text file stop the service at start,
        # with a ContentError naming file and key, rather than fail the first lesson.
        shipped_texts()
        self.pace = pace  # characters per second; 0 = as fast as possible

    async def _stream(self, text: str, sink: TextSink) -> None:
        sink.expect(len(text))
        chunks = chunk_text(text)
        if self.pace > 0:
            for chunk in chunks:
                await sink.write(chunk)
                await asyncio.sleep(len(chunk) / self.pace)
            return
        # As fast as possible: the text is all there, so its pieces go out a batch at a time (one
        # commit, one write to each stream), still one event each.
        for start in range(0, len(chunks), BATCH_CHUNKS):
            await sink.write_many(chunks[start : start + BATCH_CHUNKS])
            # Sleeping (even for 0 s) yields to the IOLoop, so many sessions share it fairly.
            await asyncio.sleep(0)

    async def analyze_topic(self, topic: str, sink: TextSink) -> TopicAnalysis:
        analysis = compose.analyze_topic(topic)
        await self._stream(lesson_text.analysis_text(analysis), sink)
        return analysis

    async def generate_outline(self, analysis: TopicAnalysis, sink: TextSink) -> Outline:
        outline = compose.generate_outline(analysis)
        await self._stream(lesson_text.outline_text(outline), sink)
        return outline

    async def create_content(
        self, analysis: TopicAnalysis, outline: Outline, sink: TextSink
    ) -> LessonContent:
        content = compose.create_content(analysis, outline)
        await self._stream(lesson_text.content_text(outline, content), sink)
        return content

    async def write_summary(
        self, analysis: TopicAnalysis, outline: Outline, content: LessonContent, sink: TextSink
    ) -> str:
        summary = compose.write_summary(analysis, outline, content)
        await self._stream(summary, sink)
        return summary
