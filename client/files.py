"""Saves a finished lesson: its Markdown file, and its images beside it with the links pointed at them."""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from client.api import API, ClientError

# What the service's Content-Disposition names, checked again: a file name, never a path.
LESSON_FILE = re.compile(r'filename="([A-Za-z0-9][A-Za-z0-9._-]{0,80}\.md)"')
IMAGE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}\.[a-z0-9]{2,5}$")


class OutputRefused(ClientError):
    """The output folder cannot take the lesson, found before anything was written (a usage error)."""


class OutputExists(OutputRefused):
    """A file the lesson would be saved as is there already, and --force was not given."""

    def __init__(self, paths: list[Path]) -> None:
        more = f" (and {len(paths) - 1} more of the lesson's files)" if len(paths) > 1 else ""
        super().__init__(f"{paths[0]} already exists{more}; nothing was overwritten")
        self.paths = paths


@dataclass
class SavedLesson:
    markdown: Path
    images: list[Path] = field(default_factory=list)


def check_out_dir(out_dir: Path) -> None:
    """An OutputRefused unless the lesson could be written into `out_dir` (created later if missing).

    Checked by really creating (and at once removing) a file in the folder, or in its nearest existing
    parent when it is missing, so what is refused is what would fail: no such folder, a file in the
    way, no permission, a read-only file system.
    """
    existing = next((p for p in (out_dir, *out_dir.parents) if p.exists()), Path("."))
    if not existing.is_dir():
        raise OutputRefused(f"cannot write the lesson into {out_dir}: {existing} is not a folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        where = "" if existing == out_dir else f" (creating a file in {existing})"
        raise OutputRefused(f"cannot write the lesson into {out_dir}{where}: {exc.strerror or exc}") from None


def save_lesson(
    api: API, session_id: str, result: dict[str, Any], out_dir: Path, force: bool = False
) -> SavedLesson:
    """Write `<slug>.md` and `<slug>-<image>` files into `out_dir`; the Markdown links to the local images.

    Unless `force`, an OutputExists (and nothing written) when any of those files is there already.
    """
    response = api.get(f"/api/sessions/{session_id}/lesson.md")
    named = LESSON_FILE.search(response.headers.get("Content-Disposition", ""))
    file_name = named.group(1) if named else "lesson.md"
    stem = file_name.removesuffix(".md")
    markdown = response.content.decode("utf-8")
    saved = SavedLesson(out_dir / file_name)
    images: dict[Path, str] = {}
    for name, url in result.get("images", {}).items():
        # Only the service's own images, under names that cannot reach outside `out_dir`.
        if not IMAGE_NAME.match(name) or not url.startswith("/") or url.startswith("//"):
            raise ClientError(f"the lesson names an image this client will not save: {name!r} at {url!r}")
        images[out_dir / f"{stem}-{name}"] = url
    if not force:
        there = [path for path in (saved.markdown, *images) if path.exists() or path.is_symlink()]
        if there:
            raise OutputExists(there)
    # Without --force a file that appeared since that check is still not overwritten ("x" mode).
    mode = "wb" if force else "xb"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for local, url in images.items():
            with local.open(mode) as image:
                image.write(api.get(url).content)
            markdown = markdown.replace(f"]({url})", f"]({local.name})")
            saved.images.append(local)
        with saved.markdown.open(mode) as lesson:
            lesson.write(markdown.encode("utf-8"))
    except FileExistsError as exc:
        raise OutputExists([Path(exc.filename)]) from None
    except OSError as exc:
        raise ClientError(f"cannot write the lesson into {out_dir}: {exc}") from None
    return saved
