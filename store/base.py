"""The one interface every session store implements, so the engine never knows which it has."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from workflow.events import Event
from workflow.models import Session, SessionStatus


@dataclass(frozen=True)
class StoredImage:
    content_type: str
    data: bytes


class SessionStore(ABC):
    """Sessions, their append-only event logs and their images.

    Every method is a coroutine so that an implementation backed by a database can do its work off
    the IOLoop. Sessions are saved whole: the engine owns the live object and calls `save` after
    each change it wants kept.
    """

    kind: str = "abstract"

    @abstractmethod
    async def create(self, session: Session) -> None: ...

    @abstractmethod
    async def get(self, session_id: str) -> Session | None: ...

    @abstractmethod
    async def save(self, session: Session) -> None: ...

    @abstractmethod
    async def delete(self, session_id: str) -> bool:
        """Remove the session with its events and images; False if there was none."""

    @abstractmethod
    async def list(self, limit: int, status: SessionStatus | None = None) -> list[Session]:
        """Newest first."""

    @abstractmethod
    async def count(self) -> dict[str, int]:
        """How many sessions there are in each status."""

    @abstractmethod
    async def append_events(self, session_id: str, events: Sequence[Event]) -> None: ...

    @abstractmethod
    async def events_after(self, session_id: str, after_id: int) -> list[Event]:
        """The session's events with an id above `after_id`, oldest first."""

    @abstractmethod
    async def put_image(self, session_id: str, name: str, image: StoredImage) -> None: ...

    @abstractmethod
    async def get_image(self, session_id: str, name: str) -> StoredImage | None: ...

    async def close(self) -> None:
        """Release what the store holds; called once at shutdown."""
