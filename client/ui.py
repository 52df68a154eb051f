"""Shows a session's events: progress bars and the streaming text for people, or JSON lines for scripts."""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn
from rich.text import Text

STEP_NAMES = ("analyze-topic", "generate-outline", "create-content", "generate-images", "finalize-lesson")
MARKS = {"pending": "·", "running": "▶", "completed": "✓", "failed": "✗"}


def human_duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    return f"{int(seconds // 60)} min {seconds % 60:.0f} s"


class ProgressView:
    """Five progress bars kept at the bottom of a terminal, with each step's text printed above them
    line by line as it streams. Without a terminal (a pipe, a file, CI) the bars are left out and
    what remains is a plain log: each step's start, its text and its outcome."""

    def __init__(self, console: Console) -> None:
        self.console = console
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
        self.partial = ""  # the running step's text after its last newline, not printed yet

    def __enter__(self) -> ProgressView:
        if self.console.is_terminal:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def header(self, topic: str, session_id: str) -> None:
        self._print(Text.assemble(("Lesson: ", "bold"), topic))
        self._print(Text(f"session {session_id} (attach again with --session {session_id})", style="dim"))

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
            self._print(Text(f"▶ {data.get('step_index', 0) + 1}/5 {name}", style="bold cyan"))
        elif kind == "step-delta":
            self._set(name, completed=data.get("progress", 0))
            *lines, self.partial = (self.partial + data.get("delta", "")).split("\n")
            for line in lines:
                self._print(Text(line))
        elif kind == "step-retry":
            self.partial = ""
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

    def saved(self, lines: list[str]) -> None:
        for line in lines:
            self._print(Text(line, style="bold"))

    def _set(self, name: str, **fields: Any) -> None:
        if name in self.tasks:
            self.progress.update(self.tasks[name], **fields)

    def _flush(self) -> None:
        if self.partial:
            self._print(Text(self.partial))
        self.partial = ""

    def _print(self, text: Text) -> None:
        # soft_wrap: long lines are left whole for the terminal to wrap, so copied text stays intact.
        self.console.print(text, soft_wrap=True)


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

    def saved(self, lines: list[str]) -> None:
        for line in lines:
            print(line, file=self.err)
