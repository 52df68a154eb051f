"""A finished lesson for reading or download: safe HTML from its Markdown, a file name from its topic."""

from __future__ import annotations

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


def topic_slug(topic: str) -> str:
    """A short ASCII file-name stem for a topic ("Photosynthesis 101" → "photosynthesis-101")."""
    ascii_text = unicodedata.normalize("NFKD", topic).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return slug[:MAX_SLUG].rstrip("-") or "lesson"
