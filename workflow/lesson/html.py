"""A finished lesson for reading or download: safe HTML from its Markdown, a file name from its topic."""

from __future__ import annotations

import base64
import hashlib
import re
import unicodedata

import mistune
from mistune.util import escape as escape_text

# The only URLs an image may have: where the service serves this session's own images.
SESSION_IMAGE = re.compile(
    r"^/api/sessions/([A-Za-z0-9._-]+)/images/[A-Za-z0-9][A-Za-z0-9_-]*\.[a-z0-9]{2,5}$"
)
# Links may leave for the web, mail someone, or point within the page; never at this service,
# where a GET of the right URL (another session's stream) would start work nobody asked for.
OUTSIDE_LINK = re.compile(r"^(https?://[^/\\]|mailto:|#)", re.IGNORECASE)
MAX_SLUG = 60
FIRST_HEADING = re.compile(r"^# +(.+?)(?: +#+)?[ \t]*$", re.MULTILINE)

# The standalone page's whole stylesheet: no fonts, imports or URLs, so it loads nothing.
LESSON_STYLE = """
:root { color-scheme: light dark; }
body { max-width: 46rem; margin: 0 auto; padding: 1.5rem 1rem 3rem;
  font: 1.0625rem/1.6 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
h1, h2, h3, h4 { line-height: 1.25; margin: 1.6em 0 0.5em; }
h1 { margin-top: 0.5em; }
img { max-width: 100%; height: auto; }
pre, code { font: 0.9em/1.45 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
code { background: rgba(127, 127, 127, 0.15); padding: 0.1em 0.3em; border-radius: 3px; }
pre { background: rgba(127, 127, 127, 0.12); padding: 0.75em 1em; overflow-x: auto; border-radius: 4px; }
pre code { background: none; padding: 0; }
table { border-collapse: collapse; margin: 1em 0; display: block; overflow-x: auto; }
th, td { border: 1px solid rgba(127, 127, 127, 0.45); padding: 0.35em 0.7em; vertical-align: top; }
blockquote { margin: 1em 0; padding-left: 1em; border-left: 3px solid rgba(127, 127, 127, 0.5); }
.image-removed, .link-removed { font-style: italic; }
@media print {
  body { max-width: none; padding: 0; font-size: 11pt; color: #000; background: #fff; }
  pre, table, img { page-break-inside: avoid; }
  pre { white-space: pre-wrap; }
  h1, h2, h3 { page-break-after: avoid; }
}
"""
# The hash a Content-Security-Policy names to let exactly this <style> apply, and nothing else.
LESSON_STYLE_HASH = "sha256-" + base64.b64encode(hashlib.sha256(LESSON_STYLE.encode()).digest()).decode()


class SafeLessonRenderer(mistune.HTMLRenderer):
    """HTML with every raw tag escaped, links only to outside the service, and only the session's
    own images."""

    def __init__(self, session_id: str) -> None:
        super().__init__(escape=True)
        self.session_id = session_id

    def image(self, text: str, url: str, title: str | None = None) -> str:
        if not is_session_image(url, self.session_id):
            # An image from elsewhere could track the reader or carry a payload: show its words instead.
            return f'<span class="image-removed">{escape_text(text)}</span>'
        return super().image(text, url, title)

    def link(self, text: str, url: str, title: str | None = None) -> str:
        if not OUTSIDE_LINK.match(url):
            return f'<span class="link-removed">{text}</span>'
        attrs: dict[str, object] = {"href": self.sanitize_url(url), "title": title or None}
        if url.lower().startswith(("http:", "https:")):
            # A lesson's outside links must not get a handle on the page that opened them.
            attrs["rel"] = "noopener noreferrer nofollow"
        return f"<a{self.render_attrs(attrs)}>{text}</a>"


def is_session_image(url: str, session_id: str) -> bool:
    """True only for the URL of one of this session's images."""
    match = SESSION_IMAGE.match(url)
    return bool(match and match.group(1) == session_id)


def lesson_html(markdown: str, session_id: str) -> str:
    """The lesson of `session_id` as an HTML fragment that is safe to put into a page as it is."""
    # The lessons are written one paragraph per line, with single line breaks inside list items
    # (quiz choices) that are meant to show: hard_wrap keeps them.
    render = mistune.create_markdown(
        escape=True,
        hard_wrap=True,
        renderer=SafeLessonRenderer(session_id),
        plugins=["table", "strikethrough"],
    )
    html = render(markdown)
    assert isinstance(html, str)
    return html


def lesson_title(markdown: str, fallback: str) -> str:
    """The lesson's title: the text of its first `# ` heading, else `fallback` (the topic)."""
    match = FIRST_HEADING.search(markdown)
    return (match.group(1).strip() if match else "") or fallback.strip() or "Lesson"


def lesson_document(markdown: str, session_id: str, title: str, image_base: str | None = None) -> str:
    """The lesson as a whole page that reads well opened on its own: the safe fragment of
    `lesson_html`, a title (escaped) and the embedded `LESSON_STYLE`. With `image_base` the
    session's image URLs become `<image_base><name>` (`images/` for a download next to them)."""
    body = lesson_html(markdown, session_id)
    if image_base is not None:
        body = body.replace(f'src="/api/sessions/{session_id}/images/', f'src="{image_base}')
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape_text(title)}</title>\n<style>{LESSON_STYLE}</style>\n</head>\n"
        f"<body>\n{body}</body>\n</html>\n"
    )


def topic_slug(topic: str) -> str:
    """A short ASCII file-name stem for a topic ("Photosynthesis 101" → "photosynthesis-101")."""
    ascii_text = unicodedata.normalize("NFKD", topic).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return slug[:MAX_SLUG].rstrip("-") or "lesson"
