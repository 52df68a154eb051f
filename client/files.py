"""Saves a finished lesson: its Markdown file, and its images beside it with the links pointed at them."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from client.api import API, ClientError

# What the service's Content-Disposition names, checked again: a file name, never a path.
LESSON_FILE = re.compile(r'filename="([A-Za-z0-9][A-Za-z0-9._-]{0,80}\.md)"')
IMAGE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}\.[a-z0-9]{2,5}$")


@dataclass
class SavedLesson:
    markdown: Path
    images: list[Path] = field(default_factory=list)


def save_lesson(api: API, session_id: str, result: dict[str, Any], out_dir: Path) -> SavedLesson:
    """Write `<slug>.md` and `<slug>-<image>` files into `out_dir`; the Markdown links to the local images."""
    response = api.get(f"/api/sessions/{session_id}/lesson.md")
    named = LESSON_FILE.search(response.headers.get("Content-Disposition", ""))
    file_name = named.group(1) if named else "lesson.md"
    stem = file_name.removesuffix(".md")
    markdown = response.content.decode("utf-8")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        saved = SavedLesson(out_dir / file_name)
        for name, url in result.get("images", {}).items():
            # Only the service's own images, under names that cannot reach outside `out_dir`.
            if not IMAGE_NAME.match(name) or not url.startswith("/") or url.startswith("//"):
                raise ClientError(f"the lesson names an image this client will not save: {name!r} at {url!r}")
            local = out_dir / f"{stem}-{name}"
            local.write_bytes(api.get(url).content)
            markdown = markdown.replace(f"]({url})", f"]({local.name})")
            saved.images.append(local)
        saved.markdown.write_text(markdown, encoding="utf-8")
    except OSError as exc:
        raise ClientError(f"cannot write the lesson into {out_dir}: {exc}") from None
    return saved
