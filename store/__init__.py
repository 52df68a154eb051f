"""The data layer: where sessions, their event logs and their images live."""

from core.store import SessionStore, StoredImage
from store.memory import MemoryStore

__all__ = ["MemoryStore", "SessionStore", "StoredImage"]
