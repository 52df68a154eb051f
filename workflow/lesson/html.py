"""A finished lesson for reading or download: safe HTML from its Markdown, a file name from its topic."""

from __future__ import annotations

import re
import unicodedata

import mistune
from mistune.util import escape as escape_text

# The only absolute paths an image may point at: where the service serves a session's images.
SESSION_IMAGE = re.compile(r"^/api/sessions/[A-Za-z0-9._-]+/images/[A-Za-z0-9._-]+$")
# A relative URL that no browser can read as a scheme (no colon), a host (no leading / or \) or
# anything else: plain path characters only.
RELATIVE_PATH = re.compile(r"^(?![/\\])[A-Za-z0-9._~%/-]+$")
MAX_SLUG = 60


class SafeLessonRenderer(mistune.HTMLRenderer):
    """HTML with every raw tag escaped, harmful link schemes dropped, and images kept to this origin."""

    def image(self, text: str, url: str, title: str | None = None) -> str:
        if not is_local_image(url):
            # An image from elsewhere could track the reader or carry a payload: show its words instead.
            return f'<span class="image-removed">{escape_text(text)}</span>'
        return super().image(text, url, title)

    def link(self, text: str, url: str, title: str | None = None) -> str:
        attrs: dict[str, object] = {"href": self.sanitize_url(url), "title": title or None}
        if url.lower().startswith(("http:", "https:")):
            # A lesson's outside links must not get a handle on the page that opened them.
            attrs["rel"] = "noopener noreferrer nofollow"
        return f"<a{self.render_attrs(attrs)}>{text}</a>"


def is_local_image(url: str) -> bool:
    """True for a URL of one of this service's session images, or a plain relative path."""
    return bool(SESSION_IMAGE.match(url) or (RELATIVE_PATH.match(url) and ":" not in url))


# The lessons are written one paragraph per line, with single line breaks inside list items (quiz
# choices) that are meant to show: hard_wrap keeps them.
_markdown = mistune.create_markdown(
    escape=True,
    hard_wrap=True,
    renderer=SafeLessonRenderer(escape=True),
    plugins=["table", "strikethrough"],
)


def lesson_html(markdown: str) -> str:
    """The lesson as an HTML fragment that is safe to put into a page as it is."""
    html = _markdown(markdown)
    assert isinstance(html, str)
    return html


def topic_slug(topic: str) -> str:
    """A short ASCII file-name stem for a topic ("Photosynthesis 101" → "photosynthesis-101")."""
    ascii_text = unicodedata.normalize("NFKD", topic).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return slug[:MAX_SLUG].rstrip("-") or "lesson"
