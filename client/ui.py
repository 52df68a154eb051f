"""Shows a session's events: progress bars and the streaming text for people, or JSON lines for scripts."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any, TextIO

from rich.cells import cell_len
from rich.console import Console, RenderableType
from rich.markdown import Markdown
from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn
from rich.segment import Segment, Segments
from rich.text import Text

STEP_NAMES = ("analyze-topic", "generate-outline", "create-content", "generate-images", "finalize-lesson")
MARKS = {"pending": "·", "running": "▶", "completed": "✓", "failed": "✗"}
# A code fence's opening or closing line (up to three spaces in, then ``` or ~~~).
FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


def whole_blocks(text: str) -> int:
    """How much of `text` (a step's Markdown so far) is whole blocks that can be rendered already.

    A block ends at a blank line followed by a line that starts in the first column, outside a code
    fence: what follows cannot belong to it (an indented line could still be part of a list item).
    """
    cut, position, fence, blank = 0, 0, "", False
    *lines, last = text.split("\n")
    for line in lines:
        if blank and not fence and line and not line[0].isspace():
            cut = position
        opening = FENCE.match(line)
        if opening and (not fence or opening.group(1).startswith(fence)):
            fence = "" if fence else opening.group(1)
        blank = not line.strip()
        position += len(line) + 1
    # The last line is still arriving: only its first character is known for sure.
    if blank and not fence and last and not last[0].isspace():
        cut = position
    return cut


def trim_end(line: list[Segment]) -> list[Segment]:
    """A rendered line without the blanks that pad it to the width (unless they have a background)."""
    line = list(line)
    while line:
        last = line[-1]
        if last.control or (last.style is not None and last.style.bgcolor is not None):
            break
        text = last.text.rstrip(" ")
        if text:
            line[-1] = Segment(text, last.style)
            break
        line.pop()
    return line


def written_by(metadata: dict[str, Any]) -> str:
    """Who wrote the lesson, said plainly: the built-in templates write a scaffold without facts."""
    provider, model = metadata.get("provider", "builtin"), metadata.get("model")
    if model:
        return f"Written by the model {model} (provider {provider})."
    return (
        "Written offline by the built-in provider: a study scaffold, without facts. For a real lesson, "
        'start the service with a model: ORCH_LLM_API_KEY=sk-... make run ARGS="--provider=openai '
        '--llm_model=gpt-4o-mini"'
    )


def human_duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    return f"{int(seconds // 60)} min {seconds % 60:.0f} s"


class ProgressView:
    """Five progress bars kept at the bottom of a terminal, with each step's text rendered above them
    as Markdown, block by block as it streams, wrapped at the console's width between words. Without
    a terminal (a pipe, a file, CI) the bars are left out and what remains is a plain log: each
    step's start, its text and its outcome. `quiet` leaves the text out: progress only."""

    def __init__(self, console: Console, quiet: bool = False) -> None:
        self.console, self.quiet = console, quiet
        self.progress = Progress(
            TextColumn("{task.fields[mark]}"),
            TextColumn("{task.description:<16}"),
            BarColumn(bar_width=40),
            TaskProgressColumn(),
            TextColumn("{task.fields[note]}", style="dim"),
            console=console,
        )
        pending = MARKS["pending"]
        self.tasks: dict[str, TaskID] = {
            name: self.progress.add_task(name, total=100, mark=pending, note="") for name in STEP_NAMES
        }
        self.step_names: dict[str, str] = {}  # step_id → name, learnt from step-start
        self.pending = ""  # the running step's text not rendered yet: its last, unfinished block
        self.blocks = 0  # blocks of the running step rendered so far

    def __enter__(self) -> ProgressView:
        if self.console.is_terminal:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def header(self, topic: str, session_id: str) -> None:
        self._print(Text.assemble(("Lesson: ", "bold"), topic))
        self._print(Text(f"session {session_id}", style="dim"))

    def notice(self, message: str) -> None:
        self._print(Text(message, style="yellow"))

    def show(self, event: dict[str, Any]) -> None:
        kind, data = event["type"], event.get("data", {})
        name = data.get("step_name") or self.step_names.get(event.get("step_id", ""), "")
        if kind == "queued":
            position = data.get("position", 0)
            ahead = "it is next" if position == 1 else f"{position - 1} sessions are ahead"
            self._print(Text(f"… waiting for a free run slot: {ahead}", style="yellow"))
        elif kind == "step-start":
            self.step_names[event.get("step_id", "")] = name
            self._set(name, mark=MARKS["running"], completed=0, note="")
            self.pending, self.blocks = "", 0
            self._print(Text(f"▶ {data.get('step_index', 0) + 1}/5 {name}", style="bold cyan"))
        elif kind == "step-delta":
            self._set(name, completed=data.get("progress", 0))
            if not self.quiet:
                self.pending += data.get("delta", "")
                cut = whole_blocks(self.pending)
                if cut:
                    self._render(self.pending[:cut])
                    self.pending = self.pending[cut:]
        elif kind == "step-retry":
            self.pending, self.blocks = "", 0
            self._set(name, mark=MARKS["running"], completed=0, note="restarted")
            self._print(Text(f"↻ {name} starts again: {data.get('reason', '')}", style="yellow"))
        elif kind == "step-complete":
            self._flush()
            took = human_duration(data.get("duration", 0) / 1000)
            self._set(name, mark=MARKS["completed"], completed=100, note=took)
            self._print(Text(f"✓ {name} done in {took}", style="green"))
        elif kind == "step-error":
            self._flush()
            self._set(name, mark=MARKS["failed"], note="failed")
            self._print(Text(f"✗ {name} failed: {data.get('error', '')}", style="bold red"))
        elif kind == "final":
            took = human_duration(data["result"]["duration"] / 1e9)
            self._print(Text(f"\nLesson ready in {took}.", style="bold green"))
            self._print(Text(written_by(data["result"].get("metadata", {})), style="yellow"))

    def saved(self, files: list[tuple[str, Path]]) -> None:
        for label, path in files:
            line = f"{label} {path}"
            if cell_len(line) <= self.console.width:
                self._print(Text(line, style="bold"))
            else:  # the path on a line of its own, whole even when longer than a line, for copying
                self._print(Text(label, style="bold"))
                self.console.print(Text(str(path), style="bold"), crop=False, no_wrap=True, overflow="ignore")

    def _set(self, name: str, **fields: Any) -> None:
        if name in self.tasks:
            self.progress.update(self.tasks[name], **fields)

    def _flush(self) -> None:
        if self.pending.strip():
            self._render(self.pending)
        self.pending = ""

    def _render(self, markdown: str) -> None:
        """Print whole Markdown blocks of the running step's text."""
        if self.blocks:
            self.console.print()  # the blank line Markdown keeps between blocks
        # Without the blank line rich opens a list with: the step's header line is enough above it.
        self._print(Markdown(markdown, hyperlinks=False), strip_blank_lines=True)
        self.blocks += 1

    def _print(self, renderable: RenderableType, strip_blank_lines: bool = False) -> None:
        """Print wrapped between words at the console's width as it is now (a word longer than a line
        is folded), without the blanks rich pads each line to the width with."""
        console = self.console
        lines = [trim_end(line) for line in console.render_lines(renderable, console.options, pad=False)]
        while strip_blank_lines and lines and not lines[0]:
            lines.pop(0)
        while strip_blank_lines and lines and not lines[-1]:
            lines.pop()
        console.print(Segments([segment for line in lines for segment in (*line, Segment.line())]))


class JsonView:
    """One JSON object per line on stdout, the event as the server sent it plus its `id`; the rest
    (notices, where the files went) goes to stderr so stdout stays machine-readable."""

    def __init__(self, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> None:
        self.out, self.err = out, err

    def __enter__(self) -> JsonView:
        return self

    def __exit__(self, *exc: object) -> None:
        self.out.flush()

    def header(self, topic: str, session_id: str) -> None:
        print(f"session {session_id}: {topic}", file=self.err)

    def notice(self, message: str) -> None:
        print(message, file=self.err)

    def show(self, event: dict[str, Any]) -> None:
        self.out.write(json.dumps(event, ensure_ascii=False) + "\n")
        self.out.flush()

    def saved(self, files: list[tuple[str, Path]]) -> None:
        for label, path in files:
            print(f"{label} {path}", file=self.err)
